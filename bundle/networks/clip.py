"""The dual encoder: an open_clip CLIP model that reads single-channel chest radiographs.

open_clip provides the towers, the factory and the checkpoint converters; this wrapper adds
only what a radiograph needs and open_clip does not do: grey-to-RGB expansion with the
normalisation the vision tower was trained with, and an offline-only weights policy (a
``pretrained`` value is a local file, never a hub tag that would trigger a download).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import open_clip
import torch
from torch import nn

# open_clip's default normalisation (OpenAI CLIP statistics); towers trained from scratch learn
# to cope with any fixed affine map, and pretrained ones expect exactly this one.
OPENAI_CLIP_MEAN = open_clip.OPENAI_DATASET_MEAN
OPENAI_CLIP_STD = open_clip.OPENAI_DATASET_STD
# CLIP's cap on the learnable temperature (open_clip clamps it in its training loop instead).
MAX_LOGIT_SCALE = 100.0


def _check_local_weights(path: str | None, what: str) -> str | None:
    if path is None or path == "":
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"{what} weights '{path}' are not a local file. This bundle never downloads weights: "
            f"download the checkpoint yourself and pass its path, or set it to null to train from scratch."
        )
    return str(path)


def build_open_clip(
    model_name: str | None = None,
    embed_dim: int | None = None,
    vision_cfg: Mapping[str, Any] | None = None,
    text_cfg: Mapping[str, Any] | None = None,
    pretrained: str | None = None,
) -> open_clip.CLIP:
    """Build an open_clip ``CLIP`` from a registered model name or an inline config.

    Args:
        model_name: an open_clip model name (``"ViT-B-16"``, ``"RN50"``); hub schemas are refused.
        embed_dim, vision_cfg, text_cfg: an inline architecture (used when ``model_name`` is None).
        pretrained: path of a local open_clip checkpoint, or None for random initialisation.
    """
    pretrained = _check_local_weights(pretrained, "pretrained")
    if model_name is not None:
        if ":" in model_name:
            raise ValueError(
                f"model_name '{model_name}' uses a schema (hf-hub:, local-dir:) that may download; "
                "give a built-in open_clip name and a local `pretrained` file instead."
            )
        return open_clip.create_model(
            model_name, pretrained=pretrained, pretrained_image=False, pretrained_text=False, output_dict=True
        )
    if embed_dim is None or vision_cfg is None or text_cfg is None:
        raise ValueError("give either `model_name` or all of `embed_dim`, `vision_cfg` and `text_cfg`")
    model = open_clip.CLIP(embed_dim=embed_dim, vision_cfg=dict(vision_cfg), text_cfg=dict(text_cfg), output_dict=True)
    if pretrained is not None:
        open_clip.load_checkpoint(model, pretrained)
    return model


class ChestXRayCLIP(nn.Module):
    """CLIP dual encoder over single-channel radiographs and tokenised text.

    Args:
        clip: an open_clip ``CLIP`` (see :func:`build_open_clip`).
        image_mean, image_std: per-RGB-channel normalisation expected by the vision tower.

    ``forward(image, text)`` takes ``image`` of shape ``[B, 1, H, W]`` with values in ``[0, 1]``
    and ``text`` token ids of shape ``[N, L]``; it returns a dict with ``image_features``
    ``[B, D]`` and ``text_features`` ``[N, D]`` (both L2-normalised) and the scalar ``logit_scale``.
    """

    def __init__(
        self,
        clip: open_clip.CLIP,
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
    ) -> None:
        super().__init__()
        self.clip = clip
        self.register_buffer("image_mean", torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1))

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] not in (1, 3):
            raise ValueError(f"expected images of shape [B, 1, H, W] (or [B, 3, H, W]), got {tuple(image.shape)}")
        image = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
        return self.clip.encode_image((image - self.image_mean) / self.image_std, normalize=True)

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        if text.ndim != 2:
            raise ValueError(f"expected token ids of shape [N, L], got {tuple(text.shape)}")
        return self.clip.encode_text(text, normalize=True)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "image_features": self.encode_image(image),
            "text_features": self.encode_text(text),
            "logit_scale": self.clip.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE),
        }
