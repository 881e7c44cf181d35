"""Embedding stage: decoded RGB frames -> one float32 vector per frame, batched through torch.

An :class:`Embedder` turns a list of RGB ``uint8`` images (any sizes) into an ``(n, output_dim)``
float32 matrix. Every embedder carries an :class:`EmbedderIdentity` (architecture, weights hash,
input size, normalisation, output dimension) that is stored with each reference; embeddings from
a different embedder are refused by :func:`check_compatible`, never compared.

Kinds (see :func:`build_embedder`):

``"default"``
    :class:`DefaultEncoder`, a small seed-initialised (untrained) convolutional encoder that needs
    no downloaded weights. Its weights are generated from numpy's PCG64 bit stream by code in this
    module, so they are bit-for-bit identical on every machine; ``weights_sha256`` hashes the
    actual tensor bytes.
``"torchscript"``
    a TorchScript archive (``torch.jit.load``); identity from the file's sha256.
``"torchvision"``
    a torchvision architecture name plus a local state-dict file, loaded with
    ``torch.load(..., weights_only=True)``; the classifier head is replaced by identity, so the
    embedding is the penultimate (pooled) feature vector. torchvision is imported lazily and only
    for this kind; nothing is downloaded at run time.

Preprocessing is the same for all kinds: resize to ``input_size`` x ``input_size`` with
``cv2.INTER_AREA`` (aspect ratio not kept), scale to [0, 1], subtract a per-channel mean and
divide by a per-channel std (:data:`NORMALISATIONS`), NCHW. Resizing is done with cv2 into one
preallocated uint8 batch; the scaling runs in torch on the target device.

References
----------
Rabanser, Günnemann & Lipton, "Failing Loudly: An Empirical Study of Methods for Detecting
Dataset Shift", NeurIPS 2019 -- untrained (randomly initialised) encoders are an effective
dimension-reduction step before two-sample tests on images.
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from monitor.errors import InputError
from monitor.files import JSONObject

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_SEED",
    "NORMALISATIONS",
    "DefaultEncoder",
    "Embedder",
    "EmbedderError",
    "EmbedderIdentity",
    "EmbedderMismatch",
    "MicroBatcher",
    "TorchEmbedder",
    "build_embedder",
    "check_compatible",
    "default_encoder_weights",
    "load_state_dict",
    "resize_area",
    "state_dict_sha256",
]

log = logging.getLogger(__name__)

#: Architecture name of the default encoder; bump the version if the layers or the weight
#: generator change (the weights hash changes too, so old references are refused either way).
DEFAULT_ARCHITECTURE = "driftmon-randconv-v1"
#: Seed of the default encoder's weights.
DEFAULT_SEED = 20190523
#: Default input side (pixels) per kind.
DEFAULT_INPUT_SIZE = {"default": 128, "torchscript": 224, "torchvision": 224}
#: Named normalisations: per-channel (mean, std) applied to RGB scaled to [0, 1].
NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # torchvision's ImageNet statistics.
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # The default encoder's: maps [0, 1] to [-2, 2], centred on mid-grey.
    "centred": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    # [0, 1] unchanged.
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
_DEFAULT_NORMALISATION = {
    "default": "centred",
    "torchscript": "imagenet",
    "torchvision": "imagenet",
}
_KINDS = tuple(DEFAULT_INPUT_SIZE)


class EmbedderError(InputError):
    """An embedder cannot be built or used as configured (missing file, bad weights, ...)."""


class EmbedderMismatch(EmbedderError):
    """Reference and live embeddings come from different embedders; they must not be compared."""


# --------------------------------------------------------------------------------------------
# Identity


@dataclass(frozen=True)
class EmbedderIdentity:
    """What makes two embeddings comparable. Two identities are compatible iff they are equal.

    Parameters
    ----------
    architecture
        ``"driftmon-randconv-v1"``, ``"torchscript"`` or ``"torchvision:<name>"``.
    weights_sha256
        Hex sha256 of the weights: of the tensor bytes for the default encoder (see
        :func:`state_dict_sha256`), of the file for ``torchscript`` and ``torchvision``.
    input_size
        Side of the square network input, pixels.
    normalisation
        A key of :data:`NORMALISATIONS`.
    output_dim
        Length of each embedding.

    Examples
    --------
    >>> a = EmbedderIdentity("torchscript", "ab" * 32, 224, "imagenet", 512)
    >>> EmbedderIdentity.from_dict(a.to_dict()) == a
    True
    >>> a.label
    'torchscript@abababababab'
    """

    architecture: str
    weights_sha256: str
    input_size: int
    normalisation: str
    output_dim: int

    def __post_init__(self) -> None:
        for name, kind in (("architecture", str), ("weights_sha256", str), ("normalisation", str)):
            if not isinstance(getattr(self, name), kind) or not getattr(self, name):
                raise EmbedderError(f"EmbedderIdentity.{name} must be a non-empty string")
        for name in ("input_size", "output_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EmbedderError(
                    f"EmbedderIdentity.{name} must be a positive int, got {value!r}"
                )

    @property
    def label(self) -> str:
        """Short, bounded label for metrics and logs: ``architecture@<first 12 hex of hash>``."""
        return f"{self.architecture}@{self.weights_sha256[:12]}"

    def to_dict(self) -> JSONObject:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: JSONObject) -> EmbedderIdentity:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(data))
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise EmbedderError(f"bad embedder identity: missing {missing}, unknown {unknown}")
        return cls(**{name: data[name] for name in names})


def check_compatible(reference: EmbedderIdentity, live: EmbedderIdentity) -> None:
    """Raise :class:`EmbedderMismatch` unless ``reference == live``; the message names each field
    that differs with both values."""
    if reference == live:
        return
    diffs = [
        f"{f.name} (reference {getattr(reference, f.name)!r}, live {getattr(live, f.name)!r})"
        for f in dataclasses.fields(EmbedderIdentity)
        if getattr(reference, f.name) != getattr(live, f.name)
    ]
    raise EmbedderMismatch(
        "reference embeddings were made by a different embedder than the live one; differs in "
        + ", ".join(diffs)
        + ". Rebuild the reference with the live embedder, or configure the reference's embedder."
    )


# --------------------------------------------------------------------------------------------
# Default encoder


class DefaultEncoder(torch.nn.Module):
    """Seed-initialised convolutional encoder: 128 dims, no trained weights needed.

    Input ``(n, 3, S, S)`` float, normalised with ``"centred"`` (``(rgb/255 - 0.5) / 0.25``);
    S = 128 by default (any S >= 16 works). Layers (no biases, ReLU after each conv, padding
    ``k // 2``)::

        conv1  3 -> 16, 5x5, stride 2   -> 64x64     a1
        conv2 16 -> 32, 3x3, stride 2   -> 32x32     a2
        conv3 32 -> 64, 3x3, stride 2   -> 16x16     a3
        conv4 64 -> 64, 3x3, stride 2   ->  8x8      a4
        layout 64 -> 4, 1x1 (linear, on a4)

    Output (128 = 16 + 32 + 64 + 16), concatenated:

    * global means of a1 (16) and a2 (32): colour, brightness, fine texture, sharpness, noise.
      conv1's first 8 filters are plain random (they respond to colour and brightness), its
      last 8 are made spatially zero-sum per channel (edge/texture detectors blind to flat
      colour, whose mean response falls with blur and rises with noise);
    * global mean of a4 (64): coarser structure (33-pixel receptive field at S = 128);
    * ``layout`` averaged over a 2x2 grid (4 channels x 4 cells = 16): where things are, so a
      knocked or re-aimed camera moves the embedding even if global statistics do not change.

    Weights: He-uniform, ``U(-sqrt(6 / fan_in), +sqrt(6 / fan_in))`` (conv1's second half then
    re-centred), drawn by
    :func:`default_encoder_weights` from numpy's PCG64 raw 64-bit stream (documented stable
    across numpy versions and platforms) in float64 and rounded to float32, so they are
    bit-for-bit reproducible. ~17 M multiply-adds per 128x128 image.
    """

    #: (name, in_channels, out_channels, kernel, stride)
    LAYERS: tuple[tuple[str, int, int, int, int], ...] = (
        ("conv1", 3, 16, 5, 2),
        ("conv2", 16, 32, 3, 2),
        ("conv3", 32, 64, 3, 2),
        ("conv4", 64, 64, 3, 2),
        ("layout", 64, 4, 1, 1),
    )
    OUTPUT_DIM = 16 + 32 + 64 + 4 * 2 * 2
    if TYPE_CHECKING:  # the layers, set from LAYERS in __init__ (TorchScript reads annotations)
        conv1: torch.nn.Conv2d
        conv2: torch.nn.Conv2d
        conv3: torch.nn.Conv2d
        conv4: torch.nn.Conv2d
        layout: torch.nn.Conv2d

    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        super().__init__()
        for name, cin, cout, k, stride in self.LAYERS:
            setattr(
                self, name, torch.nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
            )
        weights = default_encoder_weights(seed)
        with torch.no_grad():
            for name, array in weights.items():
                getattr(self, name).weight.copy_(torch.from_numpy(array))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1 = F.relu(self.conv1(x))
        a2 = F.relu(self.conv2(a1))
        a3 = F.relu(self.conv3(a2))
        a4 = F.relu(self.conv4(a3))
        layout = F.adaptive_avg_pool2d(self.layout(a4), 2)
        return torch.cat([a1.mean([2, 3]), a2.mean([2, 3]), a4.mean([2, 3]), layout.flatten(1)], 1)


def default_encoder_weights(seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """The default encoder's weights, keyed by layer name, as float32 ``(out, in, k, k)`` arrays.

    Only the PCG64 bit generator's raw output is used (not ``Generator`` distribution methods,
    whose algorithms numpy may change): each 64-bit word ``w`` becomes the float64
    ``u = (w >> 11) * 2**-53`` in [0, 1), then ``(2u - 1) * sqrt(6 / fan_in)``, rounded to
    float32. Every step is exact or correctly rounded IEEE arithmetic. Layers are drawn in
    :attr:`DefaultEncoder.LAYERS` order from one stream.
    """
    bits = np.random.PCG64(seed)
    weights = {}
    for name, cin, cout, k, _ in DefaultEncoder.LAYERS:
        shape = (cout, cin, k, k)
        raw = bits.random_raw(math.prod(shape))
        unit = (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53
        bound = math.sqrt(6.0 / (cin * k * k))
        w = ((2.0 * unit - 1.0) * bound).reshape(shape)
        if name == "conv1":
            # Second half of conv1: spatially zero-sum per (filter, channel), i.e. pure
            # high-pass edge/texture detectors, blind to flat colour. math.fsum is exactly
            # rounded, so this stays reproducible.
            for o in range(cout // 2, cout):
                for c in range(cin):
                    w[o, c] -= math.fsum(w[o, c].ravel().tolist()) / (k * k)
        weights[name] = w.astype(np.float32)
    return weights


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's tensors in name order: name, dtype, shape, then the tensor's
    bytes (C order, little-endian on the platforms we run on)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict with ``torch.load(path, weights_only=True)``: tensors and plain
    containers only, so a pickle that would build arbitrary objects (or run code) is refused.
    Raises :class:`EmbedderError` naming the problem."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise EmbedderError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (not a torch file), EOFError...
        raise EmbedderError(
            f"cannot load weights from {path} with torch.load(weights_only=True) "
            f"(only tensors and plain containers are accepted): {exc}"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # common checkpoint layout
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EmbedderError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return state


def resize_area(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an RGB uint8 image to ``size`` x ``size`` (aspect ratio not kept), area-averaged.

    Equivalent in intent to one ``cv2.resize(..., INTER_AREA)``, which this cv2 build runs
    ~0.8 ms for 480x270 -> 128x128 (its non-integer-ratio path), as slow as the whole network.
    Instead: exact 2x2 ``INTER_AREA`` reductions (cv2's vectorised integer path; an odd last
    row/column is dropped) while both sides are at least twice ``size``, then ``INTER_LINEAR``
    for the remaining factor (< 2 per side, so little aliasing; also used for upscaling).
    ~0.12 ms for 480x270 -> 128x128. If one side alone is still at least twice ``size`` (very
    elongated images), one plain ``INTER_AREA`` resize finishes the job.
    """
    h, w = image.shape[:2]
    while h >= 2 * size and w >= 2 * size:
        h, w = h - h % 2, w - w % 2
        image = cv2.resize(image[:h, :w], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = h // 2, w // 2
    if h == size and w == size:
        return image
    slow = h >= 2 * size or w >= 2 * size
    return cv2.resize(
        image, (size, size), interpolation=cv2.INTER_AREA if slow else cv2.INTER_LINEAR
    )


# --------------------------------------------------------------------------------------------
# Embedders


class Embedder(abc.ABC):
    """Images in, embeddings out. Subclasses implement :meth:`embed` and the properties."""

    @property
    @abc.abstractmethod
    def identity(self) -> EmbedderIdentity: ...

    @property
    def output_dim(self) -> int:
        return self.identity.output_dim

    @property
    @abc.abstractmethod
    def device(self) -> str: ...

    @abc.abstractmethod
    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """Embed RGB ``uint8`` ``(H, W, 3)`` images of any sizes in one forward pass; returns
        float32 ``(len(batch), output_dim)``."""

    def close(self) -> None:  # noqa: B027 - an optional hook: nothing to release by default
        """Release worker threads, if any. The embedder must not be used afterwards."""

    def embed_many(self, images: Sequence[np.ndarray], max_batch: int = 64) -> np.ndarray:
        """Embed any number of images in chunks of at most ``max_batch`` (bounds memory)."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if len(images) <= max_batch:
            return self.embed(images)
        return np.concatenate(
            [self.embed(images[i : i + max_batch]) for i in range(0, len(images), max_batch)]
        )


class TorchEmbedder(Embedder):
    """A torch module behind the shared preprocessing. Built by :func:`build_embedder`.

    The module takes ``(n, 3, S, S)`` normalised float input and returns ``(n, ...)``, which is
    flattened to ``(n, output_dim)``. Calls are serialised by a lock, so one embedder may be
    shared by threads.

    Preprocessing (:meth:`preprocess`) runs per image on a small thread pool (cv2 releases the
    GIL): :func:`resize_area` to ``S x S``, then on CPU a ``cv2.LUT`` from uint8 straight to the
    normalised float32 value (one pass, exact to float32 rounding) into one NHWC batch handed to
    torch as a channels-last NCHW view without a copy; on CUDA the uint8 batch is moved instead
    (4x fewer bytes) and normalised there.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        identity: EmbedderIdentity,
        *,
        device: str = "cpu",
        fp16: bool = False,
        preprocess_threads: int | None = None,
    ) -> None:
        self._identity = identity
        self._device = torch.device(device)
        self._dtype = torch.float16 if fp16 else torch.float32
        self._module = module.to(self._device, self._dtype).eval()
        mean, std = NORMALISATIONS[identity.normalisation]
        levels = np.arange(256, dtype=np.float64)[:, None] / 255.0
        lut = (levels - np.asarray(mean)) / np.asarray(std)  # (256, 3), float64
        self._lut = lut.astype(np.float32).reshape(1, 256, 3)
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=self._device).view(
            1, 3, 1, 1
        )
        self._offset = torch.tensor(
            [m / s for m, s in zip(mean, std, strict=True)], device=self._device
        ).view(1, 3, 1, 1)
        self._lock = threading.Lock()
        workers = preprocess_threads if preprocess_threads is not None else torch.get_num_threads()
        self._workers = max(1, workers)
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(
                self._workers, thread_name_prefix="driftmon-embed-prep"
            )
            if self._workers > 1
            else None
        )

    @property
    def identity(self) -> EmbedderIdentity:
        return self._identity

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def module(self) -> torch.nn.Module:
        """The network (on :attr:`device`), e.g. for benchmarks of the bare forward pass."""
        return self._module

    def preprocess(self, batch: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 ``(H, W, 3)`` images of any sizes -> the network input: normalised
        ``(n, 3, S, S)`` on :attr:`device` in the module's dtype (channels-last memory)."""
        for i, image in enumerate(batch):
            if (
                not isinstance(image, np.ndarray)
                or image.dtype != np.uint8
                or image.ndim != 3
                or image.shape[2] != 3
            ):
                desc = (
                    f"{image.dtype} {image.shape}"
                    if isinstance(image, np.ndarray)
                    else type(image).__name__
                )
                raise ValueError(f"image {i}: expected an RGB uint8 (H, W, 3) array, got {desc}")
        size = self._identity.input_size
        on_cpu = self._device.type == "cpu"
        out = np.empty((len(batch), size, size, 3), dtype=np.float32 if on_cpu else np.uint8)

        def one(i: int) -> None:
            resized = resize_area(batch[i], size)
            if on_cpu:
                cv2.LUT(resized, self._lut, dst=out[i])
            else:
                out[i] = resized

        if self._pool is None or len(batch) < 2 * self._workers:
            for i in range(len(batch)):
                one(i)
        else:
            for _ in self._pool.map(one, range(len(batch))):
                pass
        x = torch.from_numpy(out).permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels-last
        if on_cpu:
            return x
        x = x.to(self._device, non_blocking=True).float().mul_(self._scale).sub_(self._offset)
        return x.to(self._dtype)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, self.output_dim), dtype=np.float32)
        x = self.preprocess(batch)
        with self._lock, torch.inference_mode():
            out = self._module(x)
        return out.reshape(len(batch), -1).float().cpu().numpy()


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"bad device {device!r}: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EmbedderError(f"device {device!r} requested but CUDA is not available")
    return str(resolved)


