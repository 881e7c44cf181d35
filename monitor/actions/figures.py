"""The pictures of a drift report, as PNG bytes to embed in the page (matplotlib, off-screen).

- :func:`timeline`: each top statistic's window mean over the stream's recent evaluations (the
  series the daemon exports as ``driftmon_stream_feature_window_mean``) against the band a window
  mean stays in without drifting (the reference mean plus or minus the calibrated threshold times
  the reference's span-spread), with the estimated change point marked;
- :func:`histograms`: the reference's frames against the drifted window's, per top statistic.

Rendering runs on the actions' evidence worker, never in the consume loop.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WIDTH_IN, PANEL_HEIGHT_IN, DPI = 9.0, 1.9, 90
#: The shortest time axis drawn, in seconds (a burst of frames can share one timestamp).
MIN_SPAN_S = 60


@dataclass(frozen=True)
class Series:
    """One statistic for the pictures: its words, its window means over time, its band, and its
    reference and window frames."""

    what: str
    times: np.ndarray  # evaluation times, seconds since the epoch
    means: np.ndarray  # window means at those times
    band: tuple[float, float]  # (low, high) a window mean stays within without drifting
    reference: np.ndarray  # the reference's per-frame values
    window: np.ndarray  # the drifted window's per-frame values


def _figure(panels: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(panels, 1, figsize=(WIDTH_IN, PANEL_HEIGHT_IN * panels), squeeze=False)
    return plt, fig, [a[0] for a in axes]


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _datetimes(seconds: Sequence[float] | np.ndarray) -> np.ndarray:
    """Unix seconds as numpy datetimes (UTC) to the millisecond."""
    return (np.asarray(seconds, dtype=float) * 1000).astype("int64").astype("datetime64[ms]")


def timeline(series: Sequence[Series], change_at: float | None) -> bytes:
    """Window means over time against each statistic's band, the change point as a dashed line."""
    import matplotlib.dates as mdates

    plt, fig, axes = _figure(len(series))
    for ax, s in zip(axes, series, strict=True):
        when = _datetimes(s.times)
        ax.axhspan(s.band[0], s.band[1], color="#2e7d32", alpha=0.12, label="normal for a window")
        ax.plot(when, s.means, color="#1565c0", lw=1.4, marker=".", ms=3, label="window mean")
        if change_at is not None:
            ax.axvline(_datetimes([change_at])[0], color="#c62828", ls="--", lw=1.2, label="change")
        if len(when) and when[-1] - when[0] < np.timedelta64(MIN_SPAN_S, "s"):
            # a replay or a burst can carry one timestamp for every frame: widen the axis
            middle = when[0] + (when[-1] - when[0]) / 2
            half = np.timedelta64(MIN_SPAN_S * 500, "ms")
            ax.set_xlim(middle - half, middle + half)
        ax.set_title(s.what, loc="left", fontsize=10)
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.tick_params(labelsize=8)
    # above the first panel, right of its title, clear of the lines
    axes[0].legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False, ncol=3)
    return _png(plt, fig)


def histograms(series: Sequence[Series]) -> bytes:
    """The reference's frames against the drifted window's, per statistic, on shared bins."""
    plt, fig, axes = _figure(len(series))
    for ax, s in zip(axes, series, strict=True):
        both = np.concatenate([s.reference, s.window])
        lo, hi = float(np.min(both)), float(np.max(both))
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 40)
        ax.hist(
            s.reference, bins=bins, density=True, color="#2e7d32", alpha=0.45, label="reference"
        )
        ax.hist(
            s.window, bins=bins, density=True, color="#c62828", alpha=0.45, label="drifted window"
        )
        ax.set_title(s.what, loc="left", fontsize=10)
        ax.tick_params(labelsize=8)
        ax.set_yticks([])
    axes[0].legend(loc="upper right", fontsize=7, frameon=False)
    return _png(plt, fig)
