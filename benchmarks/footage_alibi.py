"""Alibi Detect's MMDDrift on the windows ``benchmarks/footage.py`` hands over; run by it, with
Alibi's own interpreter (Alibi Detect pins numpy < 2, so it lives in its own virtualenv, never
driftmon's):

    /tmp/alibi-venv/bin/python benchmarks/footage_alibi.py IN.npz OUT.json

IN.npz holds ``<clip>::reference`` and ``<clip>::<window>`` arrays (frames x dimensions). Each
window is tested against its clip's reference with ``MMDDrift(reference, backend="pytorch",
p_val=0.05)`` and otherwise Alibi's defaults (100 permutations, Gaussian kernel with the median
heuristic bandwidth); one detector per clip, torch and numpy seeded before every test so that a
window's p-value does not depend on which windows ran before it. Imports only numpy, torch and
alibi_detect.
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version

import numpy as np
import torch
from alibi_detect.cd import MMDDrift

P_VAL = 0.05


def verdict(detector: MMDDrift, window: np.ndarray) -> dict:
    torch.manual_seed(0)
    np.random.seed(0)
    started = time.perf_counter()
    data = detector.predict(window.astype(np.float32))["data"]
    return {
        "drifted": bool(data["is_drift"]),
        "p_value": float(data["p_val"]),
        "statistic": float(data["distance"]),
        "threshold": float(data["threshold"]),
        "seconds": round(time.perf_counter() - started, 3),
    }


def main(src: str, dst: str) -> None:
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    clips = sorted({k.split("::", 1)[0] for k in arrays})
    verdicts = {}
    for clip in clips:
        detector = MMDDrift(
            arrays[f"{clip}::reference"].astype(np.float32), backend="pytorch", p_val=P_VAL
        )
        for key in sorted(
            k for k in arrays if k.startswith(f"{clip}::") and not k.endswith("::reference")
        ):
            verdicts[key] = verdict(detector, arrays[key])
    with open(dst, "w") as f:
        json.dump(
            {
                "versions": {m: version(m) for m in ("alibi-detect", "torch", "numpy")},
                "verdicts": verdicts,
            },
            f,
        )


if __name__ == "__main__":
    main(*sys.argv[1:3])
