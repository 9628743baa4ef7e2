"""Finding the checkpoint to resume from."""

from __future__ import annotations

import re
from pathlib import Path

_STEP = re.compile(r"=(\d+)\.pt$")


def latest_checkpoint(directory: str | Path, prefix: str = "checkpoint") -> str | None:
    """Path of the newest Ignite checkpoint ``<prefix>_*=<step>.pt`` in ``directory`` (by step), or None.

    Ignite's ``Checkpoint`` names periodic checkpoints by their global step and writes them
    atomically, so the highest step is the last complete save.
    """
    candidates = [(int(m.group(1)), p) for p in Path(directory).glob(f"{prefix}_*.pt") if (m := _STEP.search(p.name))]
    return str(max(candidates)[1]) if candidates else None
