"""MedFILIP's losses: soft-target contrastive learning on the SSM targets, and ITM with hard negatives.

``MedFILIPLoss`` is what the trainer calls: ``loss(pred, target)`` with the network's output
dict (``bundle.networks.MedFILIP``) and the batch's structured targets (findings codes, text
codes and kept attributes, see ``bundle.engines.PrepareFindingsBatch``). It computes the SSM
targets, the symmetric soft contrastive loss, and, with an ITM head, mines hard negatives from
the batch and trains the head on them.

open_clip's ``ClipLoss`` assumes one positive per row (the diagonal); the SSM gives many soft
positives and some pairs of unknown truth, which no ecosystem loss takes, hence these classes.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from bundle.losses.ssm import SemanticSimilarityMatrix

CONTRASTIVE_FORMS = ("soft_infonce", "mse_bce")
_EXCLUDED_LOGIT = -1.0e4  # finite, so that 0 * log-probability stays 0 for excluded pairs


class SoftTargetContrastiveLoss(nn.Module):
    """Contrastive loss against soft targets, over the pairs with weight > 0.

    Args:
        form: ``"soft_infonce"`` (default): cross-entropy between the softmax over each image's
            texts and its normalised targets, and the same over each text's images, averaged
            (rows or columns without any positive target are skipped). ``"mse_bce"``: MedFILIP's
            released form, ``MSE(logits, targets) + BCEWithLogits(logits, targets)`` on the
            scaled logits, image-to-text only.
        min_temperature, max_temperature: bounds of the learnable temperature; the network's
            ``logit_scale`` (1 / temperature) is clamped into ``[1/max, 1/min]`` here, so it
            gets no gradient while outside.

    ``forward(similarity [B, N], logit_scale, targets [B, N], weights [B, N])``: cosine
    similarities, the scale, SSM targets in [0, 1] and pair weights (0 excludes a pair).
    """

    def __init__(self, form: str = "soft_infonce", min_temperature: float = 0.01, max_temperature: float = 1.0) -> None:
        super().__init__()
        if form not in CONTRASTIVE_FORMS:
            raise ValueError(f"form must be one of {CONTRASTIVE_FORMS}, got {form!r}")
        if not 0.0 < min_temperature <= max_temperature:
            raise ValueError(f"need 0 < min_temperature <= max_temperature, got {min_temperature}, {max_temperature}")
        self.form = form
        self.min_scale, self.max_scale = 1.0 / max_temperature, 1.0 / min_temperature

    def scale(self, logit_scale: torch.Tensor) -> torch.Tensor:
        return logit_scale.clamp(self.min_scale, self.max_scale)

    def forward(
        self, similarity: torch.Tensor, logit_scale: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        if not similarity.shape == targets.shape == weights.shape:
            raise ValueError(
                f"similarity {tuple(similarity.shape)}, targets {tuple(targets.shape)} and weights "
                f"{tuple(weights.shape)} must have the same [B, N] shape"
            )
        logits = self.scale(logit_scale) * similarity.float()
        included = weights > 0
        if self.form == "mse_bce":
            per_pair = (logits - targets) ** 2 + F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            return (per_pair * weights).sum() / weights.sum().clamp(min=1.0)
        logits = logits.masked_fill(~included, _EXCLUDED_LOGIT)
        soft = targets * weights
        return 0.5 * (_soft_cross_entropy(logits, soft) + _soft_cross_entropy(logits.t(), soft.t()))


def _soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows with some target mass of ``-sum(q * log_softmax(logits))``, q the row-normalised targets."""
    mass = soft_targets.sum(dim=1)
    rows = mass > 0
    if not rows.any():
        return logits.sum() * 0.0
    q = soft_targets[rows] / mass[rows, None]
    return -(q * logits[rows].log_softmax(dim=1)).sum(dim=1).mean()


