"""MONAI transforms for chest radiographs, report text and findings."""

from .findings import FindingsToLabelsd
from .image import ChestXRayReadError, LoadChestXRay, LoadChestXRayd
from .text import ReportSectionsd, TokenizeTextd

__all__ = ["ChestXRayReadError", "FindingsToLabelsd", "LoadChestXRay", "LoadChestXRayd", "ReportSectionsd",
           "TokenizeTextd"]
