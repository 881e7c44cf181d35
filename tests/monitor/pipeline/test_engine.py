"""The engine on a stream's state: which tests run, which vote, hysteresis, and which references it
refuses. A small synthetic reference of three image statistics, no decoding, no embedder."""

import dataclasses

import numpy as np
import pytest
from scipy.stats import binom

from monitor.config import WindowConfig, config_from_dict
from monitor.pipeline.embed import EmbedderIdentity, EmbedderMismatch
from monitor.pipeline.engine import Engine
from monitor.pipeline.predictions import MIN_PREDICTIONS, derive, reference_predictions
from monitor.pipeline.streams import StreamState, Window
from monitor.reference.store import BadReference, Reference

NAMES = ("brightness_mean", "contrast_rms", "noise_sigma")
N_REF = 400
WINDOW = 100
IDENTITY = EmbedderIdentity("driftmon-randconv-v1", "ab" * 32, 128, "centred", 8)


def config(embeddings=False, **sections):
    """The p-value tests voting (KS and MMD at alpha/2 each) and a fixed 3-of-5 hysteresis: this
    module pins the engine's mechanics on tests with known levels; the calibrated default voters are
    tests/monitor/pipeline/test_calibrated.py."""
    return config_from_dict(
        {
            "embedding": {"enabled": embeddings, "pca_components": 4, "mmd_permutations": 50},
            "window": {"size": WINDOW, "evaluate_every": 10},
            "tests": {"vote": ["ks", "mmd"]},
            "hysteresis": {"k": 3, "m": 5},
        }
        | sections
    )


def reference(seed=0, embedder=IDENTITY, predictions=None):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(N_REF, IDENTITY.output_dim)).astype(np.float32) if embedder else None
    return Reference(
        features=rng.normal(size=(N_REF, len(NAMES))).astype(np.float32),
        feature_names=NAMES,
        embeddings=emb,
        embedder=embedder.to_dict() if embedder else None,
        predictions=predictions,
    )


