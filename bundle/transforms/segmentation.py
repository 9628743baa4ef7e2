"""Writing segmentation results: an 8-bit mask and an overlay per image, at the image's own size.

``SaveSegmentationd`` is the last post-processing transform of ``configs/inference_segmentation.json``.
It takes the class probabilities at the network's resolution (after ``Invertd`` has removed the
padding, so the aspect ratio is the source's), resizes them bilinearly to the source image's
height and width (smooth contours; MONAI's inverse of the ``area`` downsampling would repeat
pixels), thresholds them and writes, atomically:

- ``<stem>_seg.png``: 8-bit grey; one class: 0 background, 255 foreground; several classes:
  0 background, k for class k (1-based, the most probable class above the threshold);
- ``<stem>_overlay.png``: the radiograph in grey with the mask blended in colour
  (``monai.visualize.blend_images``), scaled down to at most ``overlay_max_size`` pixels a side
  (a screen's worth: blending and encoding a detector's full 3000 x 3000 take seconds an image).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Resize
from monai.visualize import blend_images
from PIL import Image

from ..io import write_bytes_atomic
from .image import DICOM_SUFFIXES, ITK_SUFFIXES, NIFTI_SUFFIXES, PIL_SUFFIXES

IMAGE_SUFFIXES = tuple(s for s in PIL_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES + ITK_SUFFIXES if s)
MASK_SUFFIX = "_seg.png"
OVERLAY_SUFFIX = "_overlay.png"


def output_stem(path: str | Path) -> str:
    """The name outputs for ``path`` start with: the file name without its image suffix.

    Only known image suffixes are removed (``x.nii.gz`` -> ``x``), so that a DICOM file named by
    its UID, ``1.2.840.113619.2.55.3.12345``, keeps every part of its name.
    """
    name = Path(path).name
    suffix = next((s for s in IMAGE_SUFFIXES if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)] if suffix and len(name) > len(suffix) else name


def label_map(probabilities: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``[C, H, W]`` class probabilities to a uint8 ``[H, W]`` mask (see the module docstring for the values)."""
    if probabilities.ndim != 3:
        raise ValueError(f"expected probabilities of shape [C, H, W], got {tuple(probabilities.shape)}")
    if probabilities.shape[0] == 1:
        return (probabilities[0] >= threshold).to(torch.uint8) * 255
    best, index = probabilities.max(dim=0)
    return torch.where(best >= threshold, index + 1, 0).to(torch.uint8)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # the lightest zlib level: a few times faster than PIL's default on a radiograph, for a file a little larger
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class SaveSegmentationd(MapTransform):
    """Write the mask and the overlay of each item's probabilities into ``output_dir``.

    Args:
        keys: the key of the ``[C, h, w]`` probabilities (aspect ratio of the source, any scale).
        source_key: the key of the source radiograph as loaded (``[1, H, W]`` in [0, 1], with
            ``filename_or_obj`` in its metadata); the outputs have its H and W.
        output_dir: the folder to write to (created if needed).
        threshold: the probability at which a pixel is foreground.
        overlay_alpha: the opacity of the mask colour in the overlay.
        overlay_max_size: the longest side of the overlay in pixels (None: the source's size).

    Adds ``<key>_file`` and ``<key>_overlay_file`` (the written paths) to the item.
    """

    def __init__(
        self,
        keys: KeysCollection,
        source_key: str,
        output_dir: str | Path,
        threshold: float = 0.5,
        overlay_alpha: float = 0.4,
        overlay_max_size: int | None = 1024,
    ) -> None:
        super().__init__(keys)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        self.source_key = source_key
        self.output_dir = Path(output_dir)
        self.threshold = threshold
        self.overlay_alpha = overlay_alpha
        self.overlay_max_size = overlay_max_size

    def overlay(self, image: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        """``[H', W', 3]`` uint8 RGB: ``image`` ``[1, H, W]`` with ``mask`` ``[H, W]`` blended in, scaled down."""
        label = mask[None].float()
        if self.overlay_max_size and max(image.shape[1:]) > self.overlay_max_size:
            image = Resize(self.overlay_max_size, size_mode="longest", mode="area")(image)
            label = Resize(self.overlay_max_size, size_mode="longest", mode="nearest")(label)
        blended = blend_images(torch.as_tensor(image), torch.as_tensor(label), alpha=self.overlay_alpha, cmap="hsv")
        return (torch.as_tensor(blended).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, object]:
        d = dict(data)
        source = d[self.source_key]
        stem = output_stem(source.meta["filename_or_obj"])
        image = torch.as_tensor(source, dtype=torch.float32).cpu()
        for key in self.key_iterator(d):
            probabilities = Resize(spatial_size=image.shape[1:], mode="bilinear")(
                torch.as_tensor(d[key], dtype=torch.float32).cpu()
            )
            mask = label_map(torch.as_tensor(probabilities), self.threshold)
            # many small files that a re-run regenerates: atomic, without a flush to disk each
            d[f"{key}_file"] = write_bytes_atomic(self.output_dir / f"{stem}{MASK_SUFFIX}", _png(mask.numpy()),
                                                  fsync=False)
            d[f"{key}_overlay_file"] = write_bytes_atomic(self.output_dir / f"{stem}{OVERLAY_SUFFIX}",
                                                          _png(self.overlay(image, mask)), fsync=False)
        return d
