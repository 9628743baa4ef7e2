"""Networks: the open_clip dual encoder (and, in later stages, IKI, ITM and decoder heads)."""

from .clip import ChestXRayCLIP, build_open_clip

__all__ = ["ChestXRayCLIP", "build_open_clip"]
