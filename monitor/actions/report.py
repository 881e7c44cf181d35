"""The evidence behind a drift event: an HTML drift report and a contact sheet.

- The report is one self-contained page (every picture a data URI): driftmon's account on top,
  most important first (:func:`summary_html`: the headline, what moved ranked on the calibrated
  scale, the window means over time against their band, histograms, the frames after the change
  and the drifted frames beside their nearest reference frames, every test folded), then
  Evidently's report (``DataDriftPreset`` over the image statistics, reference vs the drifted
  window; plus ``EmbeddingsDrift`` when both sides carry embeddings). Evidently's per-column tests
  are its own (its defaults choose K-S or Wasserstein by sample size): a second opinion; the
  daemon's evaluation is the one that opened the event.
- The contact sheet is one JPEG: frames of the stream's last healthy window (when known) above
  the frames selected for relabelling, all from after the change.

Both are slow (Evidently's import alone takes seconds) and run on the actions worker thread,
never in the consume loop.
"""

from __future__ import annotations

import base64
import html
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from monitor.actions.figures import Series
from monitor.actions.headline import Effect, clock, with_queued
from monitor.pipeline.drift_tests import STATISTICS

if TYPE_CHECKING:
    from monitor.actions.events import DriftEvent, Fired
    from monitor.reference.store import Reference


