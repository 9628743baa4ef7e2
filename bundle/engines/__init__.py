"""Engines: the pieces that wire networks, losses and data into Ignite workflows."""

from .checkpoint import latest_checkpoint
from .flags import flag
from .zero_shot import ZeroShotInferer, stack_outputs

__all__ = ["ZeroShotInferer", "flag", "latest_checkpoint", "stack_outputs"]
