"""Engines: the pieces that wire networks, losses and data into Ignite workflows."""

from .checkpoint import BestModelSaver, latest_checkpoint
from .flags import flag
from .prepare_batch import PrepareFindingsBatch
from .zero_shot import ZeroShotInferer, stack_outputs

__all__ = ["BestModelSaver", "PrepareFindingsBatch", "ZeroShotInferer", "flag", "latest_checkpoint", "stack_outputs"]