def evidently_html(
    ref_rows: np.ndarray,
    cur_rows: np.ndarray,
    feature_names: Sequence[str],
    *,
    ref_embeddings: np.ndarray | None = None,
    cur_embeddings: np.ndarray | None = None,
) -> str:
    """Evidently's standalone HTML drift report, reference vs current."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift
    from evidently.presets import DataDriftPreset

    names = list(feature_names)
    ref = pd.DataFrame(np.asarray(ref_rows, dtype=np.float64), columns=names)
    cur = pd.DataFrame(np.asarray(cur_rows, dtype=np.float64), columns=names)
    metrics: list[Any] = [DataDriftPreset(columns=names)]
    embeddings = None
    if (
        ref_embeddings is not None
        and cur_embeddings is not None
        and len(ref_embeddings) == len(ref)
        and len(cur_embeddings) == len(cur)
        and ref_embeddings.shape[1] == cur_embeddings.shape[1]
    ):
        emb_cols = [f"embedding_{i}" for i in range(ref_embeddings.shape[1])]
        ref = pd.concat(
            [ref, pd.DataFrame(np.asarray(ref_embeddings, np.float64), columns=emb_cols)], axis=1
        )
        cur = pd.concat(
            [cur, pd.DataFrame(np.asarray(cur_embeddings, np.float64), columns=emb_cols)], axis=1
        )
        embeddings = {"embedding": emb_cols}
        metrics.append(EmbeddingsDrift(embeddings_name="embedding"))
    numerical = names + (embeddings["embedding"] if embeddings else [])
    definition = DataDefinition(numerical_columns=numerical, embeddings=embeddings)
    snapshot = Report(metrics).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    return snapshot.get_html_str(as_iframe=False)


#: Ranked effects shown before the fold.
TOP = 5


@dataclass(frozen=True)
class Pictures:
    """The report's images (PNG or JPEG bytes; None where there is nothing to draw), embedded in the
    page as data URIs so that the one HTML file is the whole report."""

    timeline: bytes | None = None
    histograms: bytes | None = None
    frames: bytes | None = None  # the contact sheet
    neighbours: bytes | None = None  # drifted frames beside their nearest reference frames
    gaps: bytes | None = None  # an example of each group of frames outside the training set


def series_for(
    event: DriftEvent, arrays: dict[str, np.ndarray], reference: Reference, top: int = 3
) -> list[Series]:
    """The pictures' data for the event's most moved image statistics (drifted ones first): their
    window means over the stream's recent history, their band, and their values in the reference
    (its frames of the window's context when it has enough) and in the window after the change."""
    chosen = [x for x in event.effects if x.kind == STATISTICS and x.drifted][:top]
    if not chosen:
        return []
    names = list(event.feature_names)
    rows = arrays["rows"]
    start = event.change.window_index if event.change is not None else 0
    after = rows[start:] if len(rows) - start >= 2 else rows
    times = arrays.get("history_times", np.zeros(0))
    means = arrays.get("history_window_means", np.zeros((0, len(names))))
    contexts = reference.contexts
    same = (
        np.flatnonzero(contexts == event.context)
        if contexts is not None and event.context
        else np.zeros(0, int)
    )
    keep = same if len(same) >= len(rows) else np.arange(reference.n_frames)
    out = []
    for x in chosen:
        j = names.index(x.feature)
        out.append(
            Series(
                x.what,
                times,
                means[:, j] if len(means) else np.zeros(0),
                x.band,
                reference.columns((x.feature,))[keep, 0],
                after[:, j],
            )
        )
    return out


def data_uri(image: bytes) -> str:
    kind = "png" if image[:8] == b"\x89PNG\r\n\x1a\n" else "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(image).decode()}"


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _img(image: bytes | None, alt: str) -> str:
    if image is None:
        return ""
    return f'<img src="{data_uri(image)}" alt="{html.escape(alt)}" style="max-width:100%">'


def _effect_row(rank: int, effect: Effect) -> str:
    e = html.escape
    arrow = "&uarr;" if effect.distance > 0 else "&darr;"
    verdict = (
        '<b style="color:#c62828">drifted</b>'
        if effect.drifted
        else '<span style="color:#555">within normal</span>'
    )
    return (
        f"<tr><td>{rank}</td><td>{e(effect.what)} <code>{e(effect.feature)}</code></td>"
        f"<td>{arrow} {abs(effect.distance):.1f}&times;</td><td>{effect.threshold:.1f}&times;</td>"
        f"<td>{verdict}</td></tr>"
    )


def _effects_table(effects: Sequence[Effect]) -> str:
    head = (
        '<table class="effects"><tr><th>#</th><th>what moved</th>'
        "<th>window mean moved, in its normal spreads</th><th>drifts beyond</th><th></th></tr>"
    )
    top = "".join(_effect_row(i + 1, x) for i, x in enumerate(effects[:TOP]))
    rest = effects[TOP:]
    folded = (
        f"<details><summary>{len(rest)} more, each moved less</summary>{head}"
        + "".join(_effect_row(i + 1 + TOP, x) for i, x in enumerate(rest))
        + "</table></details>"
        if rest
        else ""
    )
    return f"{head}{top}</table>{folded}"


def _in_words(event: DriftEvent) -> list[str]:
    """Embedding and model-output drift in sentences (image statistics are in the table), whole
    distribution tests first, then the largest moves."""
    said: list[tuple[float, str]] = []
    for shift in event.shifts.values():
        if shift.kind == STATISTICS:
            continue
        what = html.escape(shift.what[0].upper() + shift.what[1:])
        if shift.mean is not None and shift.mean.z is not None:
            way = "up" if shift.mean.z > 0 else "down"
            said.append(
                (
                    abs(shift.mean.z),
                    f"{what} moved {way}, {abs(shift.mean.z):.1f} reference standard deviations "
                    f"({html.escape(shift.test)}).",
                )
            )
        elif shift.shares:
            mix = ", ".join(
                f"{html.escape(c.label)} {c.reference_share:.0%} &rarr; {c.window_share:.0%}"
                for c in shift.shares
            )
            said.append((math.inf, f"{what}: {mix}."))
        else:
            p = "" if shift.p_value is None else f", p = {shift.p_value:.2g}"
            said.append(
                (math.inf, f"{what} differs from the reference ({html.escape(shift.test)}{p}).")
            )
    return [sentence for _, sentence in sorted(said, key=lambda x: -x[0])]


def _folded_list(items: Sequence[str], shown: int) -> str:
    """The first ``shown`` items as a list, the rest folded under a one-line summary."""
    if not items:
        return ""
    out = "<ul>" + "".join(f"<li>{i}</li>" for i in items[:shown]) + "</ul>"
    if len(items) > shown:
        rest = "".join(f"<li>{i}</li>" for i in items[shown:])
        out += f"<details><summary>{len(items) - shown} more, each moved less</summary>"
        out += f"<ul>{rest}</ul></details>"
    return out


def _tests_table(fired: Sequence[Fired]) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(f.test)}</td><td>{e(f.what)} <code>{e(f.feature)}</code></td>"
        f"<td>{f.statistic:.4g}</td>"
        f"<td>{'-' if f.p_value is None else format(f.p_value, '.3g')}</td>"
        f"<td>{f.threshold:.4g}</td><td>{e(f.correction)}</td></tr>"
        for f in fired
    )
    return (
        "<table><tr><th>test</th><th>feature</th><th>statistic</th><th>adjusted p</th>"
        f"<th>threshold</th><th>correction</th></tr>{rows}</table>"
    )


def _change_note(event: DriftEvent) -> str:
    c = event.change
    if c is None or c.at is None:
        return "When the change began could not be estimated."
    if c.before:
        return (
            f"The change began before {clock(c.at)}, earlier than the stream's recent history "
            "reaches."
        )
    return f"The change began just after {clock(c.at)} (estimated from the stream's history)."


