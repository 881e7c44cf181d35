"""Reference sets: versioned, self-describing artefacts that live traffic is compared against.

A reference is one ``.npz`` file: the feature matrix (one row per frame, columns named), the
embeddings and the embedder's identity when there are any, and provenance (source, time range,
frame count, creation time, version). A reference *store* is a directory holding versions per
stream with a shared fallback::

    store/_shared/v0001.npz
    store/streams/<stream>/v0001.npz   (stream names are URL-quoted)

A stream uses the newest version of its own reference if one exists, else the shared one.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

from detectors.reduce import PCA
from monitor.errors import InputError
from monitor.files import JSONObject, atomic_write_bytes

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # version 1: fitted arrays under "fitted.*" keys, calibration positional
SHARED = "_shared"
_VERSION_RE = re.compile(r"^v(\d+)\.npz$")


class BadReference(InputError):
    """A missing, unreadable or incompatible reference."""


@dataclass(frozen=True)
class ReferencePredictions:
    """The deployed model's outputs on the reference's frames, aligned with them."""

    classes: np.ndarray  # (n,) int32 codes into ``labels``; -1 where a frame had no predictions
    labels: tuple[str, ...]  # the predicted-class vocabulary
    confidences: np.ndarray  # (n,) float32; NaN where none
    probs: np.ndarray | None = None  # (n, K) float32 probability vectors; NaN rows where none

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"pred.class": self.classes, "pred.confidence": self.confidences}
        return out | ({"pred.probs": self.probs} if self.probs is not None else {})

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], labels: list[str]
    ) -> ReferencePredictions | None:
        if "pred.class" not in arrays or "pred.confidence" not in arrays:
            return None
        return cls(
            np.asarray(arrays["pred.class"]),
            tuple(labels),
            np.asarray(arrays["pred.confidence"]),
            arrays.get("pred.probs"),
        )


@dataclass(frozen=True)
class Reference:
    """A reference: the frames' statistics (and embeddings, model outputs), provenance, and what was
    fitted on it once (``monitor.reference.fit.fit_reference``). Immutable: fitting returns a new
    one."""

    features: np.ndarray  # (n_frames, n_features) float32
    feature_names: tuple[str, ...]
    stream: str | None = None  # None: shared by every stream
    version: int = 1
    source: str = ""
    time_range: tuple[float, float] | None = None  # event times of the first and last frame
    created_at: float = field(default_factory=time.time)
    # The frames' times, in their order (monitor.reference.timing): seconds, or frame numbers when
    # only the order is known; None for a bag of frames without an order.
    times: np.ndarray | None = None
    time_unit: str = "s"
    time_source: str = ""
    embeddings: np.ndarray | None = None  # (n_frames, dim) float32
    embedder: JSONObject | None = (
        None  # the embedder's identity (monitor.pipeline.embed.EmbedderIdentity)
    )
    predictions: ReferencePredictions | None = (
        None  # the model's outputs on the frames, when they had any
    )
    pca: PCA | None = None  # fitted on the embeddings
    # Each frame's context (day, night, infrared, rain...: monitor.reference.context), aligned with
    # the frames; None: one context. A window is judged against the frames of its own context.
    contexts: np.ndarray | None = None
    # where each frame can be read again, for reports (``monitor.actions.fetch.read_locator``): a
    # file URI, ``kafka:<topic>/<partition>/<offset>`` or a clip's URI with ``#frame=<n>``; "" where
    # unknown. None: references built before locators, or without them.
    locators: np.ndarray | None = None
    # each frame's edge-layout map (monitor.pipeline.features.LAYOUT_GRID), uint8 (n_frames,
    # cells); None: references built before the maps, which the `view` test skips
    layouts: np.ndarray | None = None
    extra: JSONObject = field(
        default_factory=dict
    )  # JSON-serialisable facts (e.g. promoted from where)

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[1] != len(self.feature_names):
            raise BadReference(
                f"features shape {self.features.shape} does not match {len(self.feature_names)} "
                "feature names"
            )
        if self.features.shape[0] < 2:
            raise BadReference(f"a reference needs at least 2 frames, got {self.features.shape[0]}")
        if self.embeddings is not None and self.embeddings.shape[0] != self.features.shape[0]:
            raise BadReference("embeddings and features have different frame counts")
        if self.times is not None and (
            self.times.shape != (self.features.shape[0],) or np.any(np.diff(self.times) < 0)
        ):
            raise BadReference("times must be one non-decreasing value per frame")
        if self.contexts is not None and self.contexts.shape != (self.features.shape[0],):
            raise BadReference("contexts must be one label per frame")
        if self.locators is not None and self.locators.shape != (self.features.shape[0],):
            raise BadReference("locators must be one per frame")
        if self.layouts is not None and (
            self.layouts.ndim != 2 or self.layouts.shape[0] != self.features.shape[0]
        ):
            raise BadReference("layouts must be one map per frame")

    @property
    def n_frames(self) -> int:
        return int(self.features.shape[0])

    def held(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """Those of ``names`` this reference holds, in their order: one built before a statistic
        was added lacks it."""
        return tuple(n for n in names if n in self.feature_names)

    def columns(self, names: tuple[str, ...]) -> np.ndarray:
        """The feature matrix restricted to ``names``, in that order."""
        missing = [n for n in names if n not in self.feature_names]
        if missing:
            raise BadReference(
                f"reference lacks feature(s) {missing}; rebuild it with this driftmon version"
            )
        index = [self.feature_names.index(n) for n in names]
        return self.features[:, index]

    def describe(self) -> JSONObject:
        contexts = None
        if self.contexts is not None:
            labels, counts = np.unique(self.contexts, return_counts=True)
            contexts = dict(zip(labels.tolist(), counts.tolist(), strict=True))
        return {
            "stream": self.stream or "*",
            "version": self.version,
            "source": self.source,
            "frames": self.n_frames,
            "time_range": list(self.time_range) if self.time_range else None,
            "times": None
            if self.times is None
            else {"unit": self.time_unit, "source": self.time_source},
            "created_at": self.created_at,
            "features": list(self.feature_names),
            "embedder": self.embedder,
            "embedding_dim": None if self.embeddings is None else int(self.embeddings.shape[1]),
            # cells of the frames' edge-layout maps (the `view` test); None: built before them
            "layout_cells": None if self.layouts is None else int(self.layouts.shape[1]),
            "contexts": contexts,
        }

    # --- files -----------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        meta = self.describe() | {
            "format_version": FORMAT_VERSION,
            "stream": self.stream,
            "extra": self.extra,
            "pred_labels": list(self.predictions.labels) if self.predictions else None,
        }
        arrays: dict[str, np.ndarray] = {
            "features": self.features.astype(np.float32),
            "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        }
        if self.embeddings is not None:
            arrays["embeddings"] = self.embeddings.astype(np.float32)
        if self.times is not None:
            arrays["times"] = self.times.astype(np.float64)
        if self.contexts is not None:
            arrays["contexts"] = self.contexts.astype(str)
        if self.locators is not None:
            arrays["locators"] = self.locators.astype(str)
        if self.layouts is not None:
            arrays["layouts"] = self.layouts.astype(np.uint8)
        if self.pca is not None:
            arrays.update({f"pca.{k}": v for k, v in self.pca.to_arrays().items()})
        if self.predictions is not None:
            arrays.update(self.predictions.arrays())
        buf = io.BytesIO()
        # numpy's stub types **kwds and allow_pickle alike, so mypy matches arrays to that bool
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        atomic_write_bytes(path, buf.getvalue())  # a reader never sees half a reference
        return path

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                arrays = {name: z[name] for name in z.files if name != "meta"}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            raise BadReference(f"{path}: not a driftmon reference ({e})") from None
        version = meta.get("format_version")
        if version not in READABLE_FORMATS:
            raise BadReference(
                f"{path}: reference format {version} is not supported "
                f"(this driftmon reads {', '.join(map(str, READABLE_FORMATS))})"
            )
        if version == 1:
            arrays, meta = _from_format_1(arrays, meta)
        pca = {k[len("pca.") :]: v for k, v in arrays.items() if k.startswith("pca.")}
        tr = meta.get("time_range")
        timing = meta.get("times") or {}
        return cls(
            features=arrays["features"],
            feature_names=tuple(meta["features"]),
            stream=meta.get("stream"),
            version=int(meta["version"]),
            source=meta.get("source", ""),
            time_range=(tr[0], tr[1]) if tr else None,
            created_at=float(meta["created_at"]),
            times=arrays.get("times"),
            time_unit=timing.get("unit", "s"),
            time_source=timing.get("source", ""),
            embeddings=arrays.get("embeddings"),
            embedder=meta.get("embedder"),
            predictions=ReferencePredictions.from_arrays(arrays, meta.get("pred_labels") or []),
            pca=PCA.from_arrays(pca) if pca else None,
            contexts=arrays.get("contexts"),
            locators=arrays.get("locators"),
            layouts=arrays.get("layouts"),
            extra=meta.get("extra") or {},
        )


def _from_format_1(
    arrays: dict[str, np.ndarray], meta: JSONObject
) -> tuple[dict[str, np.ndarray], dict]:
    """A format-1 file's arrays and meta in format 2's layout: fitted arrays lose their "fitted."
    prefix and the prediction labels leave ``extra``. Its KS calibration (for ``tests.run_length``,
    since replaced by the span-calibrated tests) and its frames' times are not kept: it has no
    order."""
    out = {
        (k[len("fitted.") :] if k.startswith("fitted.") else k): v
        for k, v in arrays.items()
        if not k.startswith("fitted.calibration.")
    }
    extra = dict(meta.get("extra") or {})
    return out, meta | {"pred_labels": extra.pop("pred_labels", None), "extra": extra}


class ReferenceStore:
    """Reference versions per stream with a shared fallback; or a single shared file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._cache: dict[str | None, Reference | None] = {}

    @property
    def is_file(self) -> bool:
        return self.path.suffix == ".npz"

    def _dir(self, stream: str | None) -> Path:
        return (
            self.path / SHARED if stream is None else self.path / "streams" / quote(stream, safe="")
        )

    def versions(self, stream: str | None) -> list[int]:
        if self.is_file:
            return [1] if stream is None and self.path.exists() else []
        d = self._dir(stream)
        found = (_VERSION_RE.match(p.name) for p in d.glob("v*.npz")) if d.is_dir() else ()
        return sorted(int(m.group(1)) for m in found if m)

    def streams(self) -> list[str]:
        d = self.path / "streams"
        if self.is_file or not d.is_dir():
            return []
        return sorted(unquote(p.name) for p in d.iterdir() if p.is_dir())

    def version_path(self, stream: str | None, version: int) -> Path:
        return self._dir(stream) / f"v{version:04d}.npz"

    def load_latest(self, stream: str | None) -> Reference | None:
        """The newest version of ``stream``'s own reference (``None``: the shared one), if any."""
        if stream not in self._cache:
            if self.is_file:
                self._cache[stream] = Reference.load(self.path) if stream is None else None
            else:
                versions = self.versions(stream)
                self._cache[stream] = (
                    Reference.load(self.version_path(stream, versions[-1])) if versions else None
                )
        return self._cache[stream]

    def for_stream(self, stream: str) -> Reference | None:
        """The reference a stream is judged against: its own if it has one, else the shared one."""
        return self.load_latest(stream) or self.load_latest(None)

    def add(self, reference: Reference) -> Path:
        """Store ``reference`` as the next version of its stream (older versions are kept)."""
        if self.is_file:
            if reference.stream is not None:
                raise BadReference(
                    f"{self.path} is a single shared reference file; use a store directory "
                    "for per-stream references"
                )
            path = reference.save(self.path)
        else:
            version = (self.versions(reference.stream) or [0])[-1] + 1
            reference = replace(reference, version=version)
            path = reference.save(self.version_path(reference.stream, version))
        self._cache.pop(reference.stream, None)
        return path
