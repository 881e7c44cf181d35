"""Reference-quantile histograms shared by PSI, Jensen-Shannon and Hellinger.

Bins are fitted on the reference only, so every window is binned the same way and the
reference histogram is computed once.
"""

from __future__ import annotations

import numpy as np


def reference_edges(ref_sorted_row: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges for one sorted reference column.

    The edges are ``unique([min, q(1/B), ..., q((B-1)/B), nextafter(max, +inf)])`` with
    ``q`` the reference quantiles (linear interpolation, numpy's default), and a value ``x``
    falls in bin ``searchsorted(edges, x, side="right")``. That gives up to ``B + 2`` bins:
    ``x < min`` (below the reference), ``[min, q1)``, ..., ``[q(B-1), max]``, and
    ``x > max`` (above the reference). The two outer bins are empty in the reference by
    construction; they let a shift beyond the reference's range show up even for a
    constant reference column (edges ``[c, nextafter(c)]``: bins ``< c``, ``= c``, ``> c``).
    Tied quantiles (discrete or constant features) merge into one bin.
    """
    lo, hi = ref_sorted_row[0], ref_sorted_row[-1]
    inner = np.quantile(ref_sorted_row, np.arange(1, bins) / bins) if bins > 1 else []
    edges = np.concatenate(([lo], inner, [np.nextafter(hi, np.inf)]))
    return np.unique(edges)


def bin_counts(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Counts of ``x`` in the ``len(edges) + 1`` bins defined by :func:`reference_edges`."""
    idx = np.searchsorted(edges, x, side="right")
    return np.bincount(idx, minlength=len(edges) + 1)


def fit_histograms(ref_sorted: np.ndarray, bins: int):
    """Edges and reference proportions for every (sorted) row of ``ref_sorted``."""
    n = ref_sorted.shape[1]
    edges = [reference_edges(row, bins) for row in ref_sorted]
    props = [bin_counts(e, row) / n for e, row in zip(edges, ref_sorted, strict=True)]
    return edges, props


def current_proportions(edges, cur_cols: np.ndarray):
    """Proportions of each current column (rows of ``cur_cols``) in its reference bins."""
    n = cur_cols.shape[1]
    return [bin_counts(e, row) / n for e, row in zip(edges, cur_cols, strict=True)]