def _selection_note(event: DriftEvent) -> str:
    sel = event.selection
    if sel is None:
        return "Frames for relabelling: not selected yet."
    if sel.note:
        return f"Frames for relabelling: none ({html.escape(sel.note)})."
    c = event.change
    after = (
        f" all from after the change at {clock(c.at)}"
        if c is not None and c.at is not None and not c.before
        else " all from the drifted window"
    )
    before = (sel.skipped or {}).get("before_change", 0)
    passed = f"; {before} frames before the change were passed over" if before else ""
    return f"{sel.selected} frames selected for relabelling,{after}{passed}."


STYLE = (
    "#driftmon-summary{font-family:system-ui,sans-serif;margin:16px;padding:12px 16px;"
    "border:2px solid #c62828;border-radius:6px;max-width:1100px;background:#fff;color:#111}"
    "#driftmon-summary h1{font-size:1.35em;margin:.2em 0 .4em}"
    "#driftmon-summary h2{font-size:1.05em;margin:1.2em 0 .4em}"
    "#driftmon-summary table{border-collapse:collapse;font-size:.9em}"
    "#driftmon-summary td,#driftmon-summary th{border:1px solid #ccc;padding:3px 6px;"
    "text-align:left}#driftmon-summary .meta{color:#444}"
)


def summary_html(event: DriftEvent, pictures: Pictures) -> str:
    """driftmon's account of the event, most important first: the headline, what moved ranked on
    one scale, the pictures over time, the frames; every test's detail folded at the end. Every
    value is escaped; every image is inside the block."""
    e = html.escape
    ref, window = event.reference, event.window
    said = event.headline or f"Stream {event.stream} drifted"
    if event.selection is not None and event.selection.selected is not None:
        said = with_queued(said, event.selection.selected)
    statistics = [x for x in event.effects if x.kind == STATISTICS]
    components = [x for x in event.effects if x.kind != STATISTICS]
    words = _folded_list(_in_words(event), shown=3)
    voting = [f for f in event.fired if f.voting]
    second = [f for f in event.fired if not f.voting]
    parts = [
        f'<section id="driftmon-summary"><style>{STYLE}</style>',
        f'<h1 id="driftmon-headline">{e(said)}</h1>',
        f'<p class="meta">Stream <b>{e(event.stream)}</b>, drift event <code>{e(event.id)}</code>'
        f" declared at {_when(event.opened_at)}; <b>{e(event.status)}</b>"
        + ("" if event.closed_at is None else f", recovered at {_when(event.closed_at)}")
        + f". {e(_change_note(event))}</p>",
        f'<p class="meta">Judged against reference {e(str(ref.stream))} v{ref.version} '
        f"({ref.frames} frames); window of {window.frames} frames, {_when(window.first_ts)} to "
        f"{_when(window.last_ts)}.</p>",
    ]
    if statistics:
        parts.append(
            "<h2>What moved, most first</h2><p class=meta>Each image statistic's window mean "
            "against the reference's, in units of how far the reference's own windows wander "
            "(one scale for all).</p>" + _effects_table(statistics)
        )
    if words or components:
        parts.append(f"<h2>The view, embeddings and model outputs</h2>{words}")
        if components:
            parts.append(_effects_table(components))
    if pictures.timeline is not None:
        parts.append(
            "<h2>Over time</h2><p class=meta>Window means of the top statistics (as exported in "
            "<code>driftmon_stream_feature_window_mean</code>) against the band a healthy window "
            "stays in; the dashed line is the estimated change.</p>"
            + _img(pictures.timeline, "window means over time")
        )
    if pictures.histograms is not None:
        parts.append(
            "<h2>Reference against the drifted window</h2>"
            + _img(pictures.histograms, "histograms, reference against window")
        )
    parts.append(
        f"<h2>Frames</h2><p>{_selection_note(event)}</p>"
        + _img(pictures.frames, "contact sheet: healthy frames above frames queued")
    )
    if pictures.neighbours is not None:
        parts.append(
            "<h2>Drifted frames beside their nearest reference frames</h2><p class=meta>Nearest "
            "in the embedding space: what the reference holds that looks most like each drifted "
            "frame.</p>" + _img(pictures.neighbours, "drifted frames and nearest reference frames")
        )
    if event.gaps is not None:
        said = event.gaps.text()
        parts.append(
            "<h2>Outside the training set</h2><p>"
            + e(said[0].upper() + said[1:])
            + ". Collect and label more frames like these.</p>"
            + (
                _img(pictures.gaps, "examples of frames outside the training set")
                if pictures.gaps
                else ""
            )
        )
    parts.append(
        f"<details><summary>Every test that fired ({len(voting)} voting"
        + (f", {len(second)} second opinions that do not vote" if second else "")
        + ")</summary><h2>Voting tests</h2>"
        + _tests_table(voting)
        + ("<h2>Second opinions (do not vote)</h2>" + _tests_table(second) if second else "")
        + "</details>"
    )
    parts.append(
        '<p class="meta">Below: Evidently\'s drift report, reference against this window (its own '
        "tests, a second opinion).</p></section>"
    )
    return "".join(parts)


