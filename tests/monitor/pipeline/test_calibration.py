"""tests.run_length: the KS threshold calibrated on the reference for the daemon's own schedule."""

import dataclasses

import numpy as np
import pytest

from monitor.reference.collect import Collected, make_reference
from monitor.config import ConfigError, config_from_dict
from monitor.pipeline.engine import Engine
from monitor.reference.fit import CalibrationPlan
from monitor.pipeline.features import FEATURE_NAMES
from monitor.reference.store import Reference, BadReference

FEATURES = list(FEATURE_NAMES[:4])


def config(window=50, every=10, run_length=200, **tests):
    return config_from_dict({
        "embedding": {"enabled": False}, "window": {"size": window, "evaluate_every": every},
        "tests": {"enabled": ["ks"], "vote": ["ks"], "features": FEATURES, "run_length": run_length,
                  **tests}})


def reference(cfg, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    got = Collected(rows=list(rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32)),
                    times=[float(i) for i in range(n)], streams=[""] * n)
    return make_reference(got, stream=None, source="test", config=cfg, embedder=None)


def window(rng, n=50, shift=0.0):
    rows = rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32)
    rows[:, FEATURE_NAMES.index(FEATURES[2])] += shift
    return rows


def test_config_admits_only_ks_as_voter_and_a_sane_run_length():
    with pytest.raises(ConfigError, match=r"^tests.vote: with tests.run_length only 'ks' can vote"):
        config_from_dict({"tests": {"run_length": 1000}})  # default vote: ks and mmd
    with pytest.raises(ConfigError, match=r"^tests.run_length: must be 0 \(off\) or in"):
        config(run_length=10)
    with pytest.raises(ConfigError, match=r"^tests.run_length_block"):
        config(run_length_block=0)
    assert config().evaluation_stride == 10
    tumbling = config_from_dict({"embedding": {"enabled": False}, "tests": {"vote": ["ks"]},
                                 "window": {"size": 80, "mode": "tumbling"}})
    assert tumbling.evaluation_stride == 80


def test_reference_build_stores_the_calibration_and_the_engine_uses_it(tmp_path):
    cfg = config()
    ref = Reference.load(reference(cfg).save(tmp_path / "ref.npz"))  # through the file format
    plan = CalibrationPlan.from_config(cfg, tuple(FEATURES))
    cal = plan.stored(ref)
    d_max, level = cal.statistic_threshold, cal.level
    assert 0 < level < 0.05 / len(FEATURES) and 0 < d_max < 1
    engine = Engine(cfg, FEATURE_NAMES)
    engine.check(ref)  # calibrated for this schedule: accepted at start
    prepared = engine.prepare(ref)
    assert prepared.ks_calibration == cal

    rng = np.random.default_rng(1)
    for rows, shifted in ((window(rng), False), (window(rng, shift=1.0), True)):
        judged = engine.run_tests(prepared, rows)
        (ks,), fired = judged.tests, judged.drifted
        assert ks.correction == "calibrated" and ks.threshold == level
        assert fired is shifted and ks.drifted is shifted
        # the rule: a feature drifts when its statistic exceeds the calibrated threshold
        assert [f.drifted for f in ks.features] == [f.statistic > d_max for f in ks.features]
        assert ks.drifted_features == ([FEATURES[2]] if shifted else [])
    # a window of another size is not what the threshold was calibrated for: Bonferroni
    (ks,) = engine.run_tests(prepared, window(rng, n=70)).tests
    assert ks.correction == "bonferroni"


def test_another_schedule_is_refused_at_start_and_a_shared_reference_is_calibrated_at_fit():
    ref = reference(config(every=10))
    other = config(every=25)
    engine = Engine(other, FEATURE_NAMES)
    with pytest.raises(BadReference, match=r"not calibrated for tests.run_length \(window 50 every 25"):
        engine.check(ref)
    prepared = engine.prepare(ref)  # the daemon fits the shared reference at start: it calibrates then
    assert prepared.ks_calibration == CalibrationPlan.from_config(other, tuple(FEATURES)).stored(prepared.reference)
    assert prepared.ks_calibration is not None and prepared.reference is not ref  # fitted: a new reference


def test_calibrated_threshold_fires_less_often_than_bonferroni_on_unshifted_windows():
    cfg = config(run_length=500)
    ref = reference(cfg, n=4000, seed=2)
    calibrated = Engine(cfg, FEATURE_NAMES)
    plain = Engine(config_from_dict({"embedding": {"enabled": False}, "window": {"size": 50},
                                     "tests": {"enabled": ["ks"], "vote": ["ks"], "features": FEATURES}}),
                   FEATURE_NAMES)
    f_cal, f_plain = calibrated.prepare(ref), plain.prepare(ref)
    rng = np.random.default_rng(3)
    fires = np.array([[calibrated.run_tests(f_cal, w).drifted, plain.run_tests(f_plain, w).drifted]
                      for w in (window(rng) for _ in range(1500))])
    # Bonferroni: about alpha = 5% of single looks; calibrated: well under 1% of them
    assert 0.02 < fires[:, 1].mean() < 0.08, fires.mean(axis=0)
    assert fires[:, 0].mean() < 0.01, fires.mean(axis=0)
    assert not (fires[:, 0] & ~fires[:, 1]).any()  # stricter: fires only where Bonferroni does


def test_daemon_calibrates_the_shared_reference_at_start_and_refuses_an_uncalibrated_one_added_later(
        tmp_path, caplog):
    from monitor.service.daemon import Daemon
    from monitor.reference.store import ReferenceStore

    store = ReferenceStore(tmp_path / "store")
    uncalibrated = config_from_dict({"embedding": {"enabled": False}})
    store.add(reference(uncalibrated))  # shared, built without tests.run_length
    cfg = config_from_dict({
        "embedding": {"enabled": False}, "window": {"size": 50, "evaluate_every": 10},
        "tests": {"enabled": ["ks"], "vote": ["ks"], "features": FEATURES, "run_length": 200},
        "reference": {"path": str(tmp_path / "store")}, "http": {"port": 0}})
    d = Daemon(cfg)
    shared = d._prepared_for("cam-a")
    assert shared is not None and shared.ks_calibration is not None  # calibrated at start

    late = reference(uncalibrated, seed=4)
    store.add(dataclasses.replace(late, stream="cam-new"))
    assert d._prepared_for("cam-new") is None  # not judged with an uncalibrated threshold
    assert "not calibrated for tests.run_length" in caplog.text
    assert not any(key[0] == "cam-new" for key in d._prepared)  # and not calibrated in the loop
