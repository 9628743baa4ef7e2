"""2D segmentation on the bundle's vision tower: the pre-trained encoder, a MONAI UNet decoder.

``VisionTowerEncoder`` takes the open_clip vision tower of a ``clip_def`` (the same tower the
vision-language pre-training trained), optionally loads its weights from a pre-training
checkpoint and freezes it, and returns the outputs of named tower layers as feature maps
(read with forward hooks, as ``MedFILIP`` reads its ITM tokens, so any open_clip tower works:
a CNN's stages, or a ViT's blocks whose patch tokens are laid back onto their grid).
``VisionTowerUNet`` lifts those maps to a pyramid of strides halving towards the input
(MONAI's ``UnetrPrUpBlock`` where a map is coarser than its level, as UNETR does for ViT
tokens) and decodes them with MONAI's ``UNetDecoder`` and ``SegmentationHead`` (FlexibleUNet's
decoder), returning per-class logits at the input's height and width.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import open_clip
import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetrPrUpBlock
from monai.networks.nets.flexible_unet import SegmentationHead, UNetDecoder
from torch import nn

from bundle.engines.pretrained import load_pretrained_tower
from bundle.networks.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

class VisionTowerEncoder(nn.Module):
    """The vision tower of an open_clip CLIP as a multi-scale feature extractor.

    Args:
        clip: an open_clip ``CLIP`` (``build_open_clip``, the pre-training's ``clip_def``); only
            its vision tower is kept.
        layers: dotted names (below ``clip.visual``) of the modules whose outputs are the
            features, shallow to deep: ``[B, C, h, w]`` maps (e.g. ``trunk.act1`` ...
            ``trunk.layer4`` of timm ResNets) or ``[B, L, C]`` ViT tokens (e.g.
            ``transformer.resblocks.1``), whose leading class/register tokens are dropped.
        weights: a checkpoint to load the tower from (see ``bundle.engines.pretrained``), or None to
            keep ``clip``'s weights (random, or open_clip's ``pretrained``).
        freeze: keep the tower's weights and normalisation statistics fixed (no gradients,
            always in eval mode).
        image_mean, image_std: the normalisation the tower was trained with (as ``ChestXRayCLIP``).

    ``forward(image [B, 1, H, W] in [0, 1])`` returns one ``[B, C_i, H / s_i, W / s_i]`` map per
    layer; ``channels`` and ``strides`` list C_i and s_i. Towers with positional embeddings
    (``fixed_size``) take only their own ``image_size``; others any size divisible by the
    deepest stride (``VisionTowerUNet`` fits the input for both).

    Raises:
        ValueError: a layer name that is not a module of the tower, or an output that is not a
            feature map or token sequence.
        CheckpointError: ``weights`` cannot be loaded, or does not fit this tower.
    """

    def __init__(
        self,
        clip: open_clip.CLIP,
        layers: Sequence[str],
        weights: str | None = None,
        freeze: bool = False,
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
    ) -> None:
        super().__init__()
        if not layers:
            raise ValueError("give at least one encoder layer (e.g. 'trunk.layer4' or 'transformer')")
        self.visual = clip.visual
        self.layers = tuple(layers)
        self.register_buffer("image_mean", torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1))
        self._captured: dict[str, torch.Tensor] = {}
        for name in dict.fromkeys(self.layers):
            try:
                module = self.visual.get_submodule(name)
            except AttributeError:
                raise ValueError(
                    f"encoder layer {name!r} is not a module of the vision tower ({type(self.visual).__name__}); "
                    "name its stages, e.g. 'trunk.layer1'...'trunk.layer4' (timm), 'layer1'...'layer4' (open_clip "
                    "RN50) or 'transformer.resblocks.<i>' (ViT)"
                ) from None
            # a partial of a bound method, not a closure: copy.deepcopy (MONAI Label copies the network per
            # device) maps it to the copy, whose hooks then fill the copy's own _captured
            module.register_forward_hook(functools.partial(self._capture, name))
        if weights:
            load_pretrained_tower(self.visual, weights, setting="encoder_weights", random_value="random",
                                  configs="configs/train_segmentation.json")
        size = self.visual.image_size
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.channels, self.strides, self.fixed_size = self._probe()
        self.frozen = freeze
        if freeze:
            self.visual.requires_grad_(False)
            self.visual.eval()

    def _capture(self, name: str, module: nn.Module, inputs: object, output: Any) -> None:
        self._captured[name] = output[0] if isinstance(output, tuple) else output

    @torch.no_grad()
    def _probe(self) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
        """Channels and strides of each layer, from one forward pass at the tower's own size."""
        was_training = self.visual.training
        self.visual.eval()
        maps = self._features(torch.zeros(1, 1, *self.image_size))
        self.visual.train(was_training)
        fixed_size = any(self._captured[name].ndim == 3 for name in self.layers)
        strides = tuple(self.image_size[0] // feature.shape[-2] for feature in maps)
        return tuple(feature.shape[1] for feature in maps), strides, fixed_size

    def _token_grid(self) -> tuple[int, int]:
        grid = getattr(self.visual, "grid_size", None) or self.visual.trunk.patch_embed.grid_size
        return tuple(grid)

    def _features(self, image: torch.Tensor) -> list[torch.Tensor]:
        self._captured.clear()
        image = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
        self.visual((image - self.image_mean) / self.image_std)
        maps = []
        for name in self.layers:
            feature = self._captured[name]
            if feature.ndim == 3:  # ViT tokens [B, L, C]: the patch tokens come last, in raster order
                rows, cols = self._token_grid()
                feature = feature[:, -rows * cols:].transpose(1, 2).reshape(feature.shape[0], -1, rows, cols)
            elif feature.ndim != 4:
                raise ValueError(f"encoder layer {name!r} gives a tensor of shape {tuple(feature.shape)}, neither a "
                                 "feature map [B, C, h, w] nor tokens [B, L, C]")
            maps.append(feature)
        return maps

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self._features(image)

    def train(self, mode: bool = True) -> VisionTowerEncoder:
        super().train(mode)
        if self.frozen:  # batch-norm statistics are weights too
            self.visual.eval()
        return self


class VisionTowerUNet(nn.Module):
    """Per-class segmentation logits from a ``VisionTowerEncoder`` and a MONAI UNet decoder.

    Args:
        encoder: the vision tower encoder.
        out_channels: classes (one logit map each; sigmoid for one class or several
            overlapping ones).
        decoder_channels: channels of the decoder blocks, coarse to fine, one per encoder
            layer; None for 16 * 2**k (..., 64, 32, 16).
        norm, act: decoder normalisation and activation (MONAI names).

    The encoder maps become a pyramid whose level i has stride ``s_max / 2**(n-1-i)``: a map
    already there is used as it is (CNN stages), a coarser one is upsampled by transposed
    convolutions (ViT tokens, as in UNETR). Each decoder block doubles the resolution and
    concatenates the next level.

    ``forward(image [B, 1, H, W])`` takes any H, W: the input is padded to a multiple of the
    deepest stride (or resized to the tower's size for towers with positional embeddings), and
    the logits ``[B, out_channels, H, W]`` are cropped or resized back.
    """

    def __init__(
        self,
        encoder: VisionTowerEncoder,
        out_channels: int,
        decoder_channels: Sequence[int] | None = None,
        norm: str | tuple = "batch",
        act: str | tuple = ("relu", {"inplace": True}),
    ) -> None:
        super().__init__()
        levels = len(encoder.layers)
        if decoder_channels is None:
            decoder_channels = [16 * 2**k for k in reversed(range(levels))]
        if len(decoder_channels) != levels:
            raise ValueError(f"give one decoder channel count per encoder layer ({levels}), got {list(decoder_channels)}")
        if out_channels < 1:
            raise ValueError(f"out_channels must be at least 1, got {out_channels}")
        self.encoder = encoder
        deepest = max(encoder.strides)
        targets = [deepest // 2 ** (levels - 1 - i) for i in range(levels)]
        self.lifts = nn.ModuleList()
        pyramid_channels = []
        for i, (channels, stride, target) in enumerate(zip(encoder.channels, encoder.strides, targets)):
            factor = stride // max(target, 1)
            if target < 1 or stride % target or factor & (factor - 1):
                raise ValueError(
                    f"encoder layers {list(encoder.layers)} have strides {list(encoder.strides)}: list them shallow to "
                    "deep, each at most half as fine as the next (CNN stages), or all at one stride (ViT blocks)"
                )
            if factor == 1:
                self.lifts.append(nn.Identity())
                pyramid_channels.append(channels)
                continue
            width = decoder_channels[levels - 1 - i]
            self.lifts.append(UnetrPrUpBlock(spatial_dims=2, in_channels=channels, out_channels=width,
                                             num_layer=int(math.log2(factor)) - 1, kernel_size=3, stride=1,
                                             upsample_kernel_size=2, norm_name=norm, conv_block=True,
                                             res_block=True))
            pyramid_channels.append(width)
        self.decoder = UNetDecoder(spatial_dims=2, encoder_channels=[1, *pyramid_channels],
                                   decoder_channels=list(decoder_channels), act=act, norm=norm, dropout=0.0,
                                   bias=False, upsample="deconv", pre_conv="default", interp_mode="nearest",
                                   align_corners=None, is_pad=True)
        self.head = SegmentationHead(spatial_dims=2, in_channels=decoder_channels[-1], out_channels=out_channels,
                                     kernel_size=3)
        self.size_divisor = deepest

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] not in (1, 3):
            raise ValueError(f"expected images of shape [B, 1, H, W], got {tuple(image.shape)}")
        height, width = image.shape[-2:]
        if self.encoder.fixed_size:
            fitted = F.interpolate(image, size=self.encoder.image_size, mode="bilinear", align_corners=False)
        else:
            fitted = F.pad(image, (0, -width % self.size_divisor, 0, -height % self.size_divisor))
        pyramid = [lift(feature) for lift, feature in zip(self.lifts, self.encoder(fitted))]
        # UNetDecoder never reads its first entry (the input level has no skip connection)
        logits = self.head(self.decoder([fitted, *pyramid], skip_connect=len(pyramid) - 1))
        if logits.shape[-2:] != fitted.shape[-2:]:
            logits = F.interpolate(logits, size=fitted.shape[-2:], mode="bilinear", align_corners=False)
        if self.encoder.fixed_size:
            return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        return logits[..., :height, :width]
