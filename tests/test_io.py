"""bundle.io: atomic writes with the permissions of an ordinary open(), and their leftovers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bundle.io import atomic_open, unfinished_writes, write_bytes_atomic, write_json_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test (after bundle.io was imported) and put the old one back."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("value", [0o002, 0o022, 0o077])
def test_new_files_get_the_umask_in_force_when_written(tmp_path, umask, value):
    umask(value)
    written = [
        write_json_atomic(tmp_path / "a.json", {"a": 1}),
        write_bytes_atomic(tmp_path / "b.bin", b"x", fsync=False),
    ]
    with atomic_open(tmp_path / "c.txt") as handle:
        handle.write("c")
    written.append(tmp_path / "c.txt")
    for path in written:
        assert mode(path) == 0o666 & ~value, path.name
    assert (tmp_path / "c.txt").read_text() == "c"


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask):
    umask(0o002)
    path = tmp_path / "shared.json"
    path.write_text("{}")
    path.chmod(0o640)
    write_json_atomic(path, {"new": True})
    assert mode(path) == 0o640 and '"new": true' in path.read_text()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_json_atomic(tmp_path / "a.json", {"old": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(path) as handle:
            handle.write("half")
            raise RuntimeError("killed half way")
    assert path.read_text() == '{\n  "old": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_unfinished_writes_are_the_temporaries_of_the_named_files(tmp_path):
    leftovers = [tmp_path / ".a.png.0123456789abcdef0123456789abcdef.tmp", tmp_path / ".b.png.k3j_9x2q.tmp"]
    others = [tmp_path / "a.png", tmp_path / ".c.png.0123456789abcdef0123456789abcdef.tmp", tmp_path / "a.png.tmp"]
    for path in leftovers + others:
        path.write_bytes(b"")
    assert sorted(unfinished_writes(tmp_path, {"a.png", "b.png"})) == sorted(leftovers)
    assert unfinished_writes(tmp_path / "missing", {"a.png"}) == []