def quiet_rows(ref):
    """A window of WINDOW rows at the reference's own quantiles, column by column: every KS
    statistic is as small as it can be, so no test with a p-value fires, whatever the seed."""
    return np.sort(ref.features, axis=0)[N_REF // WINDOW // 2 :: N_REF // WINDOW]


def shifted_rows(ref, feature="noise_sigma", by=3.0):
    rows = quiet_rows(ref).copy()
    rows[:, NAMES.index(feature)] += by
    return rows


def state(rows, embeddings=None, predictions=None):
    """A stream whose window holds ``rows`` (and their embeddings, predictions)."""
    dim = 0 if embeddings is None else embeddings.shape[1]
    s = StreamState("cam-1", Window(len(NAMES), WindowConfig(size=WINDOW, evaluate_every=10), dim))
    fill(s, rows, embeddings, predictions)
    return s


def fill(s, rows, embeddings=None, predictions=None):
    for i, row in enumerate(rows):
        s.window.append(
            row,
            None,
            None if embeddings is None else embeddings[i],
            None if predictions is None else predictions[i],
        )


def outcomes(evaluation):
    return {t.name: t for t in evaluation.tests}


# --- drift on one window --------------------------------------------------------------------------


def test_a_shifted_window_drifts_on_the_shifted_statistic_and_a_quiet_one_does_not():
    ref = reference(embedder=None)
    engine = Engine(config(), NAMES)
    prepared = engine.prepare(ref)
    quiet = engine.evaluate(state(quiet_rows(ref)), prepared, now=10.0)
    shifted = engine.evaluate(state(shifted_rows(ref)), prepared, now=10.0)
    assert not quiet.window_drifted and not outcomes(quiet)["ks"].drifted
    assert shifted.window_drifted and outcomes(shifted)["ks"].drifted_features == ["noise_sigma"]
    assert (shifted.stream, shifted.evaluated_at, shifted.n_ref, shifted.n_cur) == (
        "cam-1",
        10.0,
        N_REF,
        WINDOW,
    )
    assert (shifted.reference_stream, shifted.reference_version) == ("*", 1)


def test_unshifted_windows_fire_at_most_at_the_voting_level_and_shifted_ones_always():
    ref = reference(embedder=None)
    engine = Engine(config(), NAMES)
    prepared = engine.prepare(ref)
    rng = np.random.default_rng(7)
    n = 300
    fired = sum(
        engine.evaluate(state(rng.normal(size=(WINDOW, len(NAMES)))), prepared).window_drifted
        for _ in range(n)
    )
    # KS with Bonferroni fires on at most alpha of unshifted windows: more than the binomial
    # 1e-4 quantile would be a broken level, not bad luck
    assert fired <= binom.ppf(1 - 1e-4, n, engine.vote_alpha)
    moved = sum(
        engine.evaluate(
            state(rng.normal(size=(WINDOW, len(NAMES))) + [0, 0, 1.0]), prepared
        ).window_drifted
        for _ in range(50)
    )
    assert moved == 50


def test_only_voting_tests_make_a_window_drift():
    ref = reference(embedder=None)
    rows = shifted_rows(ref)
    tests = {"enabled": ["ks", "psi", "wasserstein"], "wasserstein_threshold": 100.0}
    ks_votes = Engine(config(tests=tests | {"vote": ["ks"]}), NAMES)
    ks_silent = Engine(config(tests=tests | {"vote": ["wasserstein"]}), NAMES)
    voted = ks_votes.evaluate(state(rows), ks_votes.prepare(ref))
    silent = ks_silent.evaluate(state(rows), ks_silent.prepare(ref))
    # the same outcomes, one verdict each: ks and psi drifted, wasserstein (threshold 100) did not
    for e in (voted, silent):
        assert {t.name: t.drifted for t in e.tests} == {
            "ks": True,
            "psi": True,
            "wasserstein": False,
        }
    assert voted.window_drifted and not silent.window_drifted


# --- hysteresis -----------------------------------------------------------------------------------


def test_hysteresis_declares_k_of_m_and_recovers_after_consecutive_quiet_windows():
    ref = reference(embedder=None)
    engine = Engine(config(hysteresis={"k": 2, "m": 3, "recover": 2}), NAMES)
    prepared = engine.prepare(ref)
    s = state(quiet_rows(ref))
    fires = [True, False, False, True, True, True, False, False]
    seen = []
    for t, fire in enumerate(fires):
        fill(s, shifted_rows(ref) if fire else quiet_rows(ref))
        e = engine.evaluate(s, prepared, now=float(t))
        seen.append((e.window_drifted, e.drifted, e.changed))
        assert s.evaluation is e and s.last_evaluated_at == t and s.window.since_evaluation == 0
    assert [w for w, _, _ in seen] == fires
    # two fired windows 3 evaluations apart are not 2 of the last 3; the next one is
    assert [d for _, d, _ in seen] == [False, False, False, False, True, True, True, False]
    assert [c for _, _, c in seen] == [False, False, False, False, True, False, False, True]


def test_hysteresis_state_lives_on_the_stream_not_the_engine():
    ref = reference(embedder=None)
    engine = Engine(config(hysteresis={"k": 1, "m": 1, "recover": 1}), NAMES)
    prepared = engine.prepare(ref)
    drifting, quiet = state(shifted_rows(ref)), state(quiet_rows(ref))
    assert engine.evaluate(drifting, prepared).drifted
    assert not engine.evaluate(quiet, prepared).drifted
    assert drifting.detector_state.drifted and not quiet.detector_state.drifted


# --- tests without their inputs -------------------------------------------------------------------


def test_embedding_tests_are_absent_without_embeddings_in_the_window():
    ref = reference()
    engine = Engine(
        config(embeddings=True, tests={"enabled": ["ks", "mmd", "ks_dims"], "vote": ["ks", "mmd"]}),
        NAMES,
        IDENTITY,
    )
    prepared = engine.prepare(ref)
    without = engine.evaluate(state(quiet_rows(ref)), prepared)
    assert [t.name for t in without.tests] == ["ks"]
    emb = np.random.default_rng(3).normal(size=(WINDOW, IDENTITY.output_dim)).astype(np.float32)
    with_emb = engine.evaluate(state(quiet_rows(ref), emb), prepared)
    assert [t.name for t in with_emb.tests] == ["ks", "mmd", "ks_dims"]
    assert [f.feature for f in outcomes(with_emb)["ks_dims"].features] == [
        "pc00",
        "pc01",
        "pc02",
        "pc03",
    ]


def test_prediction_tests_are_absent_with_too_few_predictions():
    rng = np.random.default_rng(5)
    payloads = [{"probs": rng.dirichlet([1, 1, 1]).tolist()} for _ in range(N_REF)]
    ref = reference(embedder=None, predictions=reference_predictions([derive(p) for p in payloads]))
    engine = Engine(
        config(tests={"enabled": ["ks", "pred_class", "confidence", "probs_ks"], "vote": ["ks"]}),
        NAMES,
    )
    prepared = engine.prepare(ref)

    def evaluated(with_predictions):
        preds = [
            derive(p) if i < with_predictions else None for i, p in enumerate(payloads[:WINDOW])
        ]
        return [
            t.name
            for t in engine.evaluate(state(quiet_rows(ref), predictions=preds), prepared).tests
        ]

    assert evaluated(MIN_PREDICTIONS - 1) == ["ks"]
    assert evaluated(MIN_PREDICTIONS) == ["ks", "pred_class", "confidence", "probs_ks"]
    # a reference without model outputs: the window's are not compared with anything
    bare = engine.prepare(reference(embedder=None))
    preds = [derive(p) for p in payloads[:WINDOW]]
    assert [
        t.name for t in engine.evaluate(state(quiet_rows(ref), predictions=preds), bare).tests
    ] == ["ks"]


# --- references the engine refuses ----------------------------------------------------------------


def test_a_reference_without_embeddings_is_refused_only_when_embedding_tests_are_active():
    bare = reference(embedder=None)
    with_embeddings = Engine(config(embeddings=True), NAMES, IDENTITY)
    with pytest.raises(BadReference, match=r"^reference \* v1 has no embeddings"):
        with_embeddings.check(bare)
    with pytest.raises(BadReference, match="has no embeddings"):
        with_embeddings.prepare(bare)
    Engine(config(), NAMES).check(bare)  # statistics only: nothing missing
    with_embeddings.check(reference())


def test_a_reference_from_another_embedder_is_refused_naming_what_differs():
    other = dataclasses.replace(IDENTITY, weights_sha256="cd" * 32)
    engine = Engine(config(embeddings=True), NAMES, IDENTITY)
    with pytest.raises(
        EmbedderMismatch, match=r"^reference \* v1: .*weights_sha256 \(reference 'cdcd"
    ):
        engine.check(reference(embedder=other))
    with pytest.raises(EmbedderMismatch):
        engine.prepare(reference(embedder=other))


def test_a_reference_lacking_a_statistic_named_in_tests_features_is_refused():
    ref = Reference(features=np.zeros((10, 2), np.float32), feature_names=NAMES[:2])
    named = config(tests={"vote": ["ks", "mmd"], "features": list(NAMES)})
    with pytest.raises(BadReference, match=r"lacks feature\(s\) \['noise_sigma'\]"):
        Engine(named, NAMES).check(ref)


def test_a_reference_built_before_a_statistic_existed_is_judged_without_it(caplog):
    """A statistic appended to the image statistics must not stop a daemon whose stored references
    predate it: they are judged on the statistics they hold, and the log says how to get the new
    one."""
    full = reference()
    old = Reference(features=full.features[:, :2], feature_names=NAMES[:2])
    engine = Engine(config(), NAMES)
    engine.check(old)
    with caplog.at_level("WARNING"):
        prepared = engine.prepare(old)
    assert prepared.feature_names == NAMES[:2]
    assert "predates the statistic(s) ['noise_sigma']" in caplog.text
    ks = outcomes(engine.evaluate(state(shifted_rows(full, "contrast_rms")), prepared))["ks"]
    assert ks.drifted and {f.feature for f in ks.features} == set(NAMES[:2])
    # the window's rows still hold every statistic: the engine picks the reference's columns
    assert not outcomes(engine.evaluate(state(shifted_rows(full)), prepared))["ks"].drifted


# --- the alpha split ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "embeddings,tests,expected",
    [
        (True, {"vote": ["ks", "mmd"]}, 0.05 / 2),  # ks and mmd vote
        (False, {"vote": ["ks", "mmd"]}, 0.05),  # mmd inactive without embeddings: ks alone
        (True, {}, 0.05),  # the defaults: the calibrated tests vote, no test with a p-value
        (False, {"enabled": ["ks", "cvm"], "vote": ["ks", "cvm"], "alpha": 0.01}, 0.01 / 2),
        (False, {"enabled": ["ks", "psi"], "vote": ["ks", "psi"]}, 0.05),  # psi has no p-value
    ],
)
def test_alpha_is_split_between_the_active_voting_tests_with_p_values(embeddings, tests, expected):
    assert Engine(config(embeddings=embeddings, tests=tests), NAMES).vote_alpha == pytest.approx(
        expected
    )


def test_voting_tests_run_at_their_share_of_alpha_and_the_others_at_alpha():
    engine = Engine(
        config(embeddings=True, tests={"enabled": ["ks", "cvm", "mmd"], "vote": ["ks", "mmd"]}),
        NAMES,
        IDENTITY,
    )
    ref = reference()
    e = engine.evaluate(state(quiet_rows(ref)), engine.prepare(ref))
    assert outcomes(e)["ks"].threshold == pytest.approx(0.025)  # shares alpha with mmd
    assert outcomes(e)["cvm"].threshold == pytest.approx(0.05)  # reported, not voting
