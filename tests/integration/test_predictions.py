"""Model outputs through the real broker: a reference built from a topic of JSON envelopes carrying
image_b64 + predictions, then a live camera whose predicted-class mix changes."""

import base64
import json

import numpy as np

from monitor.reference.collect import from_topic, make_reference
from monitor.reference.store import ReferenceStore
from monitor.sim.fleet import encode

from .conftest import daemon_config, send_frames

JSON = [("content-type", b"application/json")]
MIX = [0.5, 0.3, 0.2]
SHIFTED = [0.1, 0.3, 0.6]


def envelopes(cam, ts, mix, rng):
    for t in ts:
        c = int(rng.choice(3, p=mix))
        probs = rng.dirichlet([1.0, 1.0, 1.0]) * 0.3
        probs[c] += 0.7
        value = json.dumps(
            {
                "camera_id": cam.camera_id,
                "frame_id": f"{cam.camera_id}-{t}",
                "ts": 1_700_000_000_000 + t,
                "image_b64": base64.b64encode(encode(cam.frame(t))).decode(),
                "predictions": {"probs": probs.tolist()},
            }
        ).encode()
        yield cam.camera_id.encode(), value, JSON


def test_predicted_class_mix_change_is_detected(broker, topic, small_fleet, tmp_path, run_daemon):
    cam = small_fleet[0]
    rng = np.random.default_rng(7)
    ref_topic = f"{topic}-ref"
    broker.create_topic(ref_topic, partitions=1)
    send_frames(broker, ref_topic, envelopes(cam, range(200), MIX, rng))
    (tmp_path / "refs").mkdir()
    config = daemon_config(broker, topic, tmp_path / "refs", embedding={"enabled": False})
    got = from_topic(config, ref_topic, None, None, progress=False)
    assert len(got.rows) == 200 and all(p is not None for p in got.predictions)
    store = ReferenceStore(tmp_path / "refs")
    store.add(
        make_reference(got, stream=None, source=f"topic:{ref_topic}", config=config, embedder=None)
    )
    ref = store.load_latest(None)
    assert ref.predictions.labels == ("0", "1", "2") and ref.predictions.probs.shape == (200, 3)

    d = run_daemon(config)
    labels = {"stream": cam.camera_id, "test": "pred_class"}
    send_frames(broker, topic, envelopes(cam, range(200, 300), MIX, rng))
    assert d.wait_for(
        lambda: d.registry.get_sample_value("driftmon_stream_test_statistic", labels) is not None
    )
    assert d.value("driftmon_stream_test_drift", **labels) == 0
    send_frames(broker, topic, envelopes(cam, range(300, 450), SHIFTED, rng))
    assert d.wait_for(lambda: d.value("driftmon_stream_frames_total", stream=cam.camera_id) == 250)
    assert d.wait_for(lambda: d.value("driftmon_stream_test_drift", **labels) == 1)
    assert d.value("driftmon_stream_test_drift", stream=cam.camera_id, test="probs_ks") == 1
    # non-voting by default: the image statistics did not change, so the stream is not declared
    # drifted
    assert d.value("driftmon_stream_drifted", stream=cam.camera_id) == 0
