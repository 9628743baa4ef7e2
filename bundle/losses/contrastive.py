"""Image-text contrastive loss (CLIP InfoNCE), in the (prediction, target) form Ignite engines call."""

from __future__ import annotations

from typing import Mapping

import torch
from open_clip.loss import ClipLoss
from torch import nn


class CLIPContrastiveLoss(nn.Module):
    """Symmetric InfoNCE over the batch: image ``i`` matches text ``i`` and no other.

    The computation is open_clip's ``ClipLoss``; this class only adapts it to MONAI's
    ``loss_function(pred, target)`` call, where ``pred`` is the dual encoder's output dict
    (``image_features`` ``[B, D]``, ``text_features`` ``[B, D]``, ``logit_scale``) and
    ``target`` is unused because the pairing is given by position.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clip_loss = ClipLoss()

    def forward(self, pred: Mapping[str, torch.Tensor], target: torch.Tensor | None = None) -> torch.Tensor:
        image_features, text_features = pred["image_features"], pred["text_features"]
        if image_features.shape != text_features.shape:
            raise ValueError(
                "CLIP InfoNCE needs one text per image: got image features "
                f"{tuple(image_features.shape)} and text features {tuple(text_features.shape)}"
            )
        return self.clip_loss(image_features, text_features, pred["logit_scale"])
