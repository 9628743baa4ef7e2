"""Networks: the open_clip dual encoder and MedFILIP's multi-text encoder with its ITM head."""

from .clip import ChestXRayCLIP, build_open_clip
from .medfilip import ImageTextMatchingHead, MedFILIP

__all__ = ["ChestXRayCLIP", "ImageTextMatchingHead", "MedFILIP", "build_open_clip"]
