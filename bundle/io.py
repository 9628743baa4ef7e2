"""Crash-safe file writing shared by every stage: a file appears at its path only when complete.

Each writer goes to a temporary file in the target folder and is moved into place with
``os.replace`` (atomic on POSIX and Windows), so an interrupted run leaves either the old file
or the new one, never half of one.

Permissions are those of an ordinary ``open(path, "w")``: a new file gets ``0o666`` minus the
process umask at the time of writing (or what the folder's default ACL gives), and a file that is
replaced keeps its permission bits.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Collection, Iterator

# ".<name>.<random>.tmp"; the random part was 8 characters of tempfile.mkstemp in earlier versions
_TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8,32}\.tmp")


def _temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def unfinished_writes(folder: str | Path, names: Collection[str]) -> list[Path]:
    """Temporary files in ``folder`` that a killed writer left behind for the files called ``names``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [
        entry for entry in folder.iterdir()
        if (match := _TEMPORARY_NAME.fullmatch(entry.name)) and match["name"] in names
    ]


@contextmanager
def atomic_open(
    path: str | Path, binary: bool = False, newline: str | None = None, fsync: bool = True
) -> Iterator[IO]:
    """Open ``path`` for writing (UTF-8 text, or bytes with ``binary=True``); it appears only on success.

    ``fsync=False`` still survives a killed process (the rename is atomic) but not a power cut; it
    is for bulk writers of many small, regenerable files, where a flush per file costs more than
    the data.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_path(path)
    # Created with 0o666 so that the kernel applies the umask (or default ACL) in force now, as open()
    # does. mkstemp would give 0o600, and reading the umask in Python means setting it process-wide.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        mode = {"mode": "wb"} if binary else {"mode": "w", "encoding": "utf-8", "newline": newline}
        with os.fdopen(fd, **mode) as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        try:
            os.chmod(tmp, path.stat().st_mode & 0o777)  # writing in place would keep them
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    with atomic_open(path, binary=True, fsync=fsync) as handle:
        handle.write(data)
    return Path(path)


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=indent)
        handle.write("\n")
    return Path(path)
