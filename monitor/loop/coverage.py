"""Training coverage: does the deployed model's training set contain frames like the ones a camera
sends now? A frame is *covered* when its nearest training frame is no farther than the training
frames are from each other: the ``quantile`` of their leave-one-out nearest-neighbour distances.
Distances are taken between embeddings, with the image statistics beside them when given (the
daemon gives them): each statistic standardised by the training set's spread and the statistics
together weighted to carry as much variance as the embedding, so neither drowns the other. Rain on
a busy scene barely moves the default embedding but moves contrast and edges; a moved view moves
the embedding's layout but few global statistics (benchmarks/training_coverage.py). On frames
drawn like the training set's, about ``quantile`` of them are covered; a share well below it says
the camera sees something the model was not trained on.
Uncovered frames are grouped (:func:`uncovered_groups`) so a report can show one example of each.

The training set is registered with ``driftmon training build`` and stored as a
:class:`~monitor.reference.store.Reference` (shared, ``extra["role"] == "training"``) in its own
:class:`~monitor.reference.store.ReferenceStore` at ``training.path``, versioned like references.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from monitor.config import Config
from monitor.errors import ConfigError
from monitor.reference.store import Reference, ReferenceStore

ROLE = "training"
#: how embeddings are scaled before distances: "none" (raw) or "standard" (each dimension divided
#: by its spread over the training set, so a dimension that barely varies in training counts)
Scaling = Literal["none", "standard"]
_CHUNK = 256  # frames per distance block: 256 x 5000 float32 = 5 MB


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def nearest_distances(
    frames: np.ndarray, points: np.ndarray, *, exclude_self: bool = False
) -> np.ndarray:
    """Each frame's Euclidean distance to its nearest row of ``points``, in blocks of frames
    (memory ``_CHUNK * len(points) * 4`` bytes). ``exclude_self``: ``frames`` *is* ``points`` and a
    row's own distance is left out (leave-one-out)."""
    frames = np.ascontiguousarray(frames, dtype=np.float32)
    points = np.ascontiguousarray(points, dtype=np.float32)
    pn = _sq_norms(points)
    out = np.empty(len(frames), np.float32)
    for lo in range(0, len(frames), _CHUNK):
        block = frames[lo : lo + _CHUNK]
        d2 = _sq_norms(block)[:, None] + pn[None, :] - 2.0 * (block @ points.T)
        if exclude_self:
            rows = np.arange(len(block))
            d2[rows, lo + rows] = np.inf
        out[lo : lo + len(block)] = d2.min(axis=1)
    return np.sqrt(np.maximum(out, 0.0))


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class TrainingCoverage:
    """The training set's embeddings (a seeded subsample of at most ``max_points``), their scaling
    and the coverage radius; :meth:`fit` makes one."""

    points: np.ndarray  # (n, dim) float32, already scaled
    center: np.ndarray  # (dim,) subtracted before scaling
    scale: np.ndarray  # (dim,) divided by after centring (ones with scaling "none")
    radius: float  # a frame farther than this from every point is not covered
    quantile: float
    scaling: Scaling = "none"
    # with image statistics: their training means, and per statistic the factor that standardises
    # and weights it (0 for one constant in training); None: embeddings alone
    stat_center: np.ndarray | None = None
    stat_scale: np.ndarray | None = None

    @classmethod
    def fit(
        cls,
        embeddings: np.ndarray,
        quantile: float = 0.95,
        max_points: int = 5000,
        seed: int = 0,
        scaling: Scaling = "none",
        statistics: np.ndarray | None = None,
    ) -> TrainingCoverage:
        """The radius is the ``quantile`` of the training frames' leave-one-out nearest-neighbour
        distances, so frames like the training set's are covered at about that rate. With
        ``statistics`` (one row per frame), they stand beside the embeddings (module docstring)
        and every later call must give them too. Cost: ``n^2 * dim`` for
        ``n = min(len(embeddings), max_points)``."""
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        if scaling not in ("none", "standard"):
            raise ValueError(f"scaling must be 'none' or 'standard', got {scaling!r}")
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"need at least 2 embeddings as an (n, dim) array, got {x.shape}")
        stats = None if statistics is None else np.asarray(statistics, dtype=np.float64)
        if stats is not None and (stats.ndim != 2 or len(stats) != len(x)):
            raise ValueError(f"need one row of statistics per embedding, got {stats.shape}")
        if len(x) > max_points:
            keep = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
            x = x[keep]
            stats = None if stats is None else stats[keep]
        stat_center = stat_scale = None
        if stats is not None:
            stat_center = stats.mean(axis=0)
            sd = stats.std(axis=0)
            varies = sd > 1e-9 * max(float(sd.max()), 1e-300)
            # the statistics' total variance, once standardised, is their count: weighted to the
            # embedding's total variance
            weight = np.sqrt(
                float(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean()) / max(1, int(varies.sum()))
            )
            stat_scale = np.where(varies, weight / np.where(varies, sd, 1.0), 0.0)
            x = _beside(x, stats, stat_center, stat_scale)
        center = x.mean(axis=0)
        if scaling == "standard":
            sd = x.std(axis=0)
            scale = np.where(sd > 1e-6 * max(float(sd.max()), 1e-12), sd, 1.0).astype(np.float32)
        else:
            scale = np.ones(x.shape[1], np.float32)
        points = ((x - center) / scale).astype(np.float32)
        loo = nearest_distances(points, points, exclude_self=True)
        return cls(
            points=points,
            center=center.astype(np.float32),
            scale=scale,
            radius=float(np.quantile(loo, quantile)),
            quantile=float(quantile),
            scaling=scaling,
            stat_center=None if stat_center is None else stat_center.astype(np.float32),
            stat_scale=None if stat_scale is None else stat_scale.astype(np.float32),
        )

    def transform(self, embeddings: np.ndarray, statistics: np.ndarray | None = None) -> np.ndarray:
        """Frames in the space of :attr:`points`."""
        x = np.asarray(embeddings, np.float32)
        if self.stat_center is not None and self.stat_scale is not None:
            if statistics is None:
                raise ValueError("this coverage was fitted with image statistics: give them")
            x = _beside(x, np.asarray(statistics), self.stat_center, self.stat_scale)
        return ((x - self.center) / self.scale).astype(np.float32)

    def distances(self, embeddings: np.ndarray, statistics: np.ndarray | None = None) -> np.ndarray:
        """Each frame's distance to its nearest training frame (float32)."""
        return nearest_distances(self.transform(embeddings, statistics), self.points)

    def covered(self, embeddings: np.ndarray, statistics: np.ndarray | None = None) -> np.ndarray:
        """Whether each frame is within :attr:`radius` of a training frame."""
        return self.distances(embeddings, statistics) <= self.radius

    def share(self, embeddings: np.ndarray, statistics: np.ndarray | None = None) -> float:
        """The share of the frames that is covered (NaN for none)."""
        if len(embeddings) == 0:
            return float("nan")
        return float(self.covered(embeddings, statistics).mean())


