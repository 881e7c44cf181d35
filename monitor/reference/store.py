"""Reference sets: versioned, self-describing artefacts that live traffic is compared against.

A reference is one ``.npz`` file: the feature matrix (one row per frame, columns named), the
embeddings and the embedder's identity when there are any, and provenance (source, time range,
frame count, creation time, version). A reference *store* is a directory holding versions per
stream with a shared fallback::

    store/_shared/v0001.npz
    store/streams/<stream>/v0001.npz   (stream names are URL-quoted)

A stream uses the newest version of its own reference if one exists, else the shared one.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from monitor.errors import InputError

FORMAT_VERSION = 1
SHARED = "_shared"
_VERSION_RE = re.compile(r"^v(\d+)\.npz$")


class ReferenceError(InputError):
    """A missing, unreadable or incompatible reference."""


@dataclass(frozen=True)
class Reference:
    features: np.ndarray  # (n_frames, n_features) float32
    feature_names: tuple[str, ...]
    stream: str | None = None  # None: shared by every stream
    version: int = 1
    source: str = ""
    time_range: tuple[float, float] | None = None  # event times of the first and last frame
    created_at: float = field(default_factory=time.time)
    embeddings: np.ndarray | None = None  # (n_frames, dim) float32
    embedder: dict[str, Any] | None = None  # the embedder's identity
    extra: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable facts about it
    fitted: dict[str, np.ndarray] = field(default_factory=dict)  # arrays fitted on it (e.g. PCA)

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[1] != len(self.feature_names):
            raise ReferenceError(
                f"features shape {self.features.shape} does not match {len(self.feature_names)} feature names")
        if self.features.shape[0] < 2:
            raise ReferenceError(f"a reference needs at least 2 frames, got {self.features.shape[0]}")
        if self.embeddings is not None and self.embeddings.shape[0] != self.features.shape[0]:
            raise ReferenceError("embeddings and features have different frame counts")

    @property
    def n_frames(self) -> int:
        return int(self.features.shape[0])

    def columns(self, names: tuple[str, ...]) -> np.ndarray:
        """The feature matrix restricted to ``names``, in that order."""
        missing = [n for n in names if n not in self.feature_names]
        if missing:
            raise ReferenceError(f"reference lacks feature(s) {missing}; rebuild it with this driftmon version")
        index = [self.feature_names.index(n) for n in names]
        return self.features[:, index]

    def describe(self) -> dict[str, Any]:
        return {
            "stream": self.stream or "*",
            "version": self.version,
            "source": self.source,
            "frames": self.n_frames,
            "time_range": list(self.time_range) if self.time_range else None,
            "created_at": self.created_at,
            "features": list(self.feature_names),
            "embedder": self.embedder,
            "embedding_dim": None if self.embeddings is None else int(self.embeddings.shape[1]),
        }

    # --- files -----------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = self.describe() | {"format_version": FORMAT_VERSION, "stream": self.stream, "extra": self.extra}
        arrays: dict[str, np.ndarray] = {"features": self.features.astype(np.float32),
                                         "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
        if self.embeddings is not None:
            arrays["embeddings"] = self.embeddings.astype(np.float32)
        arrays.update({f"fitted.{name}": value for name, value in self.fitted.items()})
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)  # atomic: a reader never sees half a reference
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Reference":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                features = z["features"]
                embeddings = z["embeddings"] if "embeddings" in z.files else None
                fitted = {name[len("fitted."):]: z[name] for name in z.files if name.startswith("fitted.")}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            raise ReferenceError(f"{path}: not a driftmon reference ({e})") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise ReferenceError(f"{path}: reference format {meta.get('format_version')} is not supported "
                                 f"(this driftmon reads {FORMAT_VERSION})")
        tr = meta.get("time_range")
        return cls(features=features, feature_names=tuple(meta["features"]), stream=meta.get("stream"),
                   version=int(meta["version"]), source=meta.get("source", ""),
                   time_range=tuple(tr) if tr else None, created_at=float(meta["created_at"]),
                   embeddings=embeddings, embedder=meta.get("embedder"), extra=meta.get("extra") or {},
                   fitted=fitted)


class ReferenceStore:
    """Reference versions per stream with a shared fallback; or a single shared file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._cache: dict[str | None, Reference | None] = {}

    @property
    def is_file(self) -> bool:
        return self.path.suffix == ".npz"

    def _dir(self, stream: str | None) -> Path:
        return self.path / SHARED if stream is None else self.path / "streams" / quote(stream, safe="")

    def versions(self, stream: str | None) -> list[int]:
        if self.is_file:
            return [1] if stream is None and self.path.exists() else []
        d = self._dir(stream)
        found = (_VERSION_RE.match(p.name) for p in d.glob("v*.npz")) if d.is_dir() else ()
        return sorted(int(m.group(1)) for m in found if m)

    def streams(self) -> list[str]:
        d = self.path / "streams"
        if self.is_file or not d.is_dir():
            return []
        return sorted(unquote(p.name) for p in d.iterdir() if p.is_dir())

    def load_latest(self, stream: str | None) -> Reference | None:
        """The newest version of ``stream``'s own reference (``None``: the shared one), if any."""
        if stream not in self._cache:
            if self.is_file:
                self._cache[stream] = Reference.load(self.path) if stream is None else None
            else:
                versions = self.versions(stream)
                self._cache[stream] = (Reference.load(self._dir(stream) / f"v{versions[-1]:04d}.npz")
                                       if versions else None)
        return self._cache[stream]

    def for_stream(self, stream: str) -> Reference | None:
        """The reference a stream is judged against: its own if it has one, else the shared one."""
        return self.load_latest(stream) or self.load_latest(None)

    def add(self, reference: Reference) -> Path:
        """Store ``reference`` as the next version of its stream (older versions are kept)."""
        if self.is_file:
            if reference.stream is not None:
                raise ReferenceError(f"{self.path} is a single shared reference file; use a store directory "
                                     "for per-stream references")
            path = reference.save(self.path)
        else:
            version = (self.versions(reference.stream) or [0])[-1] + 1
            reference = replace(reference, version=version)
            path = reference.save(self._dir(reference.stream) / f"v{version:04d}.npz")
        self._cache.pop(reference.stream, None)
        return path
