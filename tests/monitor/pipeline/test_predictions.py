import math

import numpy as np
import pytest

from monitor.config import WindowConfig, config_from_dict
from monitor.pipeline.drift_tests import PREDICTIONS, REGISTRY
from monitor.pipeline.engine import Engine
from monitor.pipeline.features import FEATURE_NAMES
from monitor.pipeline.predictions import NO_DETECTION, PredictionWindow, class_table, derive
from monitor.pipeline.source import Frame, Origin
from monitor.pipeline.streams import StreamState, Window
from monitor.reference.collect import Collected, make_reference
from monitor.reference.store import Reference

K = 5
PREDICTION_TESTS = tuple(name for name, t in REGISTRY.items() if t.consumes == PREDICTIONS)
MIX = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
SHIFTED = np.array([0.15, 0.3, 0.15, 0.1, 0.3])


def config(**tests):
    return config_from_dict(
        {"embedding": {"enabled": False}, "tests": tests}
        if tests
        else {"embedding": {"enabled": False}}
    )


def probs_payloads(rng, n, mix, peak=3.0):
    classes = rng.choice(K, size=n, p=mix)
    out = []
    for c in classes:
        logits = rng.normal(0, 1, K)
        logits[c] += peak
        p = np.exp(logits) / np.exp(logits).sum()
        out.append({"probs": p.tolist()})
    return out


def reference_with(payloads, rng, tmp_path=None):
    n = len(payloads)
    got = Collected(
        rows=list(rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32)),
        times=[float(i) for i in range(n)],
        streams=[""] * n,
        predictions=[derive(p) for p in payloads],
    )
    ref = make_reference(got, stream=None, source="test", config=config(), embedder=None)
    if tmp_path is not None:  # through the file format
        ref = Reference.load(ref.save(tmp_path / "ref.npz"))
    return ref


def run(engine, fitted, payloads, rng):
    rows = rng.normal(size=(len(payloads), len(FEATURE_NAMES))).astype(np.float32)
    judged = engine.run_tests(fitted, rows, None, PredictionWindow([derive(p) for p in payloads]))
    return {o.name: o for o in judged.tests}


# --- derivation ------------------------------------------------------------------------------


def test_derive_from_probability_vector():
    p = derive({"probs": [0.1, 0.7, 0.2]})
    assert p.label == "1" and p.confidence == pytest.approx(0.7)
    assert p.probs.dtype == np.float32 and p.probs.tolist() == pytest.approx([0.1, 0.7, 0.2])


def test_derive_from_detections_takes_the_top_score():
    p = derive(
        {
            "detections": [
                {"label": "car", "score": 0.6, "box": [0, 0, 1, 1]},
                {"label": "person", "score": 0.9, "box": [1, 1, 2, 2]},
            ]
        }
    )
    assert p.label == "person" and p.confidence == pytest.approx(0.9) and p.probs is None
    empty = derive({"detections": []})
    assert empty.label == NO_DETECTION and math.isnan(empty.confidence)
    assert derive({"detections": [{"label": 3, "score": 1}]}).label == "3"


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {},
        {"probs": []},
        {"probs": "x"},
        {"probs": [0.1, None]},
        {"probs": [0.5, float("nan")]},
        {"detections": [{"label": "a"}]},
        {"detections": "car"},
        {"detections": [{"score": 0.5}]},
        {"detections": [{"label": "a", "score": True}]},
        [1, 2],
    ],
)
def test_malformed_or_missing_predictions_count_as_none(bad):
    assert derive(bad) is None


def test_rare_and_unseen_classes_are_pooled():
    ref, cur, names = class_table(["a"] * 90 + ["b"] * 10 + ["c"], ["a"] * 50 + ["new"] * 10)
    assert names == ["a", "b", "<other>"]
    assert (cur[50:] == 2).all() and ref[-1] == 2


# --- engine ----------------------------------------------------------------------------------


def test_prediction_tests_are_enabled_by_default_but_do_not_vote():
    cfg = config()
    assert set(PREDICTION_TESTS) <= set(cfg.active_tests)
    assert not set(PREDICTION_TESTS) & set(cfg.voting_tests)


def test_pred_class_fires_when_the_class_mix_changes_and_not_otherwise(tmp_path):
    engine = Engine(config(), FEATURE_NAMES)
    rng = np.random.default_rng(0)
    fitted = engine.prepare(reference_with(probs_payloads(rng, 1000, MIX), rng, tmp_path))
    same_fired, shifted_fired = 0, 0
    for seed in range(20):
        r = np.random.default_rng(100 + seed)
        same = run(engine, fitted, probs_payloads(r, 200, MIX), r)
        assert set(PREDICTION_TESTS) <= set(same)
        same_fired += same["pred_class"].drifted
        shifted = run(engine, fitted, probs_payloads(r, 200, SHIFTED), r)
        shifted_fired += shifted["pred_class"].drifted
        assert shifted["probs_ks"].drifted  # class 0's and class 4's probabilities moved
        assert {"class_0", "class_4"} & set(shifted["probs_ks"].drifted_features)
    assert same_fired <= 3  # alpha 0.05 over 20 windows
    assert shifted_fired == 20


