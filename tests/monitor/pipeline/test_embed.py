"""Tests for monitor/pipeline/embed.py: the embedding stage."""

from __future__ import annotations

import hashlib
import importlib.util
import pathlib
import threading

import cv2
import numpy as np
import pytest
import torch

from monitor.pipeline.embed import (
    DEFAULT_ARCHITECTURE,
    DefaultEncoder,
    EmbedderError,
    EmbedderIdentity,
    EmbedderMismatch,
    MicroBatcher,
    build_embedder,
    check_compatible,
    default_encoder_weights,
    load_state_dict,
    resize_area,
    state_dict_sha256,
)

skimage_data = pytest.importorskip("skimage.data")

# torch 2.13 deprecates TorchScript (still fully supported); the torchscript kind is tested as is.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")

# Recorded once; any machine, OS, numpy or torch version must reproduce it. If this changes, the
# default encoder changed and every stored reference made with it will be refused: bump
# DEFAULT_ARCHITECTURE's version and record the new hash deliberately.
DEFAULT_WEIGHTS_SHA256 = "ba95746cffbd78ba9e921e128336d9fb109efe655f3cc22300b7585c55aa2cdc"


def _torchvision_importable() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # installed but built for another torch
        return False
    return True


HAVE_TORCHVISION = _torchvision_importable()


@pytest.fixture(scope="module")
def embedder():
    emb = build_embedder("default", device="cpu")
    yield emb
    emb.close()


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A decoded 480x270 camera-like frame."""
    return np.ascontiguousarray(
        cv2.resize(skimage_data.astronaut(), (480, 270), interpolation=cv2.INTER_AREA)
    )


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])


# --- default encoder: reproducibility -------------------------------------------------------


def test_default_weights_hash_is_the_recorded_constant(embedder):
    assert embedder.identity.weights_sha256 == DEFAULT_WEIGHTS_SHA256
    # and it is the hash of the tensors the network actually holds
    assert state_dict_sha256(embedder.module.state_dict()) == DEFAULT_WEIGHTS_SHA256


def test_default_weights_do_not_depend_on_torch_rng():
    torch.manual_seed(1)
    a = DefaultEncoder().state_dict()
    torch.manual_seed(2)
    b = DefaultEncoder().state_dict()
    assert state_dict_sha256(a) == state_dict_sha256(b) == DEFAULT_WEIGHTS_SHA256
    weights = default_encoder_weights()
    assert all(np.array_equal(a[f"{name}.weight"].numpy(), w) for name, w in weights.items())


def test_default_weights_follow_documented_recipe():
    weights = default_encoder_weights()
    for name, cin, cout, k, _ in DefaultEncoder.LAYERS:
        w = weights[name]
        assert w.shape == (cout, cin, k, k) and w.dtype == np.float32
        bound = np.sqrt(6.0 / (cin * k * k))
        drawn = w[: cout // 2] if name == "conv1" else w  # conv1's second half is re-centred
        assert np.abs(drawn).max() <= bound and np.abs(drawn).max() > 0.9 * bound
    # the second half of conv1 is spatially zero-sum per channel (high-pass)
    conv1 = weights["conv1"].astype(np.float64)
    assert np.abs(conv1[8:].sum(axis=(2, 3))).max() < 1e-6
    assert np.abs(conv1[:8].sum(axis=(2, 3))).max() > 0.1


def test_default_builds_are_identical(frame):
    a, b = build_embedder("default", device="cpu"), build_embedder("default", device="cpu")
    assert a.identity == b.identity
    assert a.identity.architecture == DEFAULT_ARCHITECTURE
    assert a.identity.output_dim == a.output_dim == DefaultEncoder.OUTPUT_DIM == 128
    assert a.identity.input_size == 128 and a.identity.normalisation == "centred"
    assert np.array_equal(a.embed([frame]), b.embed([frame]))


def test_another_seed_is_another_identity():
    other = build_embedder("default", device="cpu", seed=7)
    assert other.identity.weights_sha256 != DEFAULT_WEIGHTS_SHA256
    assert other.identity.architecture != DEFAULT_ARCHITECTURE


# --- embed(): shapes and inputs ---------------------------------------------------------------


def test_embed_shapes_and_dtype(embedder, frame):
    batch = [
        frame,
        frame[:100, :333],
        np.zeros((7, 5, 3), np.uint8),
        np.full((128, 128, 3), 200, np.uint8),
    ]
    out = embedder.embed(batch)
    assert out.shape == (4, 128) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert embedder.embed([]).shape == (0, 128)
    assert embedder.device == "cpu"


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        [[1, 2, 3]],
    ],
    ids=["gray", "rgba", "float", "list"],
)
def test_embed_rejects_non_rgb_uint8(embedder, frame, bad):
    with pytest.raises(ValueError, match="image 1"):
        embedder.embed([frame, bad])


def test_embed_many_splits_into_chunks(embedder, frame):
    images = [np.ascontiguousarray(np.roll(frame, 17 * i, axis=1)) for i in range(11)]
    whole = embedder.embed(images)
    chunked = embedder.embed_many(images, max_batch=4)
    assert chunked.shape == whole.shape
    np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        embedder.embed_many(images, max_batch=0)


def test_batch_composition_does_not_change_an_embedding(embedder, frame):
    alone = embedder.embed([frame])[0]
    among = embedder.embed([skimage_data.coffee(), frame, skimage_data.chelsea()])[1]
    np.testing.assert_allclose(among, alone, rtol=1e-4, atol=1e-5)


def test_resize_area_matches_cv2_inter_area():
    for size in [(480, 270), (481, 271), (1280, 720), (200, 150), (64, 48), (2000, 200)]:
        image = np.ascontiguousarray(
            cv2.resize(skimage_data.coffee(), size, interpolation=cv2.INTER_AREA)
        )
        ours = resize_area(image, 128)
        assert ours.shape == (128, 128, 3) and ours.dtype == np.uint8
        area = cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)
        assert np.abs(ours.astype(float) - area).mean() < 6, size


# --- default encoder: informative -------------------------------------------------------------


def test_different_images_give_different_embeddings(embedder):
    photos = [
        skimage_data.astronaut(),
        skimage_data.coffee(),
        skimage_data.chelsea(),
        skimage_data.rocket(),
    ]
    out = embedder.embed(photos)
    nuisance = np.linalg.norm(embedder.embed([_jpeg(photos[0], 95)])[0] - out[0])
    for i in range(len(photos)):
        for j in range(i + 1, len(photos)):
            assert np.linalg.norm(out[i] - out[j]) > 20 * nuisance, (i, j)


def _knock(image: np.ndarray) -> np.ndarray:
    """The camera was knocked: turned 8 degrees and shifted."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 8, 1.0)
    m[:, 2] += (40, 25)
    return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)