def _output_dim(module: torch.nn.Module, input_size: int, device: str, what: str) -> int:
    probe = torch.zeros(1, 3, input_size, input_size, device=device)
    try:
        with torch.inference_mode():
            out = module.to(device).eval()(probe)
    except Exception as exc:
        raise EmbedderError(
            f"{what} failed on a (1, 3, {input_size}, {input_size}) input: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor) or out.ndim < 2 or out.shape[0] != 1:
        desc = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise EmbedderError(f"{what} must return a (n, ...) tensor, returned {desc}")
    return int(out[0].numel())


def _strip_head(model: torch.nn.Module, arch: str) -> torch.nn.Module:
    for head in ("fc", "classifier", "heads", "head"):
        if isinstance(getattr(model, head, None), torch.nn.Module):
            setattr(model, head, torch.nn.Identity())
            return model
    raise EmbedderError(f"torchvision model {arch!r} has no fc/classifier/heads/head to remove")


def build_embedder(
    kind: str,
    *,
    path: str | os.PathLike | None = None,
    arch: str | None = None,
    input_size: int | None = None,
    normalisation: str | None = None,
    threads: int | None = None,
    device: str = "auto",
    fp16: bool | str = "auto",
    seed: int = DEFAULT_SEED,
) -> TorchEmbedder:
    """Build an embedder at start-up; problems raise :class:`EmbedderError` naming them.

    Parameters
    ----------
    kind
        ``"default"``, ``"torchscript"`` (needs ``path``) or ``"torchvision"`` (needs ``arch``,
        e.g. ``"resnet18"``, and ``path`` to a local state-dict file).
    input_size
        Side of the square network input; default 128 for ``"default"``, 224 otherwise.
    normalisation
        Key of :data:`NORMALISATIONS`; default ``"centred"`` for ``"default"``, ``"imagenet"``
        otherwise.
    threads
        If set, ``torch.set_num_threads(threads)`` (process-wide) and the size of the
        preprocessing pool; if not, both follow torch's current thread count.
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    fp16
        ``"auto"``: half precision on CUDA only; ``True`` requires CUDA; ``False``: float32.
    seed
        Default encoder only. A non-default seed gives a different (and refused-as-different)
        identity; leave it alone unless you know why.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown embedder kind {kind!r}; expected one of {_KINDS}")
    input_size = DEFAULT_INPUT_SIZE[kind] if input_size is None else input_size
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 16:
        raise ValueError(f"input_size must be an int >= 16, got {input_size!r}")
    normalisation = _DEFAULT_NORMALISATION[kind] if normalisation is None else normalisation
    if normalisation not in NORMALISATIONS:
        raise ValueError(
            f"unknown normalisation {normalisation!r}; expected one of {tuple(NORMALISATIONS)}"
        )
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
    resolved = _resolve_device(device)
    on_cuda = resolved.startswith("cuda")
    if fp16 == "auto":
        fp16 = on_cuda
    elif not isinstance(fp16, bool):
        raise ValueError(f"fp16 must be True, False or 'auto', got {fp16!r}")
    elif fp16 and not on_cuda:
        raise ValueError("fp16=True needs a CUDA device")
    if threads is not None:
        torch.set_num_threads(threads)

    if kind == "default":
        module: torch.nn.Module = DefaultEncoder(seed)
        architecture = (
            DEFAULT_ARCHITECTURE if seed == DEFAULT_SEED else f"{DEFAULT_ARCHITECTURE}-seed{seed}"
        )
        weights_sha256 = state_dict_sha256(module.state_dict())
    elif kind == "torchscript":
        if path is None:
            raise EmbedderError("kind='torchscript' needs path= to a TorchScript file")
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise EmbedderError(f"TorchScript file not found: {path}")
        try:
            module = torch.jit.load(path, map_location=resolved)
        except Exception as exc:
            raise EmbedderError(f"{path} is not a loadable TorchScript archive: {exc}") from exc
        architecture = "torchscript"
        weights_sha256 = _file_sha256(path)
    else:  # torchvision
        if not arch:
            raise EmbedderError("kind='torchvision' needs arch= (e.g. 'resnet18')")
        if path is None:
            raise EmbedderError(
                "kind='torchvision' needs path= to a local weights file (nothing is downloaded)"
            )
        state = load_state_dict(path)  # file problems first: they are the likelier mistake
        try:
            import torchvision
        except Exception as exc:  # ImportError, or a torchvision built for another torch
            raise EmbedderError(
                f"kind='torchvision' needs torchvision, which cannot be imported: {exc}"
            ) from exc
        try:
            model = torchvision.models.get_model(arch, weights=None)
        except Exception as exc:
            raise EmbedderError(f"unknown torchvision architecture {arch!r}: {exc}") from exc
        try:
            model.load_state_dict(state)
        except Exception as exc:
            raise EmbedderError(
                f"weights in {path} do not fit torchvision {arch!r}: {exc}"
            ) from exc
        module = _strip_head(model, arch)
        module.requires_grad_(False)
        architecture = f"torchvision:{arch}"
        weights_sha256 = _file_sha256(path)

    output_dim = _output_dim(module, input_size, resolved, f"{kind} embedder")
    identity = EmbedderIdentity(architecture, weights_sha256, input_size, normalisation, output_dim)
    embedder = TorchEmbedder(
        module, identity, device=resolved, fp16=fp16, preprocess_threads=threads
    )
    log.info(
        "embedder %s on %s (fp16=%s, torch threads=%d)",
        identity.label,
        resolved,
        fp16,
        torch.get_num_threads(),
    )
    return embedder


# --------------------------------------------------------------------------------------------
# Micro-batching across callers


class MicroBatcher:
    """Gather single images from any threads into batches of at most ``max_batch``, waiting at
    most ``max_wait_s`` after the first queued image before embedding what is there.

    For callers that produce one frame at a time (several streams, several threads); the daemon's
    poll loop, which already holds a list, calls :meth:`Embedder.embed_many` directly.

    >>> embedder = build_embedder("default", device="cpu")
    >>> with MicroBatcher(embedder, max_batch=32, max_wait_s=0.01) as batcher:
    ...     vector = batcher.submit(np.zeros((270, 480, 3), np.uint8)).result()
    >>> vector.shape
    (128,)

    An exception while embedding is set on every future of that batch. :meth:`close` embeds what
    is still queued, then stops the worker thread.
    """

    def __init__(self, embedder: Embedder, max_batch: int = 64, max_wait_s: float = 0.01) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not max_wait_s >= 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self._embedder = embedder
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._cond = threading.Condition()
        # (image, future, monotonic time queued)
        self._queue: list[tuple[np.ndarray, concurrent.futures.Future, float]] = []
        self._closed = False
        self._worker = threading.Thread(
            target=self._run, name="driftmon-embed-batcher", daemon=True
        )
        self._worker.start()

    def submit(self, image: np.ndarray) -> concurrent.futures.Future:
        """Queue one image; the future's result is its float32 ``(output_dim,)`` embedding."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("MicroBatcher is closed")
            self._queue.append((image, future, time.monotonic()))
            self._cond.notify()
        return future

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._worker.join()

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _take(self) -> list[tuple[np.ndarray, concurrent.futures.Future, float]] | None:
        with self._cond:
            while True:
                if self._queue:
                    remaining = self._queue[0][2] + self._max_wait_s - time.monotonic()
                    if self._closed or len(self._queue) >= self._max_batch or remaining <= 0:
                        batch = self._queue[: self._max_batch]
                        del self._queue[: self._max_batch]
                        return batch
                    self._cond.wait(remaining)
                elif self._closed:
                    return None
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            live = [(image, fut) for image, fut, _ in batch if fut.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                vectors = self._embedder.embed([image for image, _ in live])
            except BaseException as exc:  # hand every failure to the callers, keep serving
                for _, fut in live:
                    fut.set_exception(exc)
                continue
            for (_, fut), vector in zip(live, vectors, strict=True):
                fut.set_result(vector)
