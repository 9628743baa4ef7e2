"""Losses: each takes the network's output dict and the batch target."""

from .contrastive import CLIPContrastiveLoss

__all__ = ["CLIPContrastiveLoss"]
