"""Engine: judge a stream's window against its reference and keep its drift state.

Each evaluation runs every active test of the registry (``monitor.pipeline.drift_tests``) on the
window — one vectorised call per test, corrected across features — and the *window drifted* when
any voting test drifted. Hysteresis then decides when the stream is declared drifted or recovered,
so one unlucky window does not page anyone.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.hysteresis import Hysteresis
from monitor.config import Config
from monitor.files import JSONObject
from monitor.pipeline.context import frame_context, window_context
from monitor.pipeline.drift_tests import (
    EMBEDDINGS,
    REGISTRY,
    STATISTICS,
    Run,
    TestOutcome,
    WindowData,
    part_length,
)
from monitor.pipeline.embed import EmbedderIdentity, EmbedderMismatch, check_compatible
from monitor.pipeline.predictions import PredictionWindow
from monitor.pipeline.streams import StreamState
from monitor.reference.fit import (
    MAPLESS,
    PreparedReference,
    fit_reference,
    judged_features,
    tested_features,
)
from monitor.reference.store import BadReference, Reference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Judgement:
    """Every active test's outcome on one window, and whether a voting test drifted."""

    tests: tuple[TestOutcome, ...]
    drifted: bool
    context: str  # the window's context (monitor.pipeline.context)
    # contexts of the window's frames that the reference lacks (judged against all of it)
    unreferenced: tuple[str, ...] = ()


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a stream's window: what each test found, and the stream's state after
    it."""

    stream: str
    evaluated_at: float
    reference_stream: str  # "*" for the shared reference
    reference_version: int
    n_ref: int
    n_cur: int
    tests: tuple[TestOutcome, ...]
    window_drifted: bool  # a voting test drifted on this window
    drifted: bool  # the stream's state after hysteresis: declared drifted
    changed: bool  # this evaluation flipped the state
    context: str = "default"  # the window's context, judged against the reference's frames of it
    unreferenced_contexts: tuple[str, ...] = ()  # its frames' contexts the reference lacks

    def to_dict(self) -> JSONObject:
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "tests"
        } | {"tests": [t.to_dict() for t in self.tests]}


class Engine:
    """Runs the configured tests on due streams; owns only configuration and its random
    generator."""

    def __init__(
        self,
        config: Config,
        all_features: tuple[str, ...],
        embedder: EmbedderIdentity | None = None,
        seed: int = 0,
    ):
        self.config = config
        self.active = config.active_tests
        self.voting = config.voting_tests
        self.embedder = embedder
        self.all_features = all_features
        self.feature_names = tested_features(config, all_features)
        # Bonferroni across the voting tests with p-values: one evaluation fires with
        # probability at most `alpha` on unshifted data
        with_p = [t for t in self.voting if REGISTRY[t].yields_p_value]
        self.vote_alpha = config.tests.alpha / max(1, len(with_p))
        self._uses_embeddings = any(REGISTRY[t].consumes == EMBEDDINGS for t in self.active)
        self._uses_statistics = any(REGISTRY[t].consumes == STATISTICS for t in self.active)
        self._rng = np.random.default_rng(seed)
        self._columns: dict[tuple[str, ...], np.ndarray] = {}

    def prepare(self, reference: Reference) -> PreparedReference:
        """``reference`` fitted (``fit_reference``: what it lacks for this configuration) and
        prepared for the tests, on the statistics it holds (``judged_features``)."""
        self.check_embeddings(reference)
        names = judged_features(reference, self.config, self.all_features)
        if names != self.feature_names:
            log.warning(
                "reference %s v%s predates the statistic(s) %s: judged without them; rebuild it "
                "(driftmon reference build) to use them",
                reference.stream or "*",
                reference.version,
                [n for n in self.feature_names if n not in names],
            )
        if self.config.uses_layouts and reference.layouts is None:
            log.warning("reference %s v%s %s", reference.stream or "*", reference.version, MAPLESS)
        return PreparedReference(
            fit_reference(reference, self.config),
            names,
            self.config,
            embeddings=self._uses_embeddings,
            layouts=self.config.uses_layouts,
        )

    def _column_index(self, names: tuple[str, ...]) -> np.ndarray:
        """Where the statistics ``names`` are in a window's rows (``all_features``)."""
        if names not in self._columns:
            self._columns[names] = np.array([self.all_features.index(n) for n in names])
        return self._columns[names]

    def new_detector(self) -> Hysteresis:
        k, m = self.config.hysteresis_k_m
        return Hysteresis(k=k, m=m, recover=self.config.hysteresis.recover)

    def check(self, reference: Reference) -> None:
        """Raise what preparing ``reference`` would raise (missing features or embeddings, another
        embedder), without preparing anything."""
        judged_features(reference, self.config, self.all_features)
        self.check_embeddings(reference)

    def check_embeddings(self, ref: Reference) -> None:
        """A reference the embedding tests cannot use (none, or from another embedder) is
        refused."""
        if not self._uses_embeddings:
            return
        where = f"reference {ref.stream or '*'} v{ref.version}"
        if ref.embeddings is None or ref.embedder is None:
            raise BadReference(
                f"{where} has no embeddings: rebuild it with embedding enabled, "
                "or set embedding.enabled: false"
            )
        if self.embedder is not None:
            try:
                check_compatible(EmbedderIdentity.from_dict(ref.embedder), self.embedder)
            except EmbedderMismatch as e:
                raise EmbedderMismatch(f"{where}: {e}") from None

    def run_tests(
        self,
        prepared: PreparedReference,
        rows: np.ndarray,
        embeddings: np.ndarray | None = None,
        predictions: PredictionWindow | None = None,
        contexts: Sequence[str] | None = None,
        layouts: np.ndarray | None = None,
    ) -> Judgement:
        """Every active test on ``rows`` (all image statistics, one row per frame) and, when given,
        the frames' embeddings, model outputs, contexts (else derived from the rows) and edge-layout
        maps. A test without its inputs (no embeddings, too few predictions, a reference without
        maps) is skipped: absent from the outcomes."""
        pca = prepared.pca
        reduced = None if embeddings is None or pca is None else pca.transform(embeddings)
        statistics = rows[:, self._column_index(prepared.feature_names)]
        # validated, sorted and placed in the reference once for every image-statistics test
        placed = prepared.univariate.place(statistics) if self._uses_statistics else None
        t = self.config
        if contexts is None:
            contexts = [frame_context(row, 0.0, "", t.context, self.all_features) for row in rows]
        window = WindowData(
            statistics,
            reduced,
            predictions,
            layouts,
            placed,
            window_context(contexts),
            tuple(contexts),
        )
        outcomes = []
        for name in self.active:
            alpha = self.vote_alpha if name in self.voting else t.tests.alpha
            run = Run(prepared, window, alpha, t.tests, self._rng, t.embedding.mmd_permutations)
            outcome = REGISTRY[name].run(run)
            if outcome is not None:
                outcomes.append(outcome)
        return Judgement(
            tuple(outcomes),
            any(o.drifted for o in outcomes if o.name in self.voting),
            window.context,
            tuple(
                c
                for c, count in Counter(contexts).items()
                if not prepared.holds(c, part_length(count, len(rows)))
            ),
        )

    def evaluate(
        self, state: StreamState, prepared: PreparedReference, now: float | None = None
    ) -> Evaluation:
        rows = state.window.values()
        judged = self.run_tests(
            prepared,
            rows,
            state.window.embeddings(),
            state.window.predictions(),
            state.window.contexts(),
            state.window.layouts(),
        )
        if state.detector_state is None:
            state.detector_state = self.new_detector()
        step = state.detector_state.update(judged.drifted)
        state.window.mark_evaluated()
        evaluation = Evaluation(
            stream=state.key,
            evaluated_at=time.time() if now is None else now,
            reference_stream=prepared.stream,
            reference_version=prepared.reference.version,
            n_ref=prepared.reference.n_frames,
            n_cur=int(rows.shape[0]),
            tests=judged.tests,
            window_drifted=judged.drifted,
            drifted=bool(step.drifted),
            changed=bool(step.changed),
            context=judged.context,
            unreferenced_contexts=judged.unreferenced,
        )
        state.evaluation = evaluation
        state.last_evaluated_at = evaluation.evaluated_at
        return evaluation
