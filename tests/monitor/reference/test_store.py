import json

import numpy as np
import pytest

from detectors.reduce import PCA
from monitor.reference.store import BadReference, Reference, ReferencePredictions, ReferenceStore

NAMES = ("a", "b")


def ref(stream=None, n=20, seed=0):
    return Reference(
        features=np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32),
        feature_names=NAMES,
        stream=stream,
        source="test",
        time_range=(1.0, 2.0),
    )


def test_round_trip_keeps_everything(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5, 3)).astype(np.float32)
    preds = ReferencePredictions(
        np.array([0, 1, -1, 0, 1], np.int32),
        ("car", "person"),
        np.array([0.9, 0.8, np.nan, 0.7, 0.6], np.float32),
        rng.random((5, 2)).astype(np.float32),
    )
    r = Reference(
        features=np.ones((5, 2), np.float32),
        feature_names=NAMES,
        stream="cam/1",
        source="dir:/x",
        time_range=(10.0, 20.0),
        times=np.array([10.0, 12.5, 15.0, 17.5, 20.0]),
        time_unit="s",
        time_source="event time",
        embeddings=emb,
        embedder={"architecture": "default"},
        predictions=preds,
        pca=PCA().fit(emb, 2),
        contexts=np.array(["day"] * 3 + ["night/ir"] * 2),
        layouts=rng.integers(0, 256, size=(5, 576), dtype=np.uint8),
        extra={"note": [1, 2]},
    )
    r.save(tmp_path / "r.npz")
    back = Reference.load(tmp_path / "r.npz")
    assert back.describe() == r.describe()
    assert back.extra == {"note": [1, 2]} and back.describe()["contexts"] == {
        "day": 3,
        "night/ir": 2,
    }
    np.testing.assert_array_equal(back.times, r.times)
    assert (back.time_unit, back.time_source) == ("s", "event time")
    np.testing.assert_array_equal(back.contexts, r.contexts)
    np.testing.assert_array_equal(back.embeddings, r.embeddings)
    np.testing.assert_array_equal(back.layouts, r.layouts)
    np.testing.assert_allclose(back.pca.transform(emb), r.pca.transform(emb))
    assert back.predictions.labels == ("car", "person")
    np.testing.assert_array_equal(back.predictions.classes, preds.classes)
    np.testing.assert_array_equal(back.predictions.probs, preds.probs)


def test_a_format_1_file_still_loads(tmp_path):
    """References written before the fitted parts had names: "fitted.*" arrays, prediction labels in
    extra, a KS calibration (of the since-replaced tests.run_length) as seven positional numbers."""
    meta = {
        "format_version": 1,
        "stream": "cam-1",
        "version": 3,
        "source": "dir:/x",
        "frames": 4,
        "time_range": [1.0, 4.0],
        "created_at": 5.0,
        "features": list(NAMES),
        "embedder": None,
        "embedding_dim": None,
        "extra": {"pred_labels": ["car"], "promoted": True},
    }
    np.savez(
        tmp_path / "v1.npz",
        features=np.ones((4, 2), np.float32),
        meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
        **{
            "fitted.pred.class": np.zeros(4, np.int32),
            "fitted.pred.confidence": np.ones(4, np.float32),
            "fitted.calibration.ks": np.array([0.3, 1e-4, 4, 50, 10, 1000, 25], np.float64),
            "fitted.calibration.ks.features": np.array(NAMES),
        },
    )
    back = Reference.load(tmp_path / "v1.npz")
    assert (
        back.version == 3
        and back.extra == {"promoted": True}
        and back.predictions.labels == ("car",)
    )
    assert back.times is None and back.contexts is None  # no order: a bag, judged conservatively


def test_store_prefers_the_stream_and_keeps_versions(tmp_path):
    store = ReferenceStore(tmp_path / "store")
    store.add(ref(None, seed=1))
    store.add(ref("cam/7", seed=2))
    store.add(ref("cam/7", seed=3))
    assert store.versions("cam/7") == [1, 2]
    assert store.streams() == ["cam/7"]
    fresh = ReferenceStore(tmp_path / "store")
    assert fresh.for_stream("cam/7").version == 2
    np.testing.assert_array_equal(fresh.for_stream("cam/7").features, ref("cam/7", seed=3).features)
    assert fresh.for_stream("cam/other").stream is None


def test_columns_and_bad_inputs(tmp_path):
    r = ref()
    np.testing.assert_array_equal(r.columns(("b",)), r.features[:, [1]])
    with pytest.raises(BadReference, match="lacks feature"):
        r.columns(("zzz",))
    with pytest.raises(BadReference, match="at least 2"):
        Reference(features=np.ones((1, 2), np.float32), feature_names=NAMES)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(BadReference, match="not a driftmon reference"):
        Reference.load(tmp_path / "junk.npz")
    with pytest.raises(BadReference, match="single shared"):
        ReferenceStore(tmp_path / "shared.npz").add(ref("cam"))
