"""Sample selection: which frames of a drifted window are most worth relabelling.

Three steps, each small and testable on its own:

1. **Score** every frame of the window (:func:`score_window`), without pixels: how far it lies
   from the reference (mean distance to its k nearest reference frames, in embedding space when
   embeddings are present, else in image statistics standardised by the reference), divided by
   the reference's own typical k-NN distance; and how extreme its most unusual statistic is (the
   largest |z| against the reference, over the statistics that drifted when any did).
2. **Pool** the best-scored frames not queued before (:func:`candidate_pool`), a few per budget
   slot. Only the pool's frames are fetched again (from their claim check or Kafka offset): their
   perceptual hash and, when the record carries predictions, the model's uncertainty
   (:func:`uncertainty`) are computed from them (:class:`Probe`).
3. **Pick** a diverse subset (:func:`select`): greedy k-center — the best-scored frame first, then
   each time the frame farthest from those picked — skipping near-duplicates (perceptual hash
   within ``hash_distance`` bits of a frame picked now or queued recently for the stream).

Budgets (per event and per UTC day) and "never queue a frame twice" are kept by
:class:`QueueLedger`, an append-only JSON-lines file that survives restarts.

Score
-----
``score = (1 - exp(-max(d - 1, 0))) + (1 - exp(-max(|z| - 2, 0) / 2)) + w * u`` where ``d`` is the
distance ratio (1: as far as reference frames are from each other), ``z`` the most extreme
standardised statistic, ``u`` in [0, 1] the model's uncertainty (0 when unknown) and ``w`` is
``selection.uncertainty_weight``. Each term is bounded, so none swamps the others.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from monitor.files import JSONObject, locked

HASH_BITS = 64
FAR_RATIO = 1.5  # a distance ratio at or above this is reported as a reason
EXTREME_Z = 3.0
UNCERTAIN = 0.5


# --- perceptual hashes ---------------------------------------------------------------------------


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image


def dhash(image: np.ndarray) -> int:
    """Difference hash: shrink to 9x8 grey, one bit per horizontally adjacent pair (left > right).

    Robust to scaling, compression and global brightness; 64 bits.
    """
    small = cv2.resize(_gray(image), (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, :-1] > small[:, 1:]).ravel()
    return _pack(bits)


def phash(image: np.ndarray) -> int:
    """Perceptual hash: DCT of a 32x32 grey image, one bit per low frequency (8x8, DC included)
    above their median. More robust than :func:`dhash` to small geometric changes; 64 bits."""
    small = cv2.resize(_gray(image), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()
    return _pack(low > np.median(low))


def _pack(bits: np.ndarray) -> int:
    value = 0
    for b in bits.tolist():
        value = (value << 1) | int(b)
    return value


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def image_hash(data: bytes, method: str = "dhash") -> int | None:
    """Hash of encoded image bytes (decoded at reduced size), or None when they do not decode."""
    buf = np.frombuffer(data, dtype=np.uint8)
    gray = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_4)
    if gray is None:
        gray = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if gray is None:
        return None
    return phash(gray) if method == "phash" else dhash(gray)


# --- model uncertainty ----------------------------------------------------------------------------


def uncertainty(predictions: JSONObject | None) -> float | None:
    """The deployed model's uncertainty on a frame, in [0, 1], from its predictions (frame
    contract).

    - ``{"probs": [...]}``: normalised entropy ``H(p) / log K``.
    - ``{"detections": [{"score": s}, ...]}``: the most uncertain detection, ``1 - |2s - 1|``
      (a score of 0.5 is a coin flip; 0 or 1 is sure). No detections: None.
    Anything else, or malformed values: None.
    """
    if not isinstance(predictions, dict):
        return None
    probs = predictions.get("probs")
    if isinstance(probs, list) and len(probs) >= 2:
        try:
            p = np.asarray(probs, dtype=float)
        except (TypeError, ValueError):
            return None
        if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
            return None
        p = p / p.sum()
        nz = p[p > 0]
        return float(-(nz * np.log(nz)).sum() / math.log(len(p)))
    detections = predictions.get("detections")
    if isinstance(detections, list):
        raw = [d.get("score") for d in detections if isinstance(d, dict)]
        scores = [float(s) for s in raw if isinstance(s, (int, float)) and 0 <= s <= 1]
        if scores:
            return max(1.0 - abs(2.0 * s - 1.0) for s in scores)
    return None


# --- scoring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """Per-frame scores of one window (arrays aligned with the window's rows)."""

    base: np.ndarray  # distance and extremeness terms of the score (no uncertainty yet)
    distance: np.ndarray  # mean k-NN distance to the reference / the reference's own typical one
    extreme_z: np.ndarray  # the signed z of each frame's most extreme statistic
    extreme_feature: list[str]
    points: np.ndarray  # the space distances and diversity are measured in
    space: str  # "embedding" or "statistics"


def standardise(ref: np.ndarray, x: np.ndarray) -> np.ndarray:
    mu = ref.mean(axis=0)
    sd = ref.std(axis=0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    return (x - mu) / sd


def squared_distances(
    x: np.ndarray, ref: np.ndarray, ref_sq: np.ndarray | None = None
) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``x`` and of ``ref`` ``(len(x),
    len(ref))``, never negative (``ref_sq``: the rows' squared norms of ``ref``, when known)."""
    if ref_sq is None:
        ref_sq = (ref**2).sum(axis=1)
    d2 = (x**2).sum(axis=1)[:, None] + ref_sq[None, :] - 2.0 * x @ ref.T
    return np.maximum(d2, 0.0, out=d2)


def nearest(x: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``x``'s Euclidean distance to its nearest row of ``ref``, and which row."""
    d2 = squared_distances(np.asarray(x, np.float64), np.asarray(ref, np.float64))
    which = np.argmin(d2, axis=1)
    return np.sqrt(d2[np.arange(len(d2)), which]), which


def typical_nearest_distance(ref: np.ndarray, sample: int = 300) -> float:
    """The median distance from a reference row to its nearest other reference row (a seeded
    sample of them): what "near" means in this reference."""
    ref = np.asarray(ref, np.float64)
    rows = np.random.default_rng(0).choice(len(ref), min(sample, len(ref)), replace=False)
    d2 = squared_distances(ref[rows], ref)
    d2[np.arange(len(rows)), rows] = np.inf  # not itself
    return float(np.median(np.sqrt(d2.min(axis=1))))


def knn_mean_distance(
    x: np.ndarray, ref: np.ndarray, k: int, exclude_self: bool = False, chunk: int = 2048
) -> np.ndarray:
    """Mean Euclidean distance of each row of ``x`` to its ``k`` nearest rows of ``ref``."""
    k = max(1, min(k, ref.shape[0] - (1 if exclude_self else 0)))
    out = np.empty(x.shape[0])
    ref_sq = (ref**2).sum(axis=1)
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk]
        d2 = squared_distances(part, ref, ref_sq)
        if exclude_self:  # x is ref: drop each row's zero distance to itself
            idx = np.arange(start, start + part.shape[0])
            d2[np.arange(part.shape[0]), idx] = np.inf
        nearest = np.partition(d2, k - 1, axis=1)[:, :k]
        out[start : start + part.shape[0]] = np.sqrt(nearest).mean(axis=1)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def score_window(
    rows: np.ndarray,
    ref_rows: np.ndarray,
    feature_names: Sequence[str],
    *,
    focus: Iterable[str] = (),
    embeddings: np.ndarray | None = None,
    ref_embeddings: np.ndarray | None = None,
    k: int = 5,
    max_ref: int = 2000,
    seed: int = 0,
) -> Scores:
    """Score each window frame by how unlike the reference it is (see the module docstring).

    ``focus``: the statistics that drifted; extremeness is judged on them (all when empty).
    Embeddings are used for distance and diversity when both the window and the reference have them.
    """
    rows = np.asarray(rows, dtype=np.float64)
    ref_rows = np.asarray(ref_rows, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if ref_rows.shape[0] > max_ref:
        ref_rows = ref_rows[rng.choice(ref_rows.shape[0], max_ref, replace=False)]
    z = standardise(ref_rows, rows)
    names = list(feature_names)
    focus_idx = [names.index(f) for f in focus if f in names] or list(range(len(names)))
    zf = z[:, focus_idx]
    arg = np.abs(zf).argmax(axis=1)
    extreme_z = zf[np.arange(zf.shape[0]), arg]
    extreme_feature = [names[focus_idx[i]] for i in arg]

    use_emb = (
        embeddings is not None
        and ref_embeddings is not None
        and len(embeddings) == len(rows)
        and embeddings.shape[1] == ref_embeddings.shape[1]
    )
    if use_emb:
        ref_e = np.asarray(ref_embeddings, dtype=np.float64)
        if ref_e.shape[0] > max_ref:
            ref_e = ref_e[rng.choice(ref_e.shape[0], max_ref, replace=False)]
        points, ref_points, space = (
            _unit(np.asarray(embeddings, dtype=np.float64)),
            _unit(ref_e),
            "embedding",
        )
    else:
        points, ref_points, space = z, standardise(ref_rows, ref_rows), "statistics"
    d = knn_mean_distance(points, ref_points, k)
    sample = (
        ref_points
        if ref_points.shape[0] <= 500
        else ref_points[rng.choice(ref_points.shape[0], 500, replace=False)]
    )
    typical = (
        float(np.median(knn_mean_distance(sample, sample, k, exclude_self=True)))
        if sample.shape[0] > 1
        else 0.0
    )
    ratio = d / typical if typical > 0 else np.where(d > 0, np.inf, 1.0)
    base = (1 - np.exp(-np.maximum(ratio - 1, 0))) + (
        1 - np.exp(-np.maximum(np.abs(extreme_z) - 2, 0) / 2)
    )
    return Scores(
        base=base,
        distance=ratio,
        extreme_z=extreme_z,
        extreme_feature=extreme_feature,
        points=points,
        space=space,
    )


# --- pooling and picking --------------------------------------------------------------------------


def candidate_pool(
    scores: Scores,
    budget: int,
    pool_factor: int,
    is_queued: Callable[[int], bool],
    start: int = 0,
) -> tuple[list[int], int]:
    """The best-scored frames from index ``start`` on (the first after the drift began) not queued
    before, ``pool_factor`` per budget slot (best first); and how many queued frames were passed
    over on the way."""
    want = budget * pool_factor
    pool: list[int] = []
    queued = 0
    for i in np.argsort(-scores.base, kind="stable").tolist():
        if len(pool) >= want:
            break
        if i < start:
            continue
        if is_queued(i):
            queued += 1
            continue
        pool.append(i)
    return pool, queued


@dataclass(frozen=True)
class Probe:
    """What fetching a pooled frame told: its perceptual hash and the model's uncertainty."""

    hash: int | None  # None: the frame could not be fetched or decoded
    uncertainty: float | None = None


@dataclass(frozen=True)
class Reason:
    """Why a frame was picked: a code (``far_from_reference``, ``extreme_statistic``,
    ``uncertain_prediction``, ``diverse``, ``top_drift_score``) and a sentence; ``feature`` names
    the statistic of an ``extreme_statistic``."""

    code: str
    text: str
    feature: str | None = None

    def to_dict(self) -> JSONObject:
        return (
            {"code": self.code}
            | ({"feature": self.feature} if self.feature is not None else {})
            | {"text": self.text}
        )


@dataclass(frozen=True)
class PickScores:
    """The numbers behind a pick (rounded for people): its final score, distance ratio, most extreme
    statistic, the model's uncertainty, its distance from earlier picks, and the space measured
    in."""

    score: float
    distance_ratio: float | None  # None when infinite
    extreme_feature: str
    extreme_z: float
    uncertainty: float | None
    diversity: float | None  # None for the first pick
    space: str


@dataclass(frozen=True)
class Pick:
    index: int  # row in the window
    score: float
    reasons: tuple[Reason, ...]
    scores: PickScores
    hash: int


@dataclass
class Selection:
    picks: list[Pick] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> frames passed over


def select(
    scores: Scores,
    pool: Sequence[int],
    probes: dict[int, Probe],
    budget: int,
    *,
    hash_distance: int,
    known_hashes: Iterable[int] = (),
    uncertainty_weight: float = 1.0,
) -> Selection:
    """Greedy k-center over ``pool``: start from the best final score, then repeatedly take the
    frame farthest (in ``scores.points``) from every frame taken so far, ties to the better score.
    A frame whose fetch failed, or whose hash is within ``hash_distance`` of a taken frame or of
    ``known_hashes``, is skipped (and never proposed again)."""
    out = Selection()
    if budget <= 0 or not pool:
        return out
    known = list(known_hashes)
    final = {
        i: float(scores.base[i]) + uncertainty_weight * (probes[i].uncertainty or 0.0)
        if i in probes
        else float(scores.base[i])
        for i in pool
    }
    remaining = list(pool)
    min_dist = {i: math.inf for i in remaining}
    taken_hashes: list[int] = []
    while remaining and len(out.picks) < budget:
        if not out.picks:
            i = max(remaining, key=lambda j: (final[j], -j))
        else:
            i = max(remaining, key=lambda j: (min_dist[j], final[j], -j))
        remaining.remove(i)
        probe = probes.get(i)
        if probe is None or probe.hash is None:
            out.skipped["fetch_failed"] += 1
            continue
        if any(hamming(probe.hash, h) <= hash_distance for h in taken_hashes + known):
            out.skipped["near_duplicate"] += 1
            continue
        diversity = None if not out.picks else float(min_dist[i])
        out.picks.append(
            Pick(
                i,
                final[i],
                _reasons(scores, i, probe, diversity),
                PickScores(
                    score=round(final[i], 6),
                    distance_ratio=_finite(scores.distance[i]),
                    extreme_feature=scores.extreme_feature[i],
                    extreme_z=round(float(scores.extreme_z[i]), 4),
                    uncertainty=None if probe.uncertainty is None else round(probe.uncertainty, 4),
                    diversity=None if diversity is None else round(diversity, 4),
                    space=scores.space,
                ),
                probe.hash,
            )
        )
        taken_hashes.append(probe.hash)
        p = scores.points[i]
        for j in remaining:
            d = float(np.linalg.norm(scores.points[j] - p))
            if d < min_dist[j]:
                min_dist[j] = d
    return out


def _finite(x: float) -> float | None:
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None


def _reasons(scores: Scores, i: int, probe: Probe, diversity: float | None) -> tuple[Reason, ...]:
    reasons = []
    ratio = float(scores.distance[i])
    if ratio >= FAR_RATIO:
        reasons.append(
            Reason(
                "far_from_reference",
                f"{ratio:.1f}x as far from the reference as reference "
                f"frames are from each other ({scores.space})",
            )
        )
    z = float(scores.extreme_z[i])
    if abs(z) >= EXTREME_Z:
        reasons.append(
            Reason(
                "extreme_statistic",
                f"{scores.extreme_feature[i]} {abs(z):.1f} sd "
                f"{'above' if z > 0 else 'below'} the reference",
                feature=scores.extreme_feature[i],
            )
        )
    if probe.uncertainty is not None and probe.uncertainty >= UNCERTAIN:
        reasons.append(Reason("uncertain_prediction", f"model uncertainty {probe.uncertainty:.2f}"))
    if diversity is not None:
        reasons.append(
            Reason("diverse", f"k-center pick, {diversity:.2f} from the frames picked before it")
        )
    if not reasons or reasons[0].code == "diverse":
        reasons.insert(0, Reason("top_drift_score", "among the highest drift scores in the window"))
    return tuple(reasons)


# --- the ledger -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    """A frame queued for relabelling: one line of the :class:`QueueLedger` (``at`` and ``day``,
    the UTC day that counts against the daily budget, are set when it is added)."""

    key: str
    stream: str
    event_id: str
    hash: int | None
    at: float | None = None
    day: str | None = None


class QueueLedger:
    """Frames queued for relabelling, so that none is queued twice, and the per-day budget.

    An append-only JSON-lines file (one line per queued frame: key, stream, event, hash, time),
    compacted when it grows past twice ``remember`` lines; the newest ``remember`` frames are kept.
    A line torn by a crash mid-append is skipped, and the next entry starts on a line of its own.

    Several processes (replicas sharing ``actions.state_dir``) may use one ledger: appends and
    compaction hold an ``flock`` on ``<path>.lock``, and every read first takes in the lines others
    appended since (a ``stat`` when there are none; the whole file again when another process
    compacted it). :meth:`claim` checks and appends under that lock, so two replicas never queue
    one frame twice, nor together more than the day's budget.
    """

    def __init__(self, path: str | Path, remember: int = 200_000, recent_per_stream: int = 256):
        self.path = Path(path)
        self.remember = remember
        self.recent_per_stream = recent_per_stream
        self._writers = self.path.with_name(self.path.name + ".lock")
        self._lock = threading.RLock()
        self._frames: OrderedDict[str, Queued] = OrderedDict()
        self._lines = 0
        self._torn = False  # the file does not end with a newline
        self._inode: int | None = None  # of the file read (compaction replaces it)
        self._offset = 0  # bytes of complete lines read
        with self._lock:
            self._catch_up()

    def _catch_up(self) -> None:
        """Read the lines appended since last read, or the whole file when it was replaced (under
        ``_lock``)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if st.st_ino != self._inode or st.st_size < self._offset:
            self._frames.clear()
            self._inode, self._offset, self._lines = st.st_ino, 0, 0
        if st.st_size == self._offset:
            return
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a last line without its newline is torn, or still written
        self._torn = end < len(data)
        self._offset += end
        for raw in data[:end].decode(errors="replace").splitlines():
            line = raw.strip()
            if not line:
                continue
            try:
                entry = Queued(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue  # a line torn by a crash mid-append
            self._frames[entry.key] = entry
            self._frames.move_to_end(entry.key)
            self._lines += 1
        while len(self._frames) > self.remember:
            self._frames.popitem(last=False)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            self._catch_up()
            return key in self._frames

    def __len__(self) -> int:
        with self._lock:
            self._catch_up()
            return len(self._frames)

    def queued_on(self, day: str) -> int:
        with self._lock:
            self._catch_up()
            return sum(1 for e in self._frames.values() if e.day == day)

    def remaining_today(self, limit: int, now: float | None = None) -> int:
        return max(0, limit - self.queued_on(utc_day(now)))

    def recent_hashes(self, stream: str) -> list[int]:
        with self._lock:
            self._catch_up()
            found = [
                e.hash
                for e in reversed(self._frames.values())
                if e.stream == stream and e.hash is not None
            ]
        return found[: self.recent_per_stream]

    def add(self, entries: list[Queued], now: float | None = None) -> None:
        """Record frames as queued, at ``now``."""
        self._append(entries, now, None)

    def claim(
        self, entries: list[Queued], now: float | None = None, day_limit: int | None = None
    ) -> list[Queued]:
        """Record as queued, at ``now``, the frames of ``entries`` no process has queued yet, in
        order, while the day's count stays within ``day_limit``; returns those recorded."""
        return self._append(entries, now, day_limit, only_new=True)

    def _append(
        self,
        entries: list[Queued],
        now: float | None,
        day_limit: int | None,
        only_new: bool = False,
    ) -> list[Queued]:
        if not entries:
            return []
        now = time.time() if now is None else now
        day = utc_day(now)
        with self._lock, locked(self._writers):
            self._catch_up()
            room = None if day_limit is None else day_limit - self.queued_on(day)
            kept: list[Queued] = []
            for e in entries:
                if only_new and (e.key in self._frames or any(k.key == e.key for k in kept)):
                    continue
                if room is not None and len(kept) >= room:
                    break
                kept.append(replace(e, at=now, day=day))
            if not kept:
                return []
            lines = [json.dumps(asdict(e), sort_keys=True) for e in kept]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(("\n" if self._torn else "") + "\n".join(lines) + "\n")
                f.flush()
                os.fsync(f.fileno())
            for e in kept:
                self._frames[e.key] = e
                self._frames.move_to_end(e.key)
            while len(self._frames) > self.remember:
                self._frames.popitem(last=False)
            st = os.stat(self.path)
            self._inode, self._offset, self._torn = st.st_ino, st.st_size, False
            self._lines += len(lines)
            if self._lines > 2 * self.remember:
                self._compact()
            return kept

    def _compact(self) -> None:
        """Rewrite the file with the frames remembered (under both locks)."""
        from monitor.files import atomic_write_text

        atomic_write_text(
            self.path,
            "".join(json.dumps(asdict(e), sort_keys=True) + "\n" for e in self._frames.values()),
        )
        st = os.stat(self.path)
        self._inode, self._offset = st.st_ino, st.st_size
        self._lines = len(self._frames)


def utc_day(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))
