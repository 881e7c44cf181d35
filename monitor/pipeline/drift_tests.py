"""The registry of drift tests: one entry per test, the only place a test's name is spelled.

An entry says what the test consumes (image statistics, embeddings or the model's outputs),
whether it decides by a p-value or by comparing a statistic with a threshold, whether it is on and
votes by default, and how it runs on one window. Configuration validation (``tests.enabled``,
``tests.vote``), the engine's dispatch, the split of alpha between voting tests, the ``test``
label of the metrics and the table in docs/detectors.md all read from :data:`REGISTRY`.

Adding a test is one ``run`` function plus one :class:`DriftTest` entry (docs/detectors.md,
"Adding a drift test"). A ``run`` function gets a :class:`Run` — the prepared reference, the
window, its level — and returns a :class:`TestOutcome`, or None when the window or the reference
lacks what the test needs (too few predictions, say): the test is then absent from the evaluation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from detectors.categorical import chi2_test
from detectors.ks import ks_test
from detectors.reference import PlacedWindow
from detectors.result import FeatureTestResult
from detectors.span import mixed_z, shift_test
from monitor.files import JSONObject
from monitor.pipeline.predictions import MIN_PREDICTIONS, PredictionWindow, class_table

if TYPE_CHECKING:
    from monitor.config import TestsConfig
    from monitor.reference.fit import PreparedReference

Consumes = Literal["statistics", "embeddings", "layouts", "predictions"]
STATISTICS: Consumes = "statistics"
EMBEDDINGS: Consumes = "embeddings"
LAYOUTS: Consumes = "layouts"  # the frames' edge-layout maps (features.LAYOUT_GRID)
PREDICTIONS: Consumes = "predictions"
#: The feature name of the `view` test: how well the window's edges line up with the reference's.
EDGE_LAYOUT = "edge_layout"
#: The feature name of a test that judges the embedding distribution as a whole.
EMBEDDING_DISTRIBUTION = "embeddings"
#: probs_ks reports every class as a feature up to this many classes, beyond it only the drifted
#: ones.
MAX_CLASS_FEATURES = 32


@dataclass(frozen=True)
class FeatureOutcome:
    feature: str
    statistic: float
    p_value: float | None  # multiplicity-adjusted
    drifted: bool


@dataclass(frozen=True)
class TestOutcome:
    """One test's result on one window: the largest statistic, the smallest adjusted p-value, what
    it was compared with, and every feature's own result."""

    __test__ = False  # not a pytest class

    name: str
    statistic: float  # the largest per-feature statistic
    p_value: float | None  # the smallest adjusted p-value; None for threshold-only tests
    threshold: float
    drifted: bool
    correction: str
    p_value_note: str
    features: tuple[FeatureOutcome, ...]

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def to_dict(self) -> JSONObject:
        return dataclasses.asdict(self) | {
            "features": [dataclasses.asdict(f) for f in self.features],
            "drifted_features": self.drifted_features,
        }

    @classmethod
    def from_dict(cls, d: JSONObject) -> TestOutcome:
        """The outcome :meth:`to_dict` wrote (its derived ``drifted_features`` left out)."""
        return cls(
            d["name"],
            d["statistic"],
            d["p_value"],
            d["threshold"],
            d["drifted"],
            d["correction"],
            d["p_value_note"],
            tuple(FeatureOutcome(**f) for f in d["features"]),
        )


def summarize(name: str, res: FeatureTestResult, feature_names: tuple[str, ...]) -> TestOutcome:
    """A per-feature detectors result as this test's outcome."""
    stat = np.asarray(res.statistic, dtype=float)
    adj = None if res.adjusted_p_value is None else np.asarray(res.adjusted_p_value, dtype=float)
    features = tuple(
        FeatureOutcome(
            f, float(stat[i]), None if adj is None else float(adj[i]), bool(res.drifted[i])
        )
        for i, f in enumerate(feature_names)
    )
    return TestOutcome(
        name=name,
        statistic=float(np.max(stat)),
        p_value=None if adj is None else float(np.min(adj)),
        threshold=float(res.threshold),
        drifted=bool(np.any(res.drifted)),
        correction=res.correction,
        p_value_note=res.p_value_note,
        features=features,
    )


@dataclass(frozen=True)
class WindowData:
    """What the tests see of one window, oldest frame first; computed once per evaluation."""

    statistics: np.ndarray  # (n, k): the tested image-statistic columns
    reduced: np.ndarray | None = (
        None  # (n, pcs): the embeddings in the reference's principal components
    )
    predictions: PredictionWindow | None = None
    layouts: np.ndarray | None = None  # (n, cells) uint8: the frames' edge-layout maps
    # the statistics placed in the reference (validated, sorted and ranked once for every
    # image-statistics test); None when none of them is active
    placed: PlacedWindow | None = None
    context: str = "default"  # the window's context (monitor.pipeline.context.window_context)
    frame_contexts: tuple[str, ...] = ()  # each frame's, when known (else all of `context`)


