"""Fine-tuning network: a pre-trained vision tower with a linear multi-label head.

The tower is the ``clip.visual`` of the dual encoder that pre-training trained (MedFILIP or the
CLIP baseline); ``bundle.engines.pretrained.load_pretrained_tower`` fills it from a pre-training
checkpoint before it is passed here. Two modes:

- ``"full"``: tower and head are trained.
- ``"linear_probe"``: only the head is trained. The tower's parameters get ``requires_grad``
  False and the tower stays in eval mode even when a trainer calls ``network.train()``, so batch
  norm running statistics and dropout are frozen too: the probe measures the representation as
  pre-training left it.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from bundle.engines.errors import UserInputError
from bundle.networks.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

FINETUNE_MODES = ("linear_probe", "full")


def freezes_tower(finetune_mode: str) -> bool:
    """Whether ``finetune_mode`` (``"linear_probe"`` or ``"full"``) keeps the vision tower frozen.

    Raises:
        UserInputError: any other mode, with the values to pass.
    """
    if finetune_mode not in FINETUNE_MODES:
        raise UserInputError(
            f"finetune_mode must be one of {', '.join(FINETUNE_MODES)}, got {finetune_mode!r}. Fix: pass "
            "--finetune_mode linear_probe (tower frozen, head trained) or --finetune_mode full (both trained)"
        )
    return finetune_mode == "linear_probe"


class ChestXRayClassifier(nn.Module):
    """Multi-label classifier over single-channel radiographs: vision tower, then one linear layer.

    Args:
        visual: an open_clip vision tower (``CLIP.visual``), pre-trained or freshly initialised.
        feature_dim: width of the tower's output (the dual encoder's ``embed_dim``).
        num_classes: one logit per category.
        freeze_visual: the linear-probe mode (see the module docstring).
        image_mean, image_std: per-RGB-channel normalisation the tower was pre-trained with
            (``ChestXRayCLIP``'s defaults).

    ``forward(image)`` takes ``[B, 1, H, W]`` (or ``[B, 3, H, W]``) with values in ``[0, 1]`` and
    returns logits ``[B, num_classes]``. The state dict holds ``visual.*`` (the tower, keys as in
    ``CLIP.visual``) and ``head.*``.
    """

    def __init__(
        self,
        visual: nn.Module,
        feature_dim: int,
        num_classes: int,
        freeze_visual: bool = False,
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.visual = visual
        self.head = nn.Linear(feature_dim, num_classes)
        self.freeze_visual = freeze_visual
        self.register_buffer("image_mean", torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1))
        if freeze_visual:
            self.visual.requires_grad_(False)
            self.visual.eval()

    def train(self, mode: bool = True) -> "ChestXRayClassifier":
        super().train(mode)
        if self.freeze_visual:
            self.visual.eval()  # a trainer calls train() every iteration: keep batch-norm statistics frozen
        return self

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] not in (1, 3):
            raise ValueError(f"expected images of shape [B, 1, H, W] (or [B, 3, H, W]), got {tuple(image.shape)}")
        image = (image.expand(-1, 3, -1, -1) - self.image_mean) / self.image_std
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_visual):
            features = self.visual(image)
        return self.head(features)
