"""Engines: the pieces that wire networks, losses and data into Ignite workflows."""

from .checkpoint import latest_checkpoint
from .zero_shot import ZeroShotInferer, stack_outputs

__all__ = ["ZeroShotInferer", "latest_checkpoint", "stack_outputs"]