@dataclass(frozen=True)
class Run:
    """One test's run on one window: the reference prepared for it, the window, the test's level
    (its share of ``tests.alpha`` when it votes), the tests' settings and the engine's generator."""

    prepared: PreparedReference
    window: WindowData
    alpha: float
    settings: TestsConfig
    rng: np.random.Generator
    mmd_permutations: int = 100

    @property
    def reduced(self) -> np.ndarray | None:
        return self.window.reduced

    @property
    def placed(self) -> PlacedWindow:
        """The window's image statistics placed in ``prepared.univariate``, shared by the tests."""
        placed = self.window.placed
        assert placed is not None, (
            "the engine places the window when an image-statistics test is active"
        )
        return placed


@dataclass(frozen=True)
class DriftTest:
    """One drift test: what it consumes, how it decides, its defaults, and how it runs."""

    name: str
    consumes: Consumes
    yields_p_value: bool  # decides by a p-value at its level; else a statistic against a threshold
    summary: str  # one line for docs/detectors.md
    run: Callable[[Run], TestOutcome | None]
    enabled: bool = True  # in tests.enabled by default
    votes: bool = False  # in tests.vote by default
    # its threshold comes from the false-alarm target (tests.false_alarm_days) and the reference's
    # own spans, shared with every calibrated voting test, instead of a level or a fixed threshold
    calibrated: bool = False

    @property
    def decides_by(self) -> str:
        return (
            "calibrated" if self.calibrated else "p-value" if self.yields_p_value else "threshold"
        )


# --- image statistics ------------------------------------------------------------------------


def run_ks(r: Run) -> TestOutcome:
    res = r.prepared.univariate.ks(r.placed, alpha=r.alpha, correction=r.settings.correction)
    return summarize("ks", res, r.prepared.feature_names)


def calibrated_shift(
    r: Run,
    name: str,
    kind: Consumes,
    x: np.ndarray,
    names: tuple[str, ...],
    falls_only: bool = False,
) -> TestOutcome:
    """How far the window's mean moved from the reference's (same context), per feature, in units of
    how far the reference's own windows wander (``detectors.span``), against the threshold of the
    false-alarm target. A window that spans a change of context (dusk falling, the infrared
    switching on) measures each context's frames from that context's reference frames
    (``detectors.span.mixed_z``): judged against one of them, the others would read as a shift."""
    parts = context_parts(r.window.frame_contexts, len(x)) or {r.window.context: np.arange(len(x))}
    judged = {
        context: r.prepared.null(kind, context, part_length(len(idx), len(x)))
        for context, idx in parts.items()
    }
    null, used = judged[r.window.context]  # the majority's: its frames are the window's context
    z = None if len(parts) == 1 else mixed_z([(judged[c][0], x[idx]) for c, idx in parts.items()])
    z_threshold = r.prepared.z_thresholds[kind]
    out = summarize(
        name, shift_test(null, x, z_threshold=z_threshold, z=z, falls_only=falls_only), names
    )
    if len(parts) > 1:
        where = "the frames of each of its contexts: " + ", ".join(
            f"context {c!r} ({len(idx)} frames"
            + ("" if judged[c][1] == c else ", the whole reference")
            + ")"
            for c, idx in parts.items()
        )
    elif used == r.window.context:
        where = f"context {used!r}"
    else:
        where = f"the whole reference (it has too few frames of context {r.window.context!r})"
    return dataclasses.replace(
        out,
        p_value_note=(
            f"{out.p_value_note}; judged against {where}, {null.effective_spans:.1f} independent "
            f"stretches; fires when {'-z' if falls_only else '|z|'} > {z_threshold:.2f}, for "
            "one false alarm per "
            f"{r.settings.false_alarm_days:g} days at {r.prepared.analysed_fps:g} fps"
        ),
    )


def context_parts(contexts: tuple[str, ...], n: int) -> dict[str, np.ndarray]:
    """The frames of each context in a window of ``n`` (in order of first appearance); empty when
    the frames' contexts are not known."""
    if len(contexts) != n:
        return {}
    labels = np.asarray(contexts)
    return {c: np.flatnonzero(labels == c) for c in dict.fromkeys(contexts)}