def _beside(
    embeddings: np.ndarray, statistics: np.ndarray, center: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """The embeddings with the weighted, standardised statistics appended."""
    weighted = (np.asarray(statistics, np.float64) - center) * scale
    return np.hstack([embeddings, weighted]).astype(np.float32)


# --- groups of uncovered frames -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # holds an array: compared by identity
class Group:
    """Uncovered frames that look alike: their indices into the frames given, and the one nearest
    the group's centre as its example."""

    indices: np.ndarray  # int64, ascending
    example: int

    @property
    def size(self) -> int:
        return int(len(self.indices))


def _kmeans(
    x: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and centres of a k-means++-seeded Lloyd's k-means."""
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min([((x - c) ** 2).sum(axis=1) for c in centres], axis=0)
        total = float(d2.sum())
        p = d2 / total if total > 0 else None
        centres.append(x[rng.choice(len(x), p=p)])
    c = np.array(centres, dtype=np.float64)
    labels = np.zeros(len(x), np.int64)
    for _ in range(iterations):
        d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
        new = d2.argmin(axis=1)
        for j in range(k):
            if np.any(new == j):
                c[j] = x[new == j].mean(axis=0)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels, c


def _silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """The mean silhouette width (-1..1; above ~0.5: well separated clusters)."""
    d = np.sqrt(np.maximum(_sq_norms(x)[:, None] + _sq_norms(x)[None, :] - 2 * x @ x.T, 0.0))
    ks = np.unique(labels)
    if len(ks) < 2:
        return 0.0
    mean_to = np.stack([d[:, labels == k].mean(axis=1) for k in ks], axis=1)
    own = np.searchsorted(ks, labels)
    counts = np.array([(labels == k).sum() for k in ks])
    # a frame's mean distance to the others of its cluster leaves itself out
    a = mean_to[np.arange(len(x)), own] * counts[own] / np.maximum(counts[own] - 1, 1)
    mean_to[np.arange(len(x)), own] = np.inf
    b = mean_to.min(axis=1)
    s = np.where(counts[own] > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def uncovered_groups(
    embeddings: np.ndarray,
    covered_mask: np.ndarray,
    max_groups: int = 3,
    seed: int = 0,
    min_silhouette: float = 0.5,
) -> list[Group]:
    """The uncovered frames in at most ``max_groups`` groups, largest first.

    More than one group only when the uncovered frames fall apart clearly: the number of groups
    (2..``max_groups``) with the best mean silhouette is taken when that silhouette is at least
    ``min_silhouette``, else they are one group. Seeded k-means on (at most 500 of) the uncovered
    frames' embeddings; the others join their nearest centre. Cost: ``n^2`` for the silhouette."""
    x_all = np.asarray(embeddings, dtype=np.float64)
    covered_mask = np.asarray(covered_mask, bool)
    if covered_mask.shape != (len(x_all),):
        raise ValueError("covered_mask must be one bool per frame")
    idx = np.flatnonzero(~covered_mask)
    if len(idx) == 0:
        return []
    x = x_all[idx]
    rng = np.random.default_rng(seed)
    fit_on = np.sort(rng.choice(len(x), 500, replace=False)) if len(x) > 500 else np.arange(len(x))
    best_k, best_centres, best_s = 1, x.mean(axis=0, keepdims=True), -1.0
    for k in range(2, min(max_groups, len(fit_on) - 1) + 1):
        labels, centres = _kmeans(x[fit_on], k, np.random.default_rng([seed, k]))
        if len(np.unique(labels)) < k:
            continue
        s = _silhouette(x[fit_on], labels)
        if s > best_s:
            best_k, best_centres, best_s = k, centres, s
    centres = best_centres if best_k > 1 and best_s >= min_silhouette else x.mean(0, keepdims=True)
    labels = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    groups = []
    for j in range(len(centres)):
        members = np.flatnonzero(labels == j)
        if len(members) == 0:
            continue
        nearest = members[((x[members] - centres[j]) ** 2).sum(axis=1).argmin()]
        groups.append(Group(indices=idx[members].astype(np.int64), example=int(idx[nearest])))
    return sorted(groups, key=lambda g: (-g.size, g.example))


# --- the stored training reference -------------------------------------------------------------


def training_store(config: Config) -> ReferenceStore:
    """The store of the training reference's versions (``training.path``)."""
    if not config.training.path:
        raise ConfigError(
            "training.path: required to register a training set (a directory for its versions)"
        )
    return ReferenceStore(config.training.path)


def load_training(config: Config) -> Reference | None:
    """The newest registered training reference, or None when there is none (or no
    ``training.path``)."""
    if not config.training.path:
        return None
    return training_store(config).load_latest(None)


def coverage_statistics(reference: Reference) -> tuple[str, ...]:
    """The image statistics coverage compares, in the daemon's order (``FEATURE_NAMES``): those the
    training reference holds. One built before a statistic was added is compared without it (both
    sides drop it, so distances stay comparable); one holding none of them is refused
    (``BadReference``)."""
    from monitor.pipeline.features import FEATURE_NAMES

    held = reference.held(FEATURE_NAMES)
    if not held:
        reference.columns(FEATURE_NAMES)  # raises, naming what it lacks
    return held


def coverage_of(reference: Reference, config: Config, seed: int = 0) -> TrainingCoverage:
    """The coverage of a training reference for ``config`` (its ``coverage_quantile``), the image
    statistics of :func:`coverage_statistics` beside its embeddings."""
    if reference.embeddings is None:
        raise ConfigError(
            "the training reference has no embeddings; rebuild it with embedding.enabled true"
        )
    return TrainingCoverage.fit(
        reference.embeddings,
        config.training.coverage_quantile,
        seed=seed,
        statistics=reference.columns(coverage_statistics(reference)),
    )