CORRUPTIONS = {
    "blur": lambda im: cv2.GaussianBlur(im, (0, 0), 1.5),
    "noise": lambda im: np.clip(
        im + np.random.default_rng(0).normal(0, 20, im.shape), 0, 255
    ).astype(np.uint8),
    "darken": lambda im: (im * 0.6).astype(np.uint8),
    "colour_cast": lambda im: np.clip(im * np.array([1.0, 0.9, 1.15]), 0, 255).astype(np.uint8),
    "knocked": _knock,
    "mirrored": lambda im: np.ascontiguousarray(im[:, ::-1]),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_move_the_embedding(embedder, frame, name):
    """Each shift moves the embedding well beyond what a near-lossless re-encode does."""
    base, reencoded, corrupted = embedder.embed([frame, _jpeg(frame, 95), CORRUPTIONS[name](frame)])
    nuisance = np.linalg.norm(reencoded - base)
    moved = np.linalg.norm(corrupted - base)
    assert nuisance > 0
    assert moved > 3 * nuisance, (
        f"{name}: moved {moved:.4g}, JPEG q95 re-encode moves {nuisance:.4g}"
    )


def test_layout_part_sees_where_things_are(embedder, frame):
    """A mirrored view keeps every global statistic but moves the 2x2 layout block."""
    base, mirrored = embedder.embed([frame, np.ascontiguousarray(frame[:, ::-1])])
    layout = slice(112, 128)
    rel = lambda s: np.linalg.norm(mirrored[s] - base[s]) / np.linalg.norm(base[s])  # noqa: E731
    assert rel(layout) > 5 * rel(slice(0, 112))


# --- identity ---------------------------------------------------------------------------------


def test_identity_dict_round_trip(embedder):
    ident = embedder.identity
    data = ident.to_dict()
    assert data == {
        "architecture": DEFAULT_ARCHITECTURE,
        "weights_sha256": DEFAULT_WEIGHTS_SHA256,
        "input_size": 128,
        "normalisation": "centred",
        "output_dim": 128,
    }
    assert EmbedderIdentity.from_dict(data) == ident
    assert ident.label == f"{DEFAULT_ARCHITECTURE}@{DEFAULT_WEIGHTS_SHA256[:12]}"
    with pytest.raises(EmbedderError, match="missing"):
        EmbedderIdentity.from_dict({k: v for k, v in data.items() if k != "output_dim"})
    with pytest.raises(EmbedderError, match="unknown"):
        EmbedderIdentity.from_dict({**data, "colour": "blue"})
    with pytest.raises(EmbedderError, match="input_size"):
        EmbedderIdentity.from_dict({**data, "input_size": "128"})


@pytest.mark.parametrize(
    "field, value",
    [
        ("architecture", "torchvision:resnet18"),
        ("weights_sha256", "0" * 64),
        ("input_size", 224),
        ("normalisation", "imagenet"),
        ("output_dim", 512),
    ],
)
def test_mismatch_names_the_field(embedder, field, value):
    ref = embedder.identity
    live = EmbedderIdentity.from_dict({**ref.to_dict(), field: value})
    check_compatible(ref, ref)  # equal: fine
    with pytest.raises(EmbedderMismatch, match=field) as err:
        check_compatible(ref, live)
    assert repr(value) in str(err.value) and repr(getattr(ref, field)) in str(err.value)
    assert isinstance(err.value, EmbedderError)
    others = {"architecture", "weights_sha256", "input_size", "normalisation", "output_dim"} - {
        field
    }
    assert not any(f"{other} (" in str(err.value) for other in others)


def test_other_input_size_is_another_identity(embedder):
    small = build_embedder("default", device="cpu", input_size=96)
    assert small.embed([np.zeros((50, 60, 3), np.uint8)]).shape == (1, 128)
    with pytest.raises(EmbedderMismatch, match="input_size"):
        check_compatible(embedder.identity, small.identity)


# --- torchscript ------------------------------------------------------------------------------


def test_torchscript_round_trip(tmp_path, embedder, frame):
    path = tmp_path / "encoder.pt"
    torch.jit.script(DefaultEncoder()).save(str(path))
    ts = build_embedder(
        "torchscript", path=path, input_size=128, normalisation="centred", device="cpu"
    )
    ident = ts.identity
    assert ident.architecture == "torchscript"
    assert ident.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ident.output_dim == 128
    images = [frame, skimage_data.coffee()]
    np.testing.assert_allclose(ts.embed(images), embedder.embed(images), rtol=1e-5, atol=1e-6)
    # same numbers, but a different embedder as far as references are concerned
    with pytest.raises(EmbedderMismatch, match="architecture"):
        check_compatible(embedder.identity, ident)


def test_torchscript_defaults_to_imagenet_224(tmp_path):
    path = tmp_path / "tiny.pt"

    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean([2, 3])

    torch.jit.script(Tiny()).save(str(path))
    ts = build_embedder("torchscript", path=path, device="cpu")
    assert (ts.identity.input_size, ts.identity.normalisation, ts.output_dim) == (
        224,
        "imagenet",
        3,
    )
    grey = np.full((30, 40, 3), 128, np.uint8)
    expected = (128 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(ts.embed([grey])[0], expected, rtol=1e-5)


def test_torchscript_missing_or_bad_file(tmp_path):
    with pytest.raises(EmbedderError, match="not found"):
        build_embedder("torchscript", path=tmp_path / "nope.pt", device="cpu")
    with pytest.raises(EmbedderError, match="needs path"):
        build_embedder("torchscript", device="cpu")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(EmbedderError, match="TorchScript"):
        build_embedder("torchscript", path=junk, device="cpu")


def test_torchscript_with_unusable_output_is_refused(tmp_path):
    class Pair(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    path = tmp_path / "pair.pt"
    torch.jit.script(Pair()).save(str(path))
    with pytest.raises(EmbedderError, match="must return"):
        build_embedder("torchscript", path=path, device="cpu")


# --- torchvision and weights files ------------------------------------------------------------


class _Evil:
    """Unpickling this would create a file: the kind of payload weights_only must refuse."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_weights_file_with_arbitrary_object_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "payload": _Evil(marker)}, path)
    with pytest.raises(EmbedderError, match="weights_only"):
        load_state_dict(path)
    with pytest.raises(EmbedderError, match="weights_only"):
        build_embedder("torchvision", arch="resnet18", path=path, device="cpu")
    assert not marker.exists()


def test_weights_file_must_hold_tensors(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(EmbedderError, match="state dict"):
        load_state_dict(path)
    ok = tmp_path / "ok.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}}, ok)
    assert list(load_state_dict(ok)) == ["w"]


def test_torchvision_missing_weights_file(tmp_path):
    with pytest.raises(EmbedderError, match="not found"):
        build_embedder("torchvision", arch="resnet18", path=tmp_path / "resnet18.pth", device="cpu")
    with pytest.raises(EmbedderError, match="needs path"):
        build_embedder("torchvision", arch="resnet18", device="cpu")
    with pytest.raises(EmbedderError, match="needs arch"):
        build_embedder("torchvision", path=tmp_path / "resnet18.pth", device="cpu")


@pytest.mark.skipif(HAVE_TORCHVISION, reason="torchvision is importable here")
def test_torchvision_not_importable_is_a_clear_error(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(EmbedderError, match="needs torchvision"):
        build_embedder("torchvision", arch="resnet18", path=path, device="cpu")


@pytest.mark.skipif(
    not HAVE_TORCHVISION,
    reason="torchvision is not importable beside this torch build (none on PyPI fits 2.13 CPU)",
)
def test_torchvision_round_trip(tmp_path, frame):
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    emb = build_embedder("torchvision", arch="resnet18", path=path, device="cpu")
    assert emb.identity.architecture == "torchvision:resnet18"
    assert emb.identity.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (emb.identity.input_size, emb.identity.normalisation, emb.output_dim) == (
        224,
        "imagenet",
        512,
    )
    out = emb.embed([frame, skimage_data.coffee()])
    assert out.shape == (2, 512) and np.isfinite(out).all()
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(EmbedderError, match="do not fit"):
        build_embedder("torchvision", arch="resnet18", path=wrong, device="cpu")
    with pytest.raises(EmbedderError, match="unknown torchvision architecture"):
        build_embedder("torchvision", arch="no_such_net", path=path, device="cpu")


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "onnx"},
        {"kind": "default", "input_size": 8},
        {"kind": "default", "normalisation": "zscore"},
        {"kind": "default", "threads": 0},
        {"kind": "default", "fp16": "yes"},
        {"kind": "default", "device": "tpu9"},
    ],
)
def test_bad_options_are_rejected(kwargs):
    with pytest.raises(ValueError):
        build_embedder(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_cuda_options_without_cuda():
    assert build_embedder("default").device == "cpu"  # auto
    with pytest.raises(ValueError, match="fp16"):
        build_embedder("default", fp16=True)
    with pytest.raises(EmbedderError, match="CUDA"):
        build_embedder("default", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_fp16_close_to_cpu(frame):
    gpu = build_embedder("default")
    assert gpu.device.startswith("cuda")
    cpu = build_embedder("default", device="cpu")
    images = [frame, skimage_data.coffee()]
    np.testing.assert_allclose(gpu.embed(images), cpu.embed(images), rtol=2e-2, atol=2e-2)


def test_threads_option_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        build_embedder("default", device="cpu", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# --- MicroBatcher ------------------------------------------------------------------------------


def test_micro_batcher_matches_direct_embedding(embedder, frame):
    images = [np.ascontiguousarray(np.roll(frame, 23 * i, axis=0)) for i in range(24)]
    expected = embedder.embed(images)
    futures = [None] * len(images)

    def submit(indices):
        for i in indices:
            futures[i] = batcher.submit(images[i])

    with MicroBatcher(embedder, max_batch=5, max_wait_s=0.005) as batcher:
        threads = [
            threading.Thread(target=submit, args=(range(k, len(images), 3),)) for k in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = np.stack([f.result(timeout=60) for f in futures])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(frame)


def test_micro_batcher_flushes_a_lone_image_after_the_wait(embedder, frame):
    with MicroBatcher(embedder, max_batch=64, max_wait_s=0.01) as batcher:
        vector = batcher.submit(frame).result(timeout=60)  # does not wait for 63 more
    np.testing.assert_allclose(vector, embedder.embed([frame])[0], rtol=1e-4, atol=1e-5)


def test_micro_batcher_hands_errors_to_callers(embedder, frame):
    with MicroBatcher(embedder, max_batch=1, max_wait_s=0.0) as batcher:
        bad = batcher.submit(np.zeros((4, 4), np.uint8))
        good = batcher.submit(frame)
        with pytest.raises(ValueError, match="RGB uint8"):
            bad.result(timeout=60)
        assert good.result(timeout=60).shape == (128,)


def test_micro_batcher_close_embeds_what_is_queued(embedder, frame):
    batcher = MicroBatcher(embedder, max_batch=64, max_wait_s=3600)
    futures = [batcher.submit(frame) for _ in range(3)]
    batcher.close()
    assert all(f.done() and f.result().shape == (128,) for f in futures)