def with_summary(report_html: str, block: str, title: str) -> str:
    """Put ``block`` at the top of the body of a standalone HTML page, titled ``title`` (the head's
    own title: a page's scripts may hold ``<title>`` elements of their own)."""
    at = report_html.lower().find("<body")
    page = block + report_html
    if at >= 0:
        end = report_html.find(">", at) + 1
        page = report_html[:end] + block + report_html[end:]
    titled = f"<title>{html.escape(title)}</title>"
    head_end = page.lower().find("</head>")
    if head_end < 0:
        return f"<head>{titled}</head>{page}"
    # drop the head's own title, leaving any inside a script as it is
    head = re.sub(
        r"(<script\b.*?</script>)|<title>.*?</title>",
        lambda m: m.group(1) or "",
        page[:head_end],
        flags=re.S | re.I,
    )
    return head + titled + page[head_end:]


def standalone_summary(block: str, note: str, title: str) -> str:
    """A report page without Evidently's part (when Evidently failed): driftmon's summary alone."""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{block}"
        f"<p>{html.escape(note)}</p></body></html>"
    )


def _thumb(data: bytes, size: int) -> np.ndarray | None:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_2)
    if img is None:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None
    h, w = img.shape[:2]
    scale = size / max(h, w)
    img = cv2.resize(
        img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    cell = np.full((size, size, 3), 40, np.uint8)
    y, x = (size - img.shape[0]) // 2, (size - img.shape[1]) // 2
    cell[y : y + img.shape[0], x : x + img.shape[1]] = img
    return cell


def contact_sheet(
    selected: Sequence[tuple[bytes, str]],
    reference: Sequence[tuple[bytes, str]],
    thumb_px: int = 160,
    quality: int = 85,
    selected_title: str = "selected for relabelling",
) -> bytes:
    """A JPEG grid: a row of reference frames (if any) over rows of selected frames, each
    captioned."""
    return sheet(
        [("reference: last healthy window", reference), (selected_title, selected)],
        thumb_px,
        quality,
        empty="no frames could be fetched",
    )


def sheet(
    bands: Sequence[tuple[str, Sequence[tuple[bytes, str]]]],
    thumb_px: int = 160,
    quality: int = 85,
    per_row: int = 8,
    empty: str = "no frames",
) -> bytes:
    """A JPEG of titled bands of captioned thumbnails (frames that do not decode are left out),
    at most ``per_row`` to a line."""
    label_h = 18
    rows: list[tuple[str, list[np.ndarray]]] = []
    for title, items in bands:
        cells = []
        for data, caption in items:
            t = _thumb(data, thumb_px)
            if t is None:
                continue
            cell = np.full((thumb_px + label_h, thumb_px, 3), 255, np.uint8)
            cell[:thumb_px] = t
            cv2.putText(
                cell,
                caption[:22],
                (3, thumb_px + 13),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.38,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
            cells.append(cell)
        if cells:
            rows.append((title, cells))
    per_row = max(1, min(per_row, max((len(c) for _, c in rows), default=1)))
    width = max(per_row * (thumb_px + 4) + 4, 420)
    out = []
    for title, cells in rows:
        header = np.full((24, width, 3), 235, np.uint8)
        cv2.putText(
            header, title, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA
        )
        out.append(header)
        for start in range(0, len(cells), per_row):
            line = np.full((thumb_px + label_h + 4, width, 3), 255, np.uint8)
            for j, cell in enumerate(cells[start : start + per_row]):
                x = 4 + j * (thumb_px + 4)
                line[2 : 2 + cell.shape[0], x : x + thumb_px] = cell
            out.append(line)
    if not out:
        out = [np.full((24, width, 3), 235, np.uint8)]
        cv2.putText(out[0], empty, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    ok, buf = cv2.imencode(".jpg", np.vstack(out), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - encoding a plain uint8 image does not fail
        raise ValueError("contact sheet encoding failed")
    return buf.tobytes()
