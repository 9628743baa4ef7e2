"""The MedFILIP network: the dual encoder over an image and its finding texts, plus an ITM head.

``MedFILIP`` is a :class:`ChestXRayCLIP` (so zero-shot inference and checkpoints work the same)
whose ``forward`` takes several texts per image and, when it has an image-text matching head,
also returns the token states the head fuses. The tokens are read with forward hooks on the
towers' own layers (a feature map of the image tower or its patch tokens, the text tower's final
layer norm), so the open_clip towers run unchanged and any of them can be used.
"""

from __future__ import annotations

import functools
from typing import Sequence

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from bundle.networks.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ChestXRayCLIP


class ImageTextMatchingHead(nn.Module):
    """Binary match logit for (image, text) pairs: text tokens cross-attend to image tokens.

    Args:
        image_dim: channels of the image tokens (e.g. 256 for timm ``resnet10t``'s third stage, 512 for its last).
        text_dim: width of the text tokens (the text transformer's width).
        width: the fusion width.
        heads: attention heads.
        layers: fusion layers (``torch.nn.TransformerDecoderLayer``: self-attention over the
            text, cross-attention to the image, feed-forward).

    ``forward(image_tokens [P, I, image_dim], text_tokens [P, L, text_dim], text_mask [P, L])``
    returns ``[P]`` logits for P pairs; ``text_mask`` is True on real (non-padding) tokens.
    """

    def __init__(self, image_dim: int, text_dim: int, width: int = 128, heads: int = 4, layers: int = 1) -> None:
        super().__init__()
        self.image_proj = nn.Linear(image_dim, width)
        self.text_proj = nn.Linear(text_dim, width)
        layer = nn.TransformerDecoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0, batch_first=True)
        self.fusion = nn.TransformerDecoder(layer, layers)
        self.classifier = nn.Linear(width, 1)

    def forward(self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        if image_tokens.shape[0] != text_tokens.shape[0] or text_tokens.shape[:2] != text_mask.shape:
            raise ValueError(
                f"ITM pairs disagree: image tokens {tuple(image_tokens.shape)}, text tokens "
                f"{tuple(text_tokens.shape)}, text mask {tuple(text_mask.shape)}"
            )
        fused = self.fusion(
            self.text_proj(text_tokens), self.image_proj(image_tokens), tgt_key_padding_mask=~text_mask
        )
        mask = text_mask.unsqueeze(-1).to(fused.dtype)
        pooled = (fused * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.classifier(pooled).squeeze(-1)


class MedFILIP(ChestXRayCLIP):
    """Dual encoder for B images and their finding texts, with an optional ITM head.

    Args:
        clip: an open_clip ``CLIP`` (see ``build_open_clip``).
        itm_head: an :class:`ImageTextMatchingHead`, or None (the no-ITM ablation).
        image_token_layer: dotted name (below ``clip.visual``) of the module whose output are the
            image tokens for ITM and patch features: a ``[B, C, h, w]`` feature map or ``[B, L, C]``
            tokens, e.g. ``trunk.layer3`` or ``trunk.layer4`` (timm ResNets), ``layer4`` (open_clip RN50),
            ``transformer`` (ViT).
        patch_head: maps each image token into the joint embedding space (e.g. a ``torch.nn.Linear``
            from the token channels to the embedding width), for MLIP's patch-sentence matching
            (``bundle.losses.patch_sentence_similarity``); None: no patch features.
        image_mean, image_std: see ``ChestXRayCLIP``.

    ``forward(image [B, 1, H, W], text [B, T, L])`` (token id 0 = padding; an all-zero row is an
    empty slot) returns ``image_features`` ``[B, D]``, ``text_features`` ``[B*T, D]`` (zero rows
    for empty slots), ``logit_scale``; with an ITM head, ``image_tokens`` ``[B, I, C]``,
    ``text_tokens`` ``[B*T, L', W]`` and ``text_token_mask`` ``[B*T, L']`` (L' = the longest text);
    with a patch head, ``patch_features`` ``[B, I, D]`` (L2-normalised).
    """

    def __init__(
        self,
        clip: open_clip.CLIP,
        itm_head: ImageTextMatchingHead | None = None,
        image_token_layer: str | None = "trunk.layer4",
        patch_head: nn.Module | None = None,
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
    ) -> None:
        super().__init__(clip, image_mean, image_std)
        self.itm_head = itm_head
        self.patch_head = patch_head
        self._captured: dict[str, torch.Tensor] = {}
        if itm_head is not None and not hasattr(clip, "ln_final"):
            raise ValueError("the ITM head needs an open_clip CLIP with its own text transformer (ln_final)")
        if itm_head is not None or patch_head is not None:
            try:
                image_layer = clip.visual.get_submodule(image_token_layer or "")
            except AttributeError:
                raise ValueError(
                    f"image_token_layer {image_token_layer!r} is not a module of the vision tower "
                    f"({type(clip.visual).__name__}); name one of its feature stages, e.g. 'trunk.layer3', 'trunk.layer4' or 'transformer'"
                ) from None
            # partials of a bound method, not closures: copy.deepcopy maps them to the copy, whose hooks
            # then fill the copy's own _captured
            image_layer.register_forward_hook(functools.partial(self._capture, "image_tokens"))
        if itm_head is not None:
            clip.ln_final.register_forward_hook(functools.partial(self._capture, "text_tokens"))

    def _capture(self, name: str, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self._captured[name] = output[0] if isinstance(output, tuple) else output

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
        if text.ndim != 3:
            raise ValueError(f"expected finding-text token ids of shape [B, T, L], got {tuple(text.shape)}")
        if text.shape[0] != image.shape[0]:
            raise ValueError(f"got {image.shape[0]} images but text slots for {text.shape[0]}")
        self._captured.clear()
        image_features = self.encode_image(image)
        image_tokens = self._captured.get("image_tokens")
        flat = text.reshape(-1, text.shape[-1])
        filled = flat.ne(0).any(dim=1)
        # a batch repeats many texts ("no pneumothorax", a name alone after field dropping): encode each once
        unique, inverse = torch.unique(flat[filled], dim=0, return_inverse=True)
        text_features = image_features.new_zeros(flat.shape[0], image_features.shape[1])
        text_features[filled] = self.encode_text(unique).to(text_features.dtype)[inverse]
        output = {"image_features": image_features, "text_features": text_features, "logit_scale": self.clip.logit_scale.exp()}
        if image_tokens is not None:
            image_tokens = _as_tokens(image_tokens)
        if self.patch_head is not None:
            output["patch_features"] = self._patch_features(image_tokens)
        if self.itm_head is None:
            return output
        token_mask = flat.ne(0)
        length = max(int(token_mask.sum(dim=1).max()), 1)
        states = self._captured["text_tokens"][:, :length]
        text_tokens = states.new_zeros(flat.shape[0], length, states.shape[-1])
        text_tokens[filled] = states[inverse]
        output.update(image_tokens=image_tokens, text_tokens=text_tokens, text_token_mask=token_mask[:, :length])
        return output

    def encode_patches(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, I, D]`` L2-normalised patch embeddings of ``image`` ``[B, 1, H, W]`` (needs a patch head)."""
        if self.patch_head is None:
            raise RuntimeError("this MedFILIP network has no patch head: build it with patch_head, as configs/train.json does")
        self._captured.clear()
        self.encode_image(image)
        return self._patch_features(_as_tokens(self._captured["image_tokens"]))

    def _patch_features(self, image_tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.patch_head(image_tokens), dim=-1)

    def match_logits(
        self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_token_mask: torch.Tensor
    ) -> torch.Tensor:
        """ITM logits for aligned (image, text) pairs (see :class:`ImageTextMatchingHead`)."""
        if self.itm_head is None:
            raise RuntimeError("this MedFILIP network has no ITM head")
        return self.itm_head(image_tokens, text_tokens, text_token_mask)


def _as_tokens(image_tokens: torch.Tensor) -> torch.Tensor:
    """``[B, I, C]`` tokens from a ``[B, C, h, w]`` feature map (one token per position) or tokens as they are."""
    return image_tokens.flatten(2).transpose(1, 2) if image_tokens.ndim == 4 else image_tokens
