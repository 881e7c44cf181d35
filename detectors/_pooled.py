"""Where a current window falls within a sorted reference: the counts every rank test needs.

KS, Cramér-von Mises and Anderson-Darling all depend on the two samples only through the
pooled ranks. Those ranks follow from one ``searchsorted`` of the current sample into the
reference per column (two where values tie) plus counts within each sample, so the pooled
sample is never merged or re-sorted, and the rest is one vectorised pass over all columns.
The reference's own counts (``SortedReference``) are computed once and reused for every
window; the window's placement (``Pooled``) once and shared by the three tests.
"""

from __future__ import annotations

import numpy as np


def _runs(sorted_rows: np.ndarray):
    """Runs of equal values in each sorted row, on the flattened array.

    Returns ``(less, less_equal)`` of the row's shape: for every element, how many elements of
    its own row are smaller, and how many are smaller or equal (its run's start and end + 1).
    """
    k, n = sorted_rows.shape
    flat = sorted_rows.ravel()
    pos = np.arange(k * n)
    start = np.ones(k * n, dtype=bool)
    start[1:] = flat[1:] != flat[:-1]
    start[::n] = True
    end = np.ones(k * n, dtype=bool)
    end[:-1] = start[1:]
    first = np.maximum.accumulate(np.where(start, pos, 0))
    last = np.minimum.accumulate(np.where(end, pos, k * n)[::-1])[::-1]
    col0 = (pos // n) * n
    return (first - col0).reshape(k, n), (last + 1 - col0).reshape(k, n)


class SortedReference:
    """A reference's sorted columns and, per value, its counts within its own column.

    ``less[c, i]`` / ``less_equal[c, i]``: reference values of column ``c`` below / at most
    ``sorted[c, i]``; ``run_start``: flat indices of each distinct value's first occurrence.
    """

    def __init__(self, ref_sorted: np.ndarray):
        self.sorted = ref_sorted
        self.less, self.less_equal = _runs(ref_sorted)
        flat_less = self.less.ravel()
        n = ref_sorted.shape[1]
        self.run_start = np.flatnonzero(flat_less == np.tile(np.arange(n), ref_sorted.shape[0]))
        self.all_distinct = self.run_start.size == flat_less.size

    @property
    def shape(self) -> tuple[int, int]:
        return self.sorted.shape


class Pooled:
    """Counts of one sorted current window against a ``SortedReference`` (all columns).

    Attributes, each of shape ``(k, n_cur)``:
    ``ref_less`` / ``ref_less_equal``: reference values below / at most each current value;
    ``cur_less`` / ``cur_less_equal``: the same within the current window.
    Lazily, of shape ``(k, n_ref)``: ``cur_below_ref`` / ``cur_at_most_ref``: current values
    below / at most each reference value.
    """

    def __init__(self, ref: SortedReference, cur_sorted: np.ndarray):
        self.ref = ref
        self.cur_sorted = cur_sorted
        k, n2 = cur_sorted.shape
        n1 = ref.shape[1]
        self.ref_less = np.empty((k, n2), dtype=np.int64)
        self.ref_less_equal = self.ref_less
        tied = []  # columns where a current value equals a reference value
        for c in range(k):
            r, x = ref.sorted[c], cur_sorted[c]
            left = self.ref_less[c] = np.searchsorted(r, x, side="left")
            if np.any(r[np.minimum(left, n1 - 1)] == x):
                tied.append(c)
        if tied:  # continuous features rarely tie: the second search is only paid where they do
            self.ref_less_equal = self.ref_less.copy()
            for c in tied:
                self.ref_less_equal[c] = np.searchsorted(ref.sorted[c], cur_sorted[c], side="right")
        self.cur_less, self.cur_less_equal = _runs(cur_sorted)
        self._at_ref: tuple[np.ndarray, np.ndarray] | None = None

    def _counts_at_ref(self):
        if self._at_ref is None:
            # x_j < r_i  <=>  #ref <= x_j  <= i  (0-based i), and x_j <= r_i <=> #ref < x_j <= i;
            # so both are cumulative histograms of the current values' reference counts.
            k, n1 = self.ref.shape
            offs = (np.arange(k) * (n1 + 1))[:, None]

            def cum(counts):
                h = np.bincount((counts + offs).ravel(), minlength=k * (n1 + 1))
                return np.cumsum(h.reshape(k, n1 + 1), axis=1)[:, :n1]

            below = cum(self.ref_less_equal)
            at_most = below if self.ref_less_equal is self.ref_less else cum(self.ref_less)
            self._at_ref = below, at_most
        return self._at_ref

    @property
    def cur_below_ref(self) -> np.ndarray:
        return self._counts_at_ref()[0]

    @property
    def cur_at_most_ref(self) -> np.ndarray:
        return self._counts_at_ref()[1]


def sorted_columns(x: np.ndarray) -> np.ndarray:
    """Columns of an ``(n, k)`` sample as sorted, contiguous rows ``(k, n)``.

    One transposing copy, then an in-place sort of contiguous rows: faster than ``np.sort`` of
    the transposed view, which keeps its column-major layout and sorts strided rows.
    """
    rows = np.array(x.T, order="C")
    rows.sort(axis=1)
    return rows


def pooled_columns(x_ref: np.ndarray, x_cur: np.ndarray) -> Pooled:
    """``Pooled`` counts of two ``(n, k)`` samples (the pure functions' path)."""
    return Pooled(SortedReference(sorted_columns(x_ref)), sorted_columns(x_cur))
