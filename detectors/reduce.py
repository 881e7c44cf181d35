"""Dimension reduction fitted on the reference: principal component analysis (numpy SVD).

Embeddings (hundreds of dimensions) are projected onto the reference's leading principal
components before per-dimension tests (:func:`detectors.ks_dims.ks_dims_test`), following the
"failing loudly" recipe (Rabanser, Günnemann & Lipton, NeurIPS 2019). The fitted arrays are
plain numpy arrays so they can be stored in a reference file (:meth:`PCA.to_arrays`).
"""

from __future__ import annotations

import numpy as np

from detectors.validation import as_columns, check_int, check_width

__all__ = ["PCA"]


class PCA:
    """Principal component analysis fitted on a reference sample.

    Parameters
    ----------
    n_components : int, optional
        Number of components to keep (default: all, ``min(n_samples, n_dims)``). May also be
        given to :meth:`fit`.

    Attributes (after :meth:`fit`)
    ------------------------------
    mean_ : ``(d,)`` reference mean.
    components_ : ``(k, d)`` orthonormal principal axes, by decreasing variance.
    explained_variance_ : ``(k,)`` variance along each axis (denominator ``n - 1``).
    explained_variance_ratio_ : ``(k,)`` fraction of the total variance.

    Notes
    -----
    With the centred reference ``Xc = X - mean = U S V'`` (thin SVD), the axes are the rows of
    ``V'`` and ``transform(x) = (x - mean) V'[:k]'``. When ``n >= d`` they are computed as the
    eigenvectors of ``Xc' Xc`` (the same axes, ``O(n d^2)``; squares the condition number, which
    only affects directions of near-zero variance); otherwise by the thin SVD. The sign of each axis
    is fixed so that its largest-magnitude loading is positive, so a refit on the same data gives
    the same arrays (SVD signs are otherwise arbitrary).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 5)) * [5.0, 2.0, 1.0, 0.5, 0.1]
    >>> pca = PCA().fit(x, n_components=2)
    >>> pca.transform(x).shape
    (500, 2)
    >>> np.round(pca.explained_variance_ratio_, 2)
    array([0.83, 0.13])
    >>> same = PCA.from_arrays(pca.to_arrays())
    >>> bool(np.allclose(same.transform(x), pca.transform(x)))
    True
    """

    def __init__(self, n_components: int | None = None) -> None:
        self.n_components = n_components
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None
        self.explained_variance_: np.ndarray | None = None
        self.explained_variance_ratio_: np.ndarray | None = None

    def fit(self, x_ref: np.ndarray, n_components: int | None = None) -> PCA:
        """Fit on the reference ``x_ref`` (shape ``(n, d)``); returns ``self``."""
        x = as_columns(x_ref, "x_ref", min_rows=2)
        n, d = x.shape
        k = self.n_components if n_components is None else n_components
        k = check_int(min(n, d) if k is None else k, "n_components", maximum=min(n, d))
        mean = x.mean(axis=0)
        xc = x - mean
        if n >= d:  # eigenvectors of the d x d scatter matrix: O(n d^2), faster than the SVD
            evals, evecs = np.linalg.eigh(xc.T @ xc)
            order = np.argsort(evals)[::-1]
            var = np.maximum(evals[order], 0.0) / (n - 1)
            vt = evecs[:, order[:k]].T
        else:
            _, s, vt = np.linalg.svd(xc, full_matrices=False)
            var = s**2 / (n - 1)
            vt = vt[:k]
        flip = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
        flip[flip == 0] = 1.0
        vt = vt * flip[:, None]
        total = var.sum()
        self.n_components = k
        self.mean_ = mean
        self.components_ = vt
        self.explained_variance_ = var[:k]
        self.explained_variance_ratio_ = var[:k] / total if total > 0 else np.zeros(k)
        return self

    def _fitted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(mean_, components_, explained_variance_, explained_variance_ratio_)``, all set
        together by :meth:`fit` and :meth:`from_arrays`; raises when not fitted."""
        mean, components = self.mean_, self.components_
        variance, ratio = self.explained_variance_, self.explained_variance_ratio_
        if mean is None or components is None or variance is None or ratio is None:
            raise ValueError("PCA is not fitted: call fit() or from_arrays() first")
        return mean, components, variance, ratio

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Project ``x`` (shape ``(n, d)``) onto the fitted components: shape ``(n, k)``."""
        mean, components, _, _ = self._fitted()
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(f"x must be 2-D (n_samples, n_dims), got shape {arr.shape}")
        check_width(arr, mean.shape[0], "x", of="the fitted PCA")
        return (arr - mean) @ components.T

    def fit_transform(self, x_ref: np.ndarray, n_components: int | None = None) -> np.ndarray:
        return self.fit(x_ref, n_components).transform(x_ref)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """Map component scores back to the input space (exact when ``k = d``)."""
        mean, components, _, _ = self._fitted()
        return np.asarray(z, dtype=np.float64) @ components + mean

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as plain arrays (e.g. for ``np.savez`` in a reference file)."""
        mean, components, variance, ratio = self._fitted()
        return {
            "mean": mean.copy(),
            "components": components.copy(),
            "explained_variance": variance.copy(),
            "explained_variance_ratio": ratio.copy(),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PCA:
        """Rebuild a fitted PCA from :meth:`to_arrays` output (any mapping of those keys)."""
        mean = np.asarray(arrays["mean"], dtype=np.float64)
        comps = np.asarray(arrays["components"], dtype=np.float64)
        if mean.ndim != 1 or comps.ndim != 2 or comps.shape[1] != mean.shape[0]:
            raise ValueError(
                f"inconsistent PCA arrays: mean {mean.shape}, components {comps.shape}"
            )
        pca = cls(n_components=comps.shape[0])
        pca.mean_ = mean
        pca.components_ = comps
        pca.explained_variance_ = np.asarray(arrays["explained_variance"], dtype=np.float64)
        pca.explained_variance_ratio_ = np.asarray(
            arrays.get("explained_variance_ratio", np.full(comps.shape[0], np.nan)),
            dtype=np.float64,
        )
        return pca