def test_confidence_fires_when_the_model_becomes_unsure():
    engine = Engine(config(), FEATURE_NAMES)
    rng = np.random.default_rng(1)
    fitted = engine.prepare(reference_with(probs_payloads(rng, 500, MIX, peak=3.0), rng))
    assert not run(engine, fitted, probs_payloads(rng, 200, MIX, peak=3.0), rng)[
        "confidence"
    ].drifted
    unsure = run(engine, fitted, probs_payloads(rng, 200, MIX, peak=1.0), rng)
    assert unsure["confidence"].drifted and unsure["confidence"].p_value < 1e-6


def test_detections_with_a_new_label_drift():
    engine = Engine(config(), FEATURE_NAMES)
    rng = np.random.default_rng(2)

    def dets(labels):
        return [
            {
                "detections": [
                    {"label": lab, "score": float(rng.uniform(0.5, 1)), "box": [0, 0, 1, 1]}
                ]
            }
            for lab in labels
        ]

    ref = reference_with(dets(rng.choice(["car", "person"], 400, p=[0.7, 0.3])), rng)
    assert ref.predictions.labels == ("car", "person") and ref.predictions.probs is None
    fitted = engine.prepare(ref)
    same = run(engine, fitted, dets(rng.choice(["car", "person"], 200, p=[0.7, 0.3])), rng)
    assert not same["pred_class"].drifted and "probs_ks" not in same  # detections carry no vectors
    new = run(
        engine, fitted, dets(rng.choice(["car", "person", "truck"], 200, p=[0.5, 0.2, 0.3])), rng
    )
    assert new["pred_class"].drifted


def test_frames_without_predictions_skip_the_tests():
    engine = Engine(config(), FEATURE_NAMES)
    rng = np.random.default_rng(3)
    with_preds = engine.prepare(reference_with(probs_payloads(rng, 300, MIX), rng))
    none = run(engine, with_preds, [None] * 200, rng)
    assert "ks" in none and not set(PREDICTION_TESTS) & set(none)
    few = run(engine, with_preds, probs_payloads(rng, 5, MIX) + [None] * 195, rng)
    assert not set(PREDICTION_TESTS) & set(few)
    without = engine.prepare(reference_with([None] * 300, rng))
    assert without.reference.predictions is None
    assert not set(PREDICTION_TESTS) & set(run(engine, without, probs_payloads(rng, 200, MIX), rng))


def test_a_voting_prediction_test_fires_the_evaluation():
    engine = Engine(config(vote=["ks", "pred_class"]), FEATURE_NAMES)
    assert engine.vote_alpha == pytest.approx(0.025)
    rng = np.random.default_rng(4)
    fitted = engine.prepare(reference_with(probs_payloads(rng, 500, MIX), rng))
    rows = rng.normal(size=(200, len(FEATURE_NAMES))).astype(np.float32)
    judged = engine.run_tests(
        fitted, rows, None, PredictionWindow([derive(p) for p in probs_payloads(rng, 200, SHIFTED)])
    )
    assert judged.drifted


# --- stream window ---------------------------------------------------------------------------


def test_window_keeps_predictions_aligned_and_checkpoints_them():
    state = StreamState("c1", Window(len(FEATURE_NAMES), WindowConfig(size=10, evaluate_every=5)))
    rng = np.random.default_rng(5)
    payloads = (
        probs_payloads(rng, 8, MIX) + [None, {"detections": []}] + probs_payloads(rng, 4, MIX)
    )
    for i, p in enumerate(payloads):
        f = Frame(
            camera_id="c1",
            frame_id=str(i),
            ts=float(i),
            data=bytes([i]),
            origin=Origin("t", 0, i),
            predictions=p,
        )
        state.observe(f, np.full(len(FEATURE_NAMES), i, np.float32), bytes([i]))
    items = state.window.predictions().items
    assert len(items) == 10 and items[4] is None and items[5].label == NO_DETECTION
    assert items[0].probs.tolist() == pytest.approx(payloads[4]["probs"])
    restored = StreamState(
        "c1", Window(len(FEATURE_NAMES), WindowConfig(size=10, evaluate_every=5))
    )
    restored.restore(state.to_bytes())
    again = restored.window.predictions().items
    assert [None if p is None else p.label for p in again] == [
        None if p is None else p.label for p in items
    ]
    assert math.isnan(again[5].confidence) and again[5].probs is None
    assert again[9].probs.tolist() == items[9].probs.tolist()
    assert again[9].confidence == pytest.approx(items[9].confidence)
