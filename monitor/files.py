"""Small persistent state: JSON and binary files written atomically (temp file, fsync, rename).

A reader — another thread, or the daemon after a crash and restart — sees either the old file or
the new one, never half of one. Used by drift events, ledgers and tickets (``monitor/actions``).
Also the one name for a JSON object at driftmon's edges, :data:`JSONObject`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, TypeAlias

log = logging.getLogger(__name__)

#: A JSON object at one of driftmon's edges, and only there: a record's to_dict/from_dict, an HTTP
#: body, a file's or a Kafka record's JSON, a producer's payload kept verbatim (a frame's
#: ``predictions``), the YAML mapping a configuration is read from. Between the stages inside,
#: data travels as typed records (Frame, Evaluation, TestOutcome, DriftEvent, Sample, Ticket, ...).
JSONObject: TypeAlias = dict[str, Any]

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
