import numpy as np
import pytest

from monitor.reference.store import Reference, ReferenceError, ReferenceStore

NAMES = ("a", "b")


def ref(stream=None, n=20, seed=0):
    return Reference(features=np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32),
                     feature_names=NAMES, stream=stream, source="test", time_range=(1.0, 2.0))


def test_round_trip_keeps_everything(tmp_path):
    r = Reference(features=np.ones((5, 2), np.float32), feature_names=NAMES, stream="cam/1", source="dir:/x",
                  time_range=(10.0, 20.0), embeddings=np.zeros((5, 3), np.float32),
                  embedder={"architecture": "default"}, extra={"note": [1, 2]},
                  fitted={"pca.mean": np.arange(3.0)})
    r.save(tmp_path / "r.npz")
    back = Reference.load(tmp_path / "r.npz")
    assert back.describe() == r.describe()
    assert back.extra == {"note": [1, 2]}
    np.testing.assert_array_equal(back.fitted["pca.mean"], np.arange(3.0))
    np.testing.assert_array_equal(back.embeddings, r.embeddings)


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
    with pytest.raises(ReferenceError, match="lacks feature"):
        r.columns(("zzz",))
    with pytest.raises(ReferenceError, match="at least 2"):
        Reference(features=np.ones((1, 2), np.float32), feature_names=NAMES)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ReferenceError, match="not a driftmon reference"):
        Reference.load(tmp_path / "junk.npz")
    with pytest.raises(ReferenceError, match="single shared"):
        ReferenceStore(tmp_path / "shared.npz").add(ref("cam"))
