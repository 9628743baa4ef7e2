"""MONAI transforms for chest radiographs, report text and findings."""

from .embedding import EmbedTextsd
from .findings import ComposeFindingTextsd, EncodeFindingsd, FindingsToLabelsd
from .image import ChestXRayReadError, LoadChestXRay, LoadChestXRayd
from .text import ReportSectionsd, TokenizeTextd

__all__ = ["ChestXRayReadError", "ComposeFindingTextsd", "EmbedTextsd", "EncodeFindingsd", "FindingsToLabelsd",
           "LoadChestXRay", "LoadChestXRayd", "ReportSectionsd", "TokenizeTextd"]
