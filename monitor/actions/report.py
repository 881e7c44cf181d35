"""The evidence behind a drift event: an HTML drift report and a contact sheet.

- The report is generated with Evidently (``DataDriftPreset`` over the image statistics, reference
  vs the drifted window; plus ``EmbeddingsDrift`` when both sides carry embeddings), with a short
  header of driftmon's own evaluation on top: which tests and statistics fired, with statistics and
  multiplicity-adjusted p-values. Evidently's per-column tests are its own (its defaults choose
  K-S or Wasserstein by sample size) and are shown as a second opinion; the daemon's evaluation is
  the one that opened the event.
- The contact sheet is one JPEG: frames of the stream's last healthy window (when known) above
  the frames selected for relabelling from the drifted window.

Both are slow (Evidently's import alone takes seconds) and run on the actions worker thread,
never in the consume loop.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from monitor.actions.events import DriftEvent


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


def summary_html(event: DriftEvent, contact_sheet_href: str | None) -> str:
    """driftmon's own account of the event, as an HTML block (everything escaped)."""
    e = html.escape

    def when(t: float | None) -> str:
        return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))

    rows = "".join(
        f"<tr><td>{e(f.test)}</td><td><b>{e(f.feature)}</b></td><td>{e(f.what)}</td>"
        f"<td>{f.statistic:.4g}</td>"
        f"<td>{'-' if f.p_value is None else format(f.p_value, '.3g')}</td>"
        f"<td>{f.threshold:.4g}</td>"
        f"<td>{e(f.correction)}</td></tr>"
        for f in event.fired
    )
    ref = event.reference
    window = event.window
    sheet = (
        f'<p><img src="{e(contact_sheet_href)}" alt="contact sheet" style="max-width:100%"></p>'
        if contact_sheet_href
        else ""
    )
    return (
        '<section id="driftmon-summary" style="font-family:sans-serif;margin:16px;padding:12px;'
        'border:2px solid #c0392b;border-radius:6px">'
        f"<h2>driftmon drift event {e(event.id)}</h2>"
        f"<p>Stream <b>{e(event.stream)}</b> declared drifted at {when(event.opened_at)}; "
        f"status <b>{e(event.status)}</b>"
        f"{'' if event.closed_at is None else ', recovered at ' + when(event.closed_at)}.</p>"
        f"<p>Reference: stream {e(str(ref.stream))} version {e(str(ref.version))} "
        f"({e(str(ref.frames))} frames). Window: {e(str(window.frames))} frames, "
        f"{when(window.first_ts)} to {when(window.last_ts)}.</p>"
        "<h3>What drifted (driftmon's tests; p-values multiplicity-adjusted)</h3>"
        '<table border=1 cellpadding=4 style="border-collapse:collapse">'
        "<tr><th>test</th><th>feature</th><th>what</th>"
        f"<th>value</th><th>p-value</th><th>threshold</th><th>correction</th></tr>{rows}</table>"
        f'{sheet}<p style="color:#555">Below: Evidently\'s drift report, reference vs this '
        "window.</p></section>"
    )


def with_summary(report_html: str, block: str) -> str:
    """Put ``block`` at the top of the body of a standalone HTML page."""
    lower = report_html.lower()
    at = lower.find("<body")
    if at < 0:
        return block + report_html
    end = report_html.find(">", at) + 1
    return report_html[:end] + block + report_html[end:]


def standalone_summary(block: str, note: str) -> str:
    """A report page without Evidently's part (when Evidently failed): driftmon's summary alone."""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>driftmon drift event</title></head><body>{block}<p>{html.escape(note)}</p>"
        "</body></html>"
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
) -> bytes:
    """A JPEG grid: a row of reference frames (if any) over rows of selected frames, each
    captioned."""
    label_h = 18
    rows: list[tuple[str, list[np.ndarray]]] = []
    for title, items in (
        ("reference: last healthy window", reference),
        ("selected for relabelling", selected),
    ):
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
    per_row = max(1, min(8, max((len(c) for _, c in rows), default=1)))
    width = per_row * (thumb_px + 4) + 4
    bands = []
    for title, cells in rows:
        header = np.full((24, width, 3), 235, np.uint8)
        cv2.putText(
            header, title, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA
        )
        bands.append(header)
        for start in range(0, len(cells), per_row):
            line = np.full((thumb_px + label_h + 4, width, 3), 255, np.uint8)
            for j, cell in enumerate(cells[start : start + per_row]):
                x = 4 + j * (thumb_px + 4)
                line[2 : 2 + cell.shape[0], x : x + thumb_px] = cell
            bands.append(line)
    if not bands:
        bands = [np.full((24, width, 3), 235, np.uint8)]
        cv2.putText(
            bands[0],
            "no frames could be fetched",
            (6, 17),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (0, 0, 0),
            1,
        )
    sheet = np.vstack(bands)
    ok, buf = cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - encoding a plain uint8 image does not fail
        raise ValueError("contact sheet encoding failed")
    return buf.tobytes()
