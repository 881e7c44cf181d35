"""Shared engine for two-sample statistics that are quadratic forms of a pooled Gram matrix.

Kernel MMD and the energy distance are both of the form

    stat = a_rr * S_rr + a_cc * S_cc + a_rc * S_rc

where ``S_ab`` are sums of a symmetric pairwise matrix ``K`` over the blocks of the pooled
sample (reference rows ``r``, current rows ``c``), with or without the diagonal. This module
computes those sums for the observed labelling and for a batch of random relabellings
(permutations) with matrix products only.

Maths
-----
Pool the ``N = m + n`` points, let ``K`` be their ``N x N`` matrix, ``rho = K 1`` its row sums,
``T = 1' K 1`` its total and ``d = diag(K)``. A labelling is described by the indicator ``c`` of
the ``n`` points called "current". With ``Q = c' K c``, ``L = c' rho`` and ``Dc = c' d``:

    F_cc = Q,  F_rc = L - Q,  F_rr = T - 2 L + Q                 (sums including the diagonal)
    O_cc = Q - Dc,  O_rr = F_rr - (sum(d) - Dc)                   (off-diagonal sums)

For a batch of ``B`` indicators stacked as columns of ``C`` (``N x B``), ``Q`` is the column-wise
sum of ``C * (K @ C)``; ``K @ C`` is evaluated block by block,

    K @ C = [K_rr C_r + K_rc C_c ; K_rc' C_r + K_cc C_c],

so the pooled matrix is never assembled and the reference block ``K_rr`` (with its row sums and
total) is computed once per reference and reused for every window. Cost per window:
``O((m + n)^2 B)`` multiply-adds in a few BLAS calls; memory: ``K_rr`` (``m^2`` numbers, kept),
``K_rc`` and ``K_cc`` (``m n + n^2``), and ``(m + n) x b`` for a chunk of ``b`` permutations.
"""

from __future__ import annotations

import numpy as np

# Permutations are evaluated in chunks of at most this many columns, bounding the
# ``(m + n) x chunk`` temporaries.
_PERMUTATION_CHUNK = 128


def sq_dists(a: np.ndarray, b: np.ndarray, a_sq: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances ``||a_i - b_j||^2`` via the Gram trick, clipped at 0."""
    if a_sq is None:
        a_sq = np.einsum("ij,ij->i", a, a)
    b_sq = np.einsum("ij,ij->i", b, b)
    d = a @ b.T
    d *= -2.0
    d += a_sq[:, None]
    d += b_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def permutation_p_value(observed: float, permuted: np.ndarray) -> float:
    """``(1 + #{permuted >= observed}) / (1 + B)``: a valid (never anti-conservative) p-value.

    A relative tolerance of 1e-12 counts floating-point ties as ties.
    """
    tol = 1e-12 * max(1.0, abs(observed))
    exceed = int(np.count_nonzero(permuted >= observed - tol))
    return (1.0 + exceed) / (1.0 + permuted.size)


def random_subsets(rng: np.random.Generator, n_total: int, n_cur: int, n_perm: int) -> np.ndarray:
    """``(n_perm, n_cur)`` indices: each row a uniformly random n_cur-subset of
    ``range(n_total)``."""
    keys = rng.random((n_perm, n_total))
    if n_cur >= n_total:
        return np.argsort(keys, axis=1)
    return np.argpartition(keys, n_cur - 1, axis=1)[:, :n_cur]


def random_indicators(
    rng: np.random.Generator, n_total: int, n_cur: int, n_perm: int, dtype: np.dtype
) -> np.ndarray:
    """``n_total x n_perm`` matrix whose columns are indicators of uniformly random
    n_cur-subsets."""
    chosen = random_subsets(rng, n_total, n_cur, n_perm)
    ind = np.zeros((n_total, n_perm), dtype=dtype)
    ind[chosen, np.arange(n_perm)[:, None]] = 1
    return ind


class GramBlocks:
    """Pooled-matrix summaries for one (reference, window) pair.

    Parameters
    ----------
    k_rr_rowsum, k_rr_total, k_rr_diag : precomputed on the reference.
    k_rr : the reference block (``m x m``), needed only for permutations.
    k_rc : ``m x n`` cross block; k_cc : ``n x n`` window block.
    """

    def __init__(
        self,
        k_rr: np.ndarray,
        k_rr_rowsum: np.ndarray,
        k_rr_diag: np.ndarray,
        k_rc: np.ndarray,
        k_cc: np.ndarray,
    ) -> None:
        self.k_rr = k_rr
        self.k_rc = k_rc
        self.k_cc = k_cc
        self.m = k_rr.shape[0]
        self.n = k_cc.shape[0]
        # Row sums of the pooled matrix, accumulated in float64.
        rc_rows = k_rc.sum(axis=1, dtype=np.float64)
        rc_cols = k_rc.sum(axis=0, dtype=np.float64)
        self.rowsum = np.concatenate(
            [k_rr_rowsum + rc_rows, rc_cols + k_cc.sum(axis=1, dtype=np.float64)]
        )
        self.total = float(self.rowsum.sum())
        self.diag = np.concatenate([k_rr_diag, np.diagonal(k_cc).astype(np.float64)])
        self.diag_total = float(self.diag.sum())
        # Observed labelling: the last n pooled points are the window.
        self.obs_q = float(k_cc.sum(dtype=np.float64))
        self.obs_l = float(self.rowsum[self.m :].sum())
        self.obs_dc = float(self.diag[self.m :].sum())

    def sums(self, q, lin, dc):
        """Block sums ``(F_rr, F_cc, F_rc, O_rr, O_cc)`` from the quadratic forms (vectorised)."""
        f_cc = q
        f_rc = lin - q
        f_rr = self.total - 2.0 * lin + q
        o_cc = q - dc
        o_rr = f_rr - (self.diag_total - dc)
        return f_rr, f_cc, f_rc, o_rr, o_cc

    def permuted_forms(
        self, rng: np.random.Generator, n_permutations: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(Q, L, Dc)`` for ``n_permutations`` uniformly random relabellings of the pooled
        sample."""
        m, n = self.m, self.n
        dtype = self.k_rr.dtype
        qs, ls, dcs = [], [], []
        done = 0
        while done < n_permutations:
            b = min(_PERMUTATION_CHUNK, n_permutations - done)
            ind = random_indicators(rng, m + n, n, b, dtype)
            c_r, c_c = ind[:m], ind[m:]
            top = self.k_rr @ c_r
            top += self.k_rc @ c_c
            bottom = self.k_rc.T @ c_r
            bottom += self.k_cc @ c_c
            q = np.einsum("ij,ij->j", c_r, top, dtype=np.float64)
            q += np.einsum("ij,ij->j", c_c, bottom, dtype=np.float64)
            indf = ind.astype(np.float64, copy=False)
            qs.append(q)
            ls.append(self.rowsum @ indf)
            dcs.append(self.diag @ indf)
            done += b
        return np.concatenate(qs), np.concatenate(ls), np.concatenate(dcs)
