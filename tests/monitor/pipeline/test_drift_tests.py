"""The registry of drift tests: the one place a test is named, read by config, engine and docs."""

import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import cramervonmises_2samp

from monitor.config import ConfigError, config_from_dict
from monitor.pipeline.drift_tests import EMBEDDINGS, REGISTRY, markdown_table
from monitor.pipeline.engine import Engine
from monitor.reference.store import Reference

DOCS = Path(__file__).resolve().parents[3] / "docs" / "detectors.md"
NAMES = ("brightness_mean", "contrast_rms", "noise_sigma")


def test_the_docs_table_is_the_registry():
    text = DOCS.read_text()
    block = re.search(
        r"<!-- BEGIN GENERATED: python -m monitor.pipeline.drift_tests -->\n(.*?)\n<!-- END",
        text,
        re.S,
    )
    assert block is not None and block.group(1) == markdown_table()


def test_config_defaults_and_validation_come_from_the_registry():
    cfg = config_from_dict({})
    assert cfg.tests.enabled == tuple(n for n, t in REGISTRY.items() if t.enabled)
    assert cfg.tests.vote == tuple(n for n, t in REGISTRY.items() if t.votes)
    with pytest.raises(
        ConfigError,
        match=r"^tests\.enabled\[1\]: unknown test 'kss'; known: shift, emb_shift, view, ks, cvm",
    ):
        config_from_dict({"tests": {"enabled": ["ks", "kss"]}})
    off = config_from_dict({"embedding": {"enabled": False}})
    assert not any(REGISTRY[t].consumes == EMBEDDINGS for t in off.active_tests)


def test_alpha_is_split_between_the_voting_tests_with_p_values():
    cfg = config_from_dict(
        {
            "embedding": {"enabled": False},
            "tests": {"enabled": ["ks", "cvm", "psi"], "vote": ["ks", "cvm", "psi"]},
        }
    )
    assert Engine(cfg, NAMES).vote_alpha == pytest.approx(0.05 / 2)  # psi decides by a threshold


def test_an_added_test_runs_through_the_engine_and_agrees_with_scipy():
    rng = np.random.default_rng(0)
    ref = Reference(features=rng.normal(size=(400, 3)).astype(np.float32), feature_names=NAMES)
    cfg = config_from_dict(
        {"embedding": {"enabled": False}, "tests": {"enabled": ["ks", "cvm"], "vote": ["cvm"]}}
    )
    engine = Engine(cfg, NAMES)
    prepared = engine.prepare(ref)
    window = rng.normal(size=(120, 3)).astype(np.float32) + [0.0, 0.0, 0.6]
    judged = engine.run_tests(prepared, window)
    cvm = next(t for t in judged.tests if t.name == "cvm")
    assert judged.drifted and "noise_sigma" in cvm.drifted_features
    for i, f in enumerate(cvm.features):
        expected = cramervonmises_2samp(ref.features[:, i], window[:, i])
        assert f.statistic == pytest.approx(expected.statistic, rel=1e-9)
        assert f.p_value == pytest.approx(
            min(1.0, 3 * expected.pvalue), rel=1e-6
        )  # Bonferroni over 3


def test_the_image_statistics_tests_share_one_placement_per_evaluation(monkeypatch):
    """ks, cvm, psi and wasserstein read one PlacedWindow (one validation, sort and placement of
    the window) and give what the reference's methods give on the raw window."""
    from detectors.reference import PlacedWindow, UnivariateReference

    rng = np.random.default_rng(1)
    ref = Reference(features=rng.normal(size=(400, 3)).astype(np.float32), feature_names=NAMES)
    cfg = config_from_dict(
        {
            "embedding": {"enabled": False},
            "tests": {"enabled": ["ks", "cvm", "psi", "wasserstein"], "vote": ["ks"]},
        }
    )
    engine = Engine(cfg, NAMES)
    prepared = engine.prepare(ref)
    window = rng.normal(size=(120, 3)).astype(np.float32) + [0.0, 0.3, 0.0]
    placements, rank_reads = [], []
    place, pooled = UnivariateReference.place, PlacedWindow.pooled.fget
    monkeypatch.setattr(
        UnivariateReference, "place", lambda self, x: placements.append(1) or place(self, x)
    )
    monkeypatch.setattr(
        PlacedWindow, "pooled", property(lambda self: rank_reads.append(1) or pooled(self))
    )
    judged = engine.run_tests(prepared, window)
    assert [t.name for t in judged.tests] == ["ks", "cvm", "psi", "wasserstein"]
    assert len(placements) == 1 and len(rank_reads) == 2  # ks and cvm read the one placement
    monkeypatch.undo()
    uni = prepared.univariate
    raw = {
        "ks": uni.ks(window, alpha=engine.vote_alpha),
        "cvm": uni.cvm(window, alpha=0.05),
        "psi": uni.psi(window, threshold=cfg.tests.psi_threshold),
        "wasserstein": uni.wasserstein(window, threshold=cfg.tests.wasserstein_threshold),
    }
    for t in judged.tests:
        assert [f.statistic for f in t.features] == raw[t.name].statistic.tolist()
        assert [f.drifted for f in t.features] == raw[t.name].drifted.tolist()
    # no image-statistics test active: the window is not placed at all
    no_stats = Engine(
        config_from_dict(
            {
                "embedding": {"enabled": False},
                "tests": {"enabled": ["confidence"], "vote": ["confidence"]},
            }
        ),
        NAMES,
    )
    monkeypatch.setattr(
        UnivariateReference, "place", lambda self, x: placements.append(1) or place(self, x)
    )
    no_stats.run_tests(prepared, window)
    assert len(placements) == 1