def part_length(m: int, n: int) -> int:
    """The window length whose null judges a part of ``m`` frames of an ``n``-frame window: ``m``
    rounded down to a multiple of ``n // 8`` (below that, to a power of two), so a handful of nulls
    per context serve every mix, and a shorter window's wider null keeps the bound conservative.

    >>> [part_length(m, 200) for m in (200, 190, 30, 24, 7)]
    [200, 175, 25, 16, 4]
    """
    if m >= n:
        return n
    step = max(1, n // 8)
    return m // step * step if m >= step else 1 << (m.bit_length() - 1)


def run_shift(r: Run) -> TestOutcome:
    return calibrated_shift(r, "shift", STATISTICS, r.window.statistics, r.prepared.feature_names)


def run_cvm(r: Run) -> TestOutcome:
    res = r.prepared.univariate.cvm(r.placed, alpha=r.alpha, correction=r.settings.correction)
    return summarize("cvm", res, r.prepared.feature_names)


def run_psi(r: Run) -> TestOutcome:
    res = r.prepared.univariate.psi(r.placed, threshold=r.settings.psi_threshold)
    return summarize("psi", res, r.prepared.feature_names)


def run_wasserstein(r: Run) -> TestOutcome:
    res = r.prepared.univariate.wasserstein(r.placed, threshold=r.settings.wasserstein_threshold)
    return summarize("wasserstein", res, r.prepared.feature_names)


# --- embeddings ---------------------------------------------------------------------------------


def run_mmd(r: Run) -> TestOutcome | None:
    if r.reduced is None or r.prepared.mmd is None:
        return None
    res = r.prepared.mmd.test(
        r.reduced, n_permutations=r.mmd_permutations, alpha=r.alpha, seed=r.rng
    )
    assert res.p_value is not None  # a permutation test always has one
    # one feature, the distribution as a whole: every drifted test names what moved
    whole = FeatureOutcome(
        EMBEDDING_DISTRIBUTION, float(res.statistic), float(res.p_value), bool(res.drifted)
    )
    return TestOutcome(
        "mmd",
        float(res.statistic),
        float(res.p_value),
        float(res.threshold),
        bool(res.drifted),
        "none",
        res.p_value_note,
        (whole,),
    )


def run_emb_shift(r: Run) -> TestOutcome | None:
    """The calibrated shift on the leading principal components of the embeddings."""
    k = r.prepared.components
    if r.reduced is None or not k:
        return None
    return calibrated_shift(
        r, "emb_shift", EMBEDDINGS, r.reduced[:, :k], tuple(f"pc{i:02d}" for i in range(k))
    )


def run_ks_dims(r: Run) -> TestOutcome | None:
    """KS per principal component, Bonferroni across them (Rabanser et al. 2019)."""
    dims = r.prepared.reduced_ks
    if r.reduced is None or dims is None:
        return None
    return summarize(
        "ks_dims",
        dims.ks(r.reduced, alpha=r.alpha, correction="bonferroni"),
        tuple(dims.feature_names),
    )


# --- where the edges are ------------------------------------------------------------------------


def run_view(r: Run) -> TestOutcome | None:
    """The calibrated shift of how well the window's frames line up with the reference's edge
    template (``PreparedReference.alignment``): a knocked or turned camera's edges leave the places
    where the reference's are, while every frame-wide statistic can stay put. Only a fall counts:
    edges that line up better than the reference's frames did (an empty street where it held
    traffic) are where they were."""
    if r.window.layouts is None or r.prepared.template is None:
        return None
    x = r.prepared.alignment(r.window.layouts)[:, None]
    return calibrated_shift(r, "view", LAYOUTS, x, (EDGE_LAYOUT,), falls_only=True)


# --- the model's outputs -----------------------------------------------------------------------


def run_pred_class(r: Run) -> TestOutcome | None:
    ref, cur = r.prepared.predictions, r.window.predictions
    if ref is None or cur is None or min(len(ref.labels), len(cur.labels())) < MIN_PREDICTIONS:
        return None
    ref_codes, cur_codes, _ = class_table(ref.labels, cur.labels())
    return summarize(
        "pred_class",
        chi2_test(ref_codes, cur_codes, alpha=r.alpha, correction="none"),
        ("predicted_class",),
    )


def run_confidence(r: Run) -> TestOutcome | None:
    ref, cur = r.prepared.predictions, r.window.predictions
    if ref is None or cur is None:
        return None
    cur_conf = cur.confidences()
    if min(len(ref.confidences), len(cur_conf)) < MIN_PREDICTIONS:
        return None
    return summarize(
        "confidence",
        ks_test(ref.confidences, cur_conf, alpha=r.alpha, correction="none"),
        ("confidence",),
    )


def run_probs_ks(r: Run) -> TestOutcome | None:
    ref, cur = r.prepared.predictions, r.window.predictions
    if ref is None or cur is None or ref.probs is None or len(ref.probs) < MIN_PREDICTIONS:
        return None
    k = ref.probs.shape[1]
    cur_probs = cur.probs(k)
    if len(cur_probs) < MIN_PREDICTIONS:
        return None
    out = summarize(
        "probs_ks",
        ks_test(ref.probs, cur_probs, alpha=r.alpha, correction="bonferroni"),
        tuple(f"class_{i}" for i in range(k)),
    )
    if k > MAX_CLASS_FEATURES:  # bounded metric series for 1000-class models
        out = dataclasses.replace(out, features=tuple(f for f in out.features if f.drifted))
    return out


REGISTRY: dict[str, DriftTest] = {
    t.name: t
    for t in (
        DriftTest(
            "shift",
            STATISTICS,
            False,
            "each image statistic's window mean against the reference's (same "
            "context), in units of how far the reference's own windows wander; threshold from "
            "`tests.false_alarm_days`",
            run_shift,
            votes=True,
            calibrated=True,
        ),
        DriftTest(
            "emb_shift",
            EMBEDDINGS,
            False,
            "the same on the leading principal components of the embeddings "
            "(90% of their variance; features `pc00`, ...)",
            run_emb_shift,
            votes=True,
            calibrated=True,
        ),
        DriftTest(
            "view",
            LAYOUTS,
            False,
            "how well each frame's edges line up with where the reference's are (a "
            "32x18 map of the gradient), the window's mean in the same units; catches a knocked "
            "or turned camera",
            run_view,
            votes=True,
            calibrated=True,
        ),
        DriftTest(
            "ks",
            STATISTICS,
            True,
            "Kolmogorov-Smirnov per image statistic, corrected across them; frames "
            "taken as independent draws",
            run_ks,
        ),
        DriftTest(
            "cvm",
            STATISTICS,
            True,
            "Cramér-von Mises per image statistic, corrected across them: more "
            "weight on the whole distribution than KS's largest gap",
            run_cvm,
            enabled=False,
        ),
        DriftTest(
            "psi",
            STATISTICS,
            False,
            "population stability index per image statistic, on the reference's "
            "decile bins, against `tests.psi_threshold`",
            run_psi,
        ),
        DriftTest(
            "wasserstein",
            STATISTICS,
            False,
            "Wasserstein-1 distance per image statistic, in reference "
            "standard deviations, against `tests.wasserstein_threshold`",
            run_wasserstein,
        ),
        DriftTest(
            "mmd",
            EMBEDDINGS,
            True,
            "maximum mean discrepancy of the PCA-reduced embeddings, permutation p-value (feature "
            "`embeddings`: the distribution as a whole); frames taken as independent draws",
            run_mmd,
        ),
        DriftTest(
            "ks_dims",
            EMBEDDINGS,
            True,
            "Kolmogorov-Smirnov per principal component of the embeddings, "
            "Bonferroni across them (features `pc00`, `pc01`, ...)",
            run_ks_dims,
        ),
        DriftTest(
            "pred_class",
            PREDICTIONS,
            True,
            "chi-square test of the predicted-class mix (feature `predicted_class`)",
            run_pred_class,
        ),
        DriftTest(
            "confidence",
            PREDICTIONS,
            True,
            "Kolmogorov-Smirnov test of the model's top confidence (feature `confidence`)",
            run_confidence,
        ),
        DriftTest(
            "probs_ks",
            PREDICTIONS,
            True,
            "Kolmogorov-Smirnov per class probability, Bonferroni across "
            "classes (features `class_0`, `class_1`, ...)",
            run_probs_ks,
        ),
    )
}

NAMES: tuple[str, ...] = tuple(REGISTRY)


def kind_of(test: str) -> Consumes:
    """What ``test`` consumes: statistics, embeddings, layouts or predictions."""
    return REGISTRY[test].consumes


def markdown_table() -> str:
    """The registry as the Markdown table in docs/detectors.md (kept in sync by a test)."""
    rows = [
        "| test | consumes | decides by | on by default | votes by default | what it is |",
        "|---|---|---|---|---|---|",
    ]
    for t in REGISTRY.values():
        rows.append(
            f"| `{t.name}` | {t.consumes} | {t.decides_by} | "
            f"{'yes' if t.enabled else 'no'} | {'yes' if t.votes else 'no'} | {t.summary} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover - prints the table for docs/detectors.md
    print(markdown_table())
