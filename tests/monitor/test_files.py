"""Atomic files: the new content or the old, never half; the mode a plain open() would give."""

import os
import stat

from monitor.files import atomic_write_bytes, atomic_write_json, read_json


def test_an_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "state.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert read_json(path) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_files_get_the_mode_open_would_give_them_not_owner_only(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    written = atomic_write_bytes(tmp_path / "atomic", b"x")
    mode = stat.S_IMODE(os.stat(written).st_mode)
    assert mode == stat.S_IMODE(os.stat(plain).st_mode)
