"""Batches for findings-driven training: texts to the network, structured findings to the loss."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from monai.engines.utils import PrepareBatch

TARGET_KEYS = ("findings_code", "text_code", "text_attributes")


class PrepareFindingsBatch(PrepareBatch):
    """``(image, targets, (text,), {})`` for MONAI's ``SupervisedTrainer``.

    The network gets the image and the ``[B, T, L]`` finding-text tokens; the loss gets a dict of
    the structured targets (``findings_code``, ``text_code``, ``text_attributes``), which the
    SSM turns into soft targets. MONAI's ``PrepareBatchExtraInput`` passes extra inputs to the
    network only and reads the target from the single ``label`` key, hence this class.

    Args:
        text_key: the batch key of the text tokens.
        target_keys: the batch keys gathered into the target dict.
    """

    def __init__(self, text_key: str = "text", target_keys: Sequence[str] = TARGET_KEYS) -> None:
        self.text_key = text_key
        self.target_keys = tuple(target_keys)

    def __call__(
        self, batchdata: dict[str, Any], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple, dict]:
        missing = [k for k in ("image", self.text_key, *self.target_keys) if k not in batchdata]
        if missing:
            raise KeyError(
                f"the batch lacks {missing}: the training transforms must produce them "
                "(EncodeFindingsd, ComposeFindingTextsd, TokenizeTextd; see configs/train.json)"
            )

        def move(value: torch.Tensor) -> torch.Tensor:
            return value.to(device=device, non_blocking=non_blocking, **kwargs)

        targets = {key: move(batchdata[key]) for key in self.target_keys}
        return move(batchdata["image"]), targets, (move(batchdata[self.text_key]),), {}