def patch_sentence_similarity(
    patch_features: torch.Tensor, text_features: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """``[B, N]``: each text's cosine with the image patches it attends to (MLIP's patch-sentence matching).

    For image ``i`` and text ``j`` the patches are weighted by ``softmax_p(cos(patch_ip, text_j) /
    temperature)``, so a finding text is compared with the region that shows it rather than with
    the whole image's average; a small temperature approaches the best patch (FILIP's max), a
    large one the mean. MLIP aligns sentences and patches with optimal transport; with one short
    finding text per slot the attention-weighted cosine is the one-to-many case of it, and no
    ecosystem loss computes it.

    Args:
        patch_features: ``[B, P, D]`` L2-normalised patch embeddings (``MedFILIP``'s ``patch_features``).
        text_features: ``[N, D]`` L2-normalised text embeddings (zero rows for empty slots score 0).
        temperature: sharpness of the attention over patches.
    """
    if patch_features.ndim != 3 or patch_features.shape[-1] != text_features.shape[-1]:
        raise ValueError(
            f"patch features {tuple(patch_features.shape)} must be [B, P, D] with D = the text features' "
            f"{text_features.shape[-1]}"
        )
    cosine = torch.einsum("bpd,nd->bpn", patch_features.float(), text_features.float())
    attention = (cosine / temperature).softmax(dim=1)
    return (attention * cosine).sum(dim=1)


def mine_itm_pairs(
    similarity: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    texts_per_image: int,
    negative_threshold: float = 0.2,
    max_positives: int | None = None,
    temperature: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs ``(image_index [P], text_index [P])`` for ITM: positives and hard negatives from the batch.

    Positives are each text with its own image (text ``j`` belongs to image ``j // texts_per_image``),
    at most ``max_positives`` of them, drawn at random. For each positive, one hard negative
    image for its text and one hard negative text for its image are drawn among the pairs whose
    SSM target is below ``negative_threshold`` (and whose weight is not 0), with probability
    ``softmax(similarity / temperature)``: similar in embedding space, different in findings.
    """
    num_images, num_texts = similarity.shape
    owners = torch.arange(num_texts, device=similarity.device) // texts_per_image
    valid = weights[owners, torch.arange(num_texts, device=similarity.device)] > 0
    positive_texts = valid.nonzero().squeeze(1)
    if max_positives is not None and positive_texts.numel() > max_positives:
        order = torch.randperm(positive_texts.numel(), generator=generator, device="cpu")[:max_positives]
        positive_texts = positive_texts[order.to(positive_texts.device)]
    positive_images = owners[positive_texts]
    candidates = (targets < negative_threshold) & (weights > 0)
    logits = (similarity / temperature).masked_fill(~candidates, float("-inf"))

    image_rows = [positive_images]
    text_rows = [positive_texts]
    # a hard negative image for each positive text (columns of the matrix)
    column_logits = logits[:, positive_texts].t()
    usable = candidates[:, positive_texts].t().any(dim=1)
    if usable.any():
        picks = torch.multinomial(column_logits[usable].softmax(dim=1), 1, generator=generator).squeeze(1)
        image_rows.append(picks)
        text_rows.append(positive_texts[usable])
    # a hard negative text for each positive's image (rows of the matrix)
    row_logits = logits[positive_images]
    usable = candidates[positive_images].any(dim=1)
    if usable.any():
        picks = torch.multinomial(row_logits[usable].softmax(dim=1), 1, generator=generator).squeeze(1)
        image_rows.append(positive_images[usable])
        text_rows.append(picks)
    return torch.cat(image_rows), torch.cat(text_rows)


class MedFILIPLoss(nn.Module):
    """SSM targets -> soft contrastive loss (+ ITM on mined pairs), weighted.

    Args:
        ssm: computes targets and weights from the batch's structured findings.
        contrastive: the soft-target contrastive loss.
        itm_head: the network's ``ImageTextMatchingHead`` (None: no ITM term).
        contrastive_weight, itm_weight: the terms' weights.
        itm_negative_threshold: SSM target below which a pair may serve as a hard negative.
        itm_max_positives: positive pairs per step (each brings up to two negatives); None: all texts.
        itm_sampling_temperature: sharpness of hard-negative sampling over cosine similarities.
        itm_trains_towers: whether the ITM term's gradient reaches the image and text towers. With
            False the head learns on detached token states: on SynthCXR's demo budget the ITM
            gradient in the towers cost 0.04 validation AUC (docs/method.md), while the head
            still learns to re-rank.
        patch_weight: weight of the patch-sentence term, the same soft contrastive loss on
            :func:`patch_sentence_similarity` (needs the network's ``patch_features``); 0: off.
        patch_temperature: sharpness of the attention over patches in that term.

    ``forward(pred, target)``: ``pred`` from ``bundle.networks.MedFILIP``; ``target`` a dict
    with ``findings_code`` ``[B, F, 5]``, ``text_code`` ``[B, T, 6]``, ``text_attributes``
    ``[B, T, V]`` and, for the SSM's sentence-embedding blend, ``text_embeddings`` ``[B, T, E]``.
    The terms of the last call are kept in ``last_terms`` for logging.
    """

    def __init__(
        self,
        ssm: SemanticSimilarityMatrix,
        contrastive: SoftTargetContrastiveLoss,
        itm_head: nn.Module | None = None,
        contrastive_weight: float = 1.0,
        itm_weight: float = 1.0,
        itm_negative_threshold: float = 0.2,
        itm_max_positives: int | None = None,
        itm_sampling_temperature: float = 0.1,
        itm_trains_towers: bool = True,
        patch_weight: float = 0.0,
        patch_temperature: float = 0.1,
    ) -> None:
        super().__init__()
        self.ssm = ssm
        self.contrastive = contrastive
        self.itm_head = itm_head
        self.contrastive_weight = float(contrastive_weight)
        self.itm_weight = float(itm_weight) if itm_head is not None else 0.0
        self.itm_negative_threshold = float(itm_negative_threshold)
        self.itm_max_positives = itm_max_positives
        self.itm_sampling_temperature = float(itm_sampling_temperature)
        self.itm_trains_towers = bool(itm_trains_towers)
        self.patch_weight = float(patch_weight)
        self.patch_temperature = float(patch_temperature)
        self.last_terms: dict[str, float] = {}

    def forward(self, pred: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> torch.Tensor:
        for key in ("findings_code", "text_code", "text_attributes"):
            if key not in target:
                raise KeyError(f"MedFILIPLoss needs the batch's '{key}' (see bundle.engines.PrepareFindingsBatch)")
        targets, weights = self.ssm(
            target["findings_code"], target["text_code"], target["text_attributes"], target.get("text_embeddings")
        )
        similarity = self.pooled_similarity(pred)
        contrastive = self.contrastive(similarity, pred["logit_scale"], targets, weights)
        total = self.contrastive_weight * contrastive
        self.last_terms = {"contrastive": float(contrastive.detach())}
        if self.patch_weight > 0:
            patch = self.patch_loss(pred, targets, weights)
            total = total + self.patch_weight * patch
            self.last_terms["patch"] = float(patch.detach())
        if self.itm_weight > 0:
            itm = self.itm_loss(pred, similarity.detach(), targets, weights, target["text_code"].shape[1])
            total = total + self.itm_weight * itm
            self.last_terms["itm"] = float(itm.detach())
        return total

    @staticmethod
    def pooled_similarity(pred: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[B, B*T]`` cosines of the pooled image embeddings with every text of the batch."""
        return pred["image_features"].float() @ pred["text_features"].float().t()

    def patch_loss(
        self, pred: Mapping[str, torch.Tensor], targets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """The soft contrastive loss on each text's similarity with the image patches it attends to."""
        if "patch_features" not in pred:
            raise KeyError("patch_weight > 0 needs the network's 'patch_features': build MedFILIP with a patch_head")
        local = patch_sentence_similarity(pred["patch_features"], pred["text_features"], self.patch_temperature)
        return self.contrastive(local, pred["logit_scale"], targets, weights)

    def itm_loss(
        self,
        pred: Mapping[str, torch.Tensor],
        similarity: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor,
        texts_per_image: int,
    ) -> torch.Tensor:
        for key in ("image_tokens", "text_tokens", "text_token_mask"):
            if key not in pred:
                raise KeyError(f"the ITM term needs the network's '{key}': build MedFILIP with an itm_head")
        images, texts = mine_itm_pairs(
            similarity, targets, weights, texts_per_image, self.itm_negative_threshold,
            self.itm_max_positives, self.itm_sampling_temperature,
        )  # fmt: skip
        image_tokens, text_tokens = pred["image_tokens"], pred["text_tokens"]
        if not self.itm_trains_towers:
            image_tokens, text_tokens = image_tokens.detach(), text_tokens.detach()
        logits = self.itm_head(image_tokens[images], text_tokens[texts], pred["text_token_mask"][texts])
        return F.binary_cross_entropy_with_logits(logits.float(), targets[images, texts])
