"""Crash-safe file writing shared by every stage: a file appears at its path only when complete.

Each writer goes to a temporary file in the target folder and is moved into place with
``os.replace`` (atomic on POSIX and Windows), so an interrupted run leaves either the old file
or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        mode = {"mode": "wb"} if binary else {"mode": "w", "encoding": "utf-8", "newline": newline}
        with os.fdopen(fd, **mode) as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        # mkstemp creates 0600; give the file the permissions an ordinary open() would
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
