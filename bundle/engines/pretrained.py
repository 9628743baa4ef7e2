"""The vision tower of a pre-training checkpoint, loaded for fine-tuning and segmentation with
errors that name the file and the fix.

Pre-training (``configs/train.json``) saves the best dual encoder as ``models/model.pt``: a plain
state dict whose vision tower entries start with ``clip.visual.`` (MedFILIP and the CLIP baseline
alike). A periodic ``checkpoint_*.pt`` holds the same state dict under ``"model"`` (some trainers
write ``"state_dict"``). Entries starting with ``visual.`` (an open_clip state dict, or a
fine-tuned ``ChestXRayClassifier``) or ``encoder.visual.`` (a segmentation network) are read too.
The tower must fit exactly: every tensor present, none left over, every shape equal.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from .checkpoint import CheckpointError, _brief

LOGGER = logging.getLogger(__name__)
TOWER_PREFIXES = ("clip.visual.", "visual.", "encoder.visual.")


def _listed(names: Sequence[str], most: int = 3) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def tower_state(checkpoint: Mapping[str, object], prefixes: Sequence[str] = TOWER_PREFIXES) -> tuple[str, dict]:
    """``(prefix, tower state dict)`` from a checkpoint's entries under the first prefix that has any.

    Raises:
        KeyError: no entry starts with any of ``prefixes``.
    """
    state = next((checkpoint[key] for key in ("model", "state_dict") if isinstance(checkpoint.get(key), Mapping)),
                 checkpoint)
    for prefix in prefixes:
        tower = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        if tower:
            return prefix, tower
    raise KeyError(f"no entry starts with {' or '.join(map(repr, prefixes))} (it has {_listed(list(state))})")


def tower_mismatch(tower: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps ``state`` from loading into ``tower`` exactly (missing, unexpected, other shapes), or None."""
    expected = tower.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [f"{key} {tuple(state[key].shape)} in the checkpoint, {tuple(value.shape)} in the network"
              for key, value in expected.items() if key in state and state[key].shape != value.shape]
    problems = [f"{len(missing)} tensor(s) missing ({_listed(missing)})"] if missing else []
    problems += [f"{len(unexpected)} unexpected ({_listed(unexpected)})"] if unexpected else []
    problems += [f"{len(shapes)} of other shape ({_listed(shapes, 2)})"] if shapes else []
    return "; ".join(problems) or None


def load_pretrained_tower(
    tower: nn.Module,
    checkpoint: str | Path | None,
    setting: str = "pretrained_checkpoint",
    random_value: str = "''",
    configs: str = "configs/finetune.json",
) -> nn.Module:
    """Fill ``tower`` (an open_clip ``CLIP.visual``) from a pre-training checkpoint and return it.

    An empty or None ``checkpoint`` leaves the random initialisation and logs that it does.
    ``setting`` (the config key that names the file), ``random_value`` (its value for a random
    start) and ``configs`` (the config the tower overrides follow) only word the fixes.

    Raises:
        CheckpointError: the file is missing, cannot be read, holds no vision tower, or holds one
            that does not fit ``tower`` (another architecture or size); the message names the
            file and the fix.
    """
    if checkpoint is None or str(checkpoint).strip() == "":
        LOGGER.info(f"{setting} is empty: the vision tower starts from a random initialisation")
        return tower
    path = Path(checkpoint)
    file_fix = (f"pass --{setting} the models/model.pt of a pre-training run (python -m monai.bundle run training "
                f"--config_file configs/train.json ...), or --{setting} {random_value} to start from a random "
                "initialisation")  # fmt: skip
    tower_fix = (f"layer the tower overrides that pre-trained the checkpoint after {configs} (the same --config_file "
                 "files as its pre-training, e.g. configs/vit_b16.json or tests/configs/tiny_train.json), or pass the "
                 "checkpoint of a run with this tower")  # fmt: skip

    def error(problem: str, fix: str = file_fix) -> CheckpointError:
        return CheckpointError(f"cannot load the pretrained vision tower from '{path}': {problem}. Fix: {fix}")

    if not path.is_file():
        raise error("the file does not exist")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError ... on a damaged file
        raise error(f"it cannot be read: it is truncated or not a checkpoint ({_brief(err)})") from err
    try:
        prefix, state = tower_state(saved if isinstance(saved, Mapping) else {})
    except KeyError as err:
        raise error(f"it holds no vision tower: {err.args[0]}") from None
    mismatch = tower_mismatch(tower, state)
    if mismatch:
        raise error(f"its vision tower does not fit the configured network: {mismatch}", tower_fix)
    tower.load_state_dict(state, strict=True)
    LOGGER.info(f"Loaded the pretrained vision tower from {path} ({len(state)} tensors under '{prefix}')")
    return tower
