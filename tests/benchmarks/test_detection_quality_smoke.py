"""Smoke test of benchmarks/detection_quality.py: the --quick path on tiny frames, end to end.

Checks the structure of the tables it writes and two sanity properties of the verdicts (an obvious
shift is detected in most windows; unshifted windows rarely fire). Not a timed test.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("skimage")  # the fleet's photographs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "detection_quality", ROOT / "benchmarks" / "detection_quality.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def result(bench, tmp_path_factory):
    d = tmp_path_factory.mktemp("dq")
    out, raw = d / "detection-quality.md", d / "counts.json"
    out.write_text(
        "# Detection quality\n\nHand-written text before.\n\n"
        f"{bench.BEGIN}\nstale table\n{bench.END}\n\nHand-written text after.\n"
    )
    argv = [
        "--quick",
        "--cameras",
        "2",
        "--width",
        "160",
        "--height",
        "90",
        "--analysis-size",
        "80",
        "--reference",
        "60",
        "--windows",
        "20",
        "40",
        "--fa-groups",
        "5",
        "--groups",
        "2",
        "--shifts",
        "dusk",
        "jpeg",
        "--severities",
        "5",
        "--workers",
        "1",
        "--out",
        str(out),
        "--json",
        str(raw),
    ]
    assert bench.main(argv) == 0
    return out.read_text(), json.loads(raw.read_text())


def table(md: str, heading: str) -> list[list[str]]:
    """Rows (cells) of the first Markdown table after ``heading``, header row included."""
    lines = md.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not re.fullmatch(r"\|(\s*-+:?\s*\|)+", line):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_markdown_keeps_hand_written_text(result, bench):
    md, _ = result
    assert md.startswith("# Detection quality\n\nHand-written text before.")
    assert md.rstrip().endswith("Hand-written text after.")
    assert "stale table" not in md
    assert md.count(bench.BEGIN) == 1 and md.count(bench.END) == 1


def test_tables_have_the_expected_shape(result, bench):
    md, _ = result
    fa = table(md, "### False alarms")
    assert fa[0][:2] == ["verdict", "window"]
    assert len(fa) == 1 + len(bench.VERDICTS) * 2  # three verdicts x windows 20, 40
    for row in fa[1:]:
        fired, windows = (int(x) for x in row[2].split(" / "))
        assert (
            windows == {"20": 2 * 5 * 2, "40": 2 * 5}[row[1]]
        )  # cameras x groups x windows per group
        lo, hi = (float(x) for x in row[4].split(" – "))
        assert 0.0 <= lo <= fired / windows <= hi <= 1.0

    full = table(md, "### Detection rate")
    assert full[0] == ["shift", "sev"] + [f"{v} @{n}" for n in (20, 40) for v in bench.VERDICTS]
    assert [r[:2] for r in full[1:]] == [
        ["*none (false alarms)*", "–"],
        ["dusk", "5"],
        ["jpeg", "5"],
    ]
    for row in full[1:]:
        assert all(0 <= int(c) <= 100 for c in row[2:])

    target = table(md, "### Target")
    assert target[0][0] == "shift" and [r[0] for r in target[1:]] == ["dusk", "jpeg"]
    assert all(r[-1] in ("met", "**missed**") for r in target[1:])


def test_obvious_shift_detected_and_unshifted_quiet(result, bench):
    _, raw = result
    fired, total = raw["tally"]["fired"], raw["tally"]["total"]
    for verdict in bench.VERDICTS:
        for n in (20, 40):
            k, t = fired[f"{verdict}|dusk|5|{n}"], total[f"{verdict}|dusk|5|{n}"]
            assert t == 2 * 2 * 40 // n
            assert k >= 0.75 * t, (verdict, n, k, t)
        # 20 + 10 unshifted windows: at the default target a window fires with probability ~1e-5;
        # 8 or more would mean the null is broken
        k = sum(fired.get(f"{verdict}|none|0|{n}", 0) for n in (20, 40))
        assert k <= 7, (verdict, k)
