import dataclasses

from prometheus_client import CollectorRegistry

from monitor.config import MetricsConfig
from monitor.pipeline.drift_tests import FeatureOutcome, TestOutcome
from monitor.pipeline.engine import Evaluation
from monitor.service.metrics import OTHER, Metrics


def evaluation(stream, drifted=True):
    f = FeatureOutcome("brightness_mean", 0.4, 0.001, True)
    t = TestOutcome("ks", 0.4, 0.001, 0.05, True, "bonferroni", "exact", (f,))
    return Evaluation(stream, 100.0, "*", 1, 500, 100, (t,), True, drifted, True)


def test_stream_labels_are_capped_and_folded_frames_counted():
    r = CollectorRegistry()
    m = Metrics(MetricsConfig(max_streams=2), r)
    for i in range(5):
        m.observe_frame(f"cam-{i}", ts=10.0 + i, identical=False, window_fill=0.5)
    assert r.get_sample_value("driftmon_stream_frames_total", {"stream": "cam-0"}) == 1
    assert r.get_sample_value("driftmon_stream_frames_total", {"stream": "cam-1"}) == 1
    assert r.get_sample_value("driftmon_stream_frames_total", {"stream": "cam-2"}) is None
    assert r.get_sample_value("driftmon_stream_window_fill_ratio", {"stream": "cam-1"}) == 0.5
    assert r.get_sample_value("driftmon_stream_frames_total", {"stream": OTHER}) == 3
    assert r.get_sample_value("driftmon_streams_folded_total") == 3
    # the folded series keeps the newest event time of the streams in it
    assert (
        r.get_sample_value("driftmon_stream_last_frame_timestamp_seconds", {"stream": OTHER})
        == 14.0
    )


def test_verdicts_set_per_stream_state_but_never_for_folded_streams():
    r = CollectorRegistry()
    m = Metrics(MetricsConfig(max_streams=1), r)
    m.observe_evaluation(evaluation("cam-a"), {"brightness_mean": 42.0})
    m.observe_evaluation(evaluation("cam-b"), {"brightness_mean": 1.0})
    assert r.get_sample_value("driftmon_stream_drifted", {"stream": "cam-a"}) == 1
    assert (
        r.get_sample_value("driftmon_stream_drifted_since_timestamp_seconds", {"stream": "cam-a"})
        == 100.0
    )
    assert (
        r.get_sample_value("driftmon_stream_test_p_value", {"stream": "cam-a", "test": "ks"})
        == 0.001
    )
    ks = evaluation("cam-a").tests[0]
    assert (
        r.get_sample_value("driftmon_stream_test_threshold", {"stream": "cam-a", "test": "ks"})
        == ks.threshold
    )
    assert (
        r.get_sample_value(
            "driftmon_stream_feature_window_mean", {"stream": "cam-a", "feature": "brightness_mean"}
        )
        == 42.0
    )
    assert r.get_sample_value("driftmon_stream_drifted", {"stream": OTHER}) is None
    assert r.get_sample_value("driftmon_stream_evaluations_total", {"stream": OTHER}) == 1


def test_windows_in_a_context_the_reference_lacks_are_counted_per_context():
    r = CollectorRegistry()
    m = Metrics(MetricsConfig(), r)
    rainy = dataclasses.replace(evaluation("cam-a"), unreferenced_contexts=("day/rain",))
    for e in (rainy, rainy, evaluation("cam-a")):
        m.observe_evaluation(e, None)
    labels = {"stream": "cam-a", "context": "day/rain"}
    assert r.get_sample_value("driftmon_stream_unreferenced_context_evaluations_total", labels) == 2
    m.forget_stream("cam-a")
    assert (
        r.get_sample_value("driftmon_stream_unreferenced_context_evaluations_total", labels) is None
    )


def test_per_feature_series_can_be_switched_off():
    r = CollectorRegistry()
    m = Metrics(MetricsConfig(per_feature=False), r)
    m.observe_evaluation(evaluation("cam-a"), {"brightness_mean": 42.0})
    assert (
        r.get_sample_value(
            "driftmon_stream_feature_statistic",
            {"stream": "cam-a", "test": "ks", "feature": "brightness_mean"},
        )
        is None
    )
    assert (
        r.get_sample_value("driftmon_stream_test_statistic", {"stream": "cam-a", "test": "ks"})
        == 0.4
    )


def test_a_stream_handed_to_another_replica_leaves_no_series_behind():
    r = CollectorRegistry()
    m = Metrics(MetricsConfig(max_streams=1), r)
    m.observe_frame("cam-a", ts=1.0, identical=False, window_fill=1.0)
    m.observe_evaluation(evaluation("cam-a"), {"brightness_mean": 42.0})
    assert r.get_sample_value("driftmon_stream_drifted", {"stream": "cam-a"}) == 1
    m.forget_stream("cam-a")
    text = __import__("prometheus_client").generate_latest(r).decode()
    assert 'stream="cam-a"' not in text
    # its place under the cap is free again
    m.observe_frame("cam-b", ts=2.0, identical=False, window_fill=0.1)
    assert r.get_sample_value("driftmon_stream_frames_total", {"stream": "cam-b"}) == 1
