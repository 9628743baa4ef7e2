"""Checkpoints: finding the one to resume from, and a best-model saver that survives a resume."""

from __future__ import annotations

import re
from pathlib import Path

from monai.handlers import CheckpointSaver

_STEP = re.compile(r"=(\d+)\.pt$")


def latest_checkpoint(directory: str | Path, prefix: str = "checkpoint") -> str | None:
    """Path of the newest Ignite checkpoint ``<prefix>_*=<step>.pt`` in ``directory`` (by step), or None.

    Ignite's ``Checkpoint`` names periodic checkpoints by their global step and writes them
    atomically, so the highest step is the last complete save.
    """
    candidates = [(int(m.group(1)), p) for p in Path(directory).glob(f"{prefix}_*.pt") if (m := _STEP.search(p.name))]
    return str(max(candidates)[1]) if candidates else None


class BestModelSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` for the best model, whose best score survives a resume.

    MONAI restores the tracked best score only from a ``checkpointer`` entry that it writes into
    the best-model file itself (``key_metric_save_state``), which turns ``model.pt`` from a plain
    state dict into something ``load_state_dict`` rejects. Giving the saver a ``state_dict`` lets
    the periodic trainer checkpoint carry the score instead (list it in ``train#checkpoint``), and
    ``model.pt`` stays the network's weights alone.
    """

    def state_dict(self) -> dict:
        if self._key_metric_checkpoint is None:
            raise ValueError("BestModelSaver tracks a best score only with save_key_metric=True")
        return self._key_metric_checkpoint.state_dict()
