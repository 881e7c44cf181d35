"""Small persistent state: JSON and binary files written atomically (temp file, fsync, rename).

A reader — another thread, another replica on a shared volume, or the daemon after a crash and
restart — sees either the old file or the new one, never half of one. Used by drift events, ledgers
and tickets (``monitor/actions``). Writers in several processes take turns with :func:`locked` (an
``flock`` on a lock file beside the state) around each read-modify-write, and a reader keeps up
with what others wrote through a :class:`DirectoryView`.
Also the one name for a JSON object at driftmon's edges, :data:`JSONObject`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

log = logging.getLogger(__name__)

#: A JSON object at one of driftmon's edges, and only there: a record's to_dict/from_dict, an HTTP
#: body, a file's or a Kafka record's JSON, a producer's payload kept verbatim (a frame's
#: ``predictions``), the YAML mapping a configuration is read from. Between the stages inside,
#: data travels as typed records (Frame, Evaluation, TestOutcome, DriftEvent, Sample, Ticket, ...).
JSONObject: TypeAlias = dict[str, Any]

#: How often at most a :class:`DirectoryView` lists its directory again: what another process
#: wrote is seen this late at most.
REFRESH_S = 0.2

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# The process's umask, read once at import (reading it means setting it): files are written with
# the mode open() would give them, not mkstemp's owner-only 0600, so a reference built by one user
# is readable by the daemon's non-root user in its container.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(
        path, json.dumps(obj, indent=1, sort_keys=True, default=_jsonable).encode()
    )


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def read_json(path: str | Path, default: Any = None) -> Any:
    """The file's JSON, or ``default`` when it does not exist."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default


def load_json_dir(directory: str | Path, pattern: str, what: str) -> list[Any]:
    """The JSON of each file in ``directory`` matching ``pattern``, in name order. A file that
    does not parse (``what`` names its kind in the log) is skipped, so one damaged file cannot
    keep the daemon from starting."""
    records = []
    for path in sorted(Path(directory).glob(pattern)):
        try:
            records.append(read_json(path))
        except ValueError:
            log.error("%s file %s does not parse; ignored", what, path)
    return records


@contextlib.contextmanager
def locked(path: str | Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on the lock file ``path`` (created if missing) for the block:
    writers in other processes — and other threads, each opening the file anew — wait their turn.
    With ``wait=False`` it does not wait: the block gets False when another holder has it. The lock
    goes with the process: one that dies holding it holds it no longer. On NFS, ``flock`` is a
    POSIX lock on the server (NFSv4), released when the client's lease ends."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class FileSignature:
    """What tells one version of a file from another: an atomic replace makes a new inode."""

    inode: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileSignature:
        return cls(st.st_ino, st.st_mtime_ns, st.st_size)


class DirectoryView:
    """Which files matching ``pattern`` a directory holds, and which changed since last looked at:
    how a process keeps up with state other processes write into a shared directory.

    Looking is cheap when nothing changed: one ``stat`` of the directory (creating, replacing or
    removing a file changes its mtime). A directory changed less than ``settle_s`` before it was
    last listed is listed again (two changes within one tick of the file system's clock leave one
    mtime), and it is listed at most once per ``min_interval_s`` (others' changes are seen that
    late at most). Not thread-safe: its owner holds its own lock.
    """

    def __init__(
        self,
        directory: str | Path,
        pattern: str,
        min_interval_s: float = REFRESH_S,
        settle_s: float = 2.0,
    ):
        self.dir = Path(directory)
        self.pattern = pattern
        self.min_interval_s = min_interval_s
        self.settle_s = settle_s
        self._known: dict[str, FileSignature] = {}  # file name -> the version its owner holds
        self._dir_mtime_ns: int | None = None
        self._settled = False
        self._listed_at = -float("inf")

    def stale(self) -> bool:
        """Whether the directory may hold changes not yet taken in."""
        if time.monotonic() - self._listed_at < self.min_interval_s:
            return False
        try:
            mtime = os.stat(self.dir).st_mtime_ns
        except FileNotFoundError:
            return False
        return not (self._settled and mtime == self._dir_mtime_ns)

    def changes(self, force: bool = False) -> tuple[list[tuple[Path, FileSignature]], list[str]]:
        """The files new or changed since last taken in (with their signature, taken before they
        are read), and the names of those gone; empty when the directory is not :meth:`stale`
        (unless ``force``). The caller reads each changed file, then calls :meth:`seen`."""
        if not force and not self.stale():
            return [], []
        st = os.stat(self.dir)
        self._dir_mtime_ns = st.st_mtime_ns
        self._settled = time.time() - st.st_mtime > self.settle_s
        self._listed_at = time.monotonic()
        present: dict[str, FileSignature] = {}
        for path in self.dir.glob(self.pattern):
            try:
                present[path.name] = FileSignature.of(path.stat())
            except FileNotFoundError:
                continue  # replaced or removed while listed: seen at the next look
        changed = [
            (self.dir / n, sig) for n, sig in sorted(present.items()) if self._known.get(n) != sig
        ]
        gone = [n for n in self._known if n not in present]
        for n in gone:
            del self._known[n]
        return changed, gone

    def seen(self, path: Path, signature: FileSignature | None = None) -> None:
        """``path`` is taken in: the version of ``signature`` (from :meth:`changes`: a file
        replaced since is read again at the next look), or as it is now (one its owner just wrote,
        holding the writers' lock)."""
        if signature is None:
            try:
                signature = FileSignature.of(path.stat())
            except FileNotFoundError:
                self._known.pop(path.name, None)
                return
        self._known[path.name] = signature


def safe_name(text: str, max_len: int = 80) -> str:
    """A file-name-safe rendering of ``text`` (camera ids, frame ids), readable where possible."""
    name = _UNSAFE.sub("_", text).strip("._") or "_"
    return name[:max_len]


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
