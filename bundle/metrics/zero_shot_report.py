"""The evaluation report: zero-shot classification (thresholds from validation, metrics on test) and
image-text retrieval on test, written to one JSON with a ROC plot and printed as tables."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks import eval_mode
from torch import nn

from ..engines.zero_shot import stack_outputs
from ..io import write_json_atomic
from ..knowledge.base import KnowledgeBase
from ..tables import ABNORMAL_AUC, LINEAR_PROBE_AUC, format_retrieval_table, format_table
from .classification import classification_metrics, column_aucs, max_f1_thresholds, plot_roc_curves
from .retrieval import (
    RELEVANCE_RULE,
    chance_recall_at_k,
    mean_text_embedding,
    recall_at_k,
    relevance_from_labels,
    rerank_top_k,
)

CONFIDENCE = 0.95
BOOTSTRAP_METHOD = ("percentile interval; test images resampled with replacement, the same resamples for every "
                    "category; resamples without both classes of a category are dropped for it")  # fmt: skip


def finite_mean(values: np.ndarray) -> float:
    """The mean of the finite values (NaN when there are none): a group's macro AUC skips categories without one."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def bootstrap_auc_intervals(
    scores: np.ndarray, labels: np.ndarray, resamples: int = 1000, seed: int = 0, confidence: float = CONFIDENCE
) -> np.ndarray:
    """Percentile bootstrap intervals of each column's ROC AUC, ``[C, 2]`` (NaN for a column without both classes).

    Each resample draws N images with replacement (seeded; the same draws for every column, so the
    intervals of two categories come from the same resampled test sets). A resample is a weight per
    image, and the AUC is the Mann-Whitney statistic over the sorted scores (ties count one half),
    so no resampled array is ever built. Resamples without both classes are dropped for that column.
    """
    if resamples < 1:
        raise ValueError(f"bootstrap resamples must be at least 1, got {resamples}")
    count, columns = labels.shape
    weights = np.random.default_rng(seed).multinomial(count, np.full(count, 1.0 / count), size=resamples)
    weights = weights.astype(np.int32)  # counts up to N: half the memory of int64 on large test sets
    intervals = np.full((columns, 2), np.nan)
    tail = 100 * (1 - confidence) / 2
    for column in range(columns):
        positive = labels[:, column] > 0
        if positive.all() or not positive.any():
            continue
        order = np.argsort(scores[:, column], kind="stable")
        ordered = scores[order, column]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # one group per distinct score
        aucs = [_weighted_aucs(weights[chunk:chunk + 100][:, order], positive[order], starts)
                for chunk in range(0, resamples, 100)]  # fmt: skip
        intervals[column] = np.percentile(np.concatenate(aucs), [tail, 100 - tail])
    return intervals


def _weighted_aucs(drawn: np.ndarray, positive: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The AUC of each row of image weights ``drawn`` ``[R, N]`` (images sorted by score; ``starts`` opens
    each run of equal scores); rows without both classes are left out."""
    positives = np.add.reduceat(drawn * positive, starts, axis=1).astype(np.float64)
    negatives = np.add.reduceat(drawn * ~positive, starts, axis=1).astype(np.float64)
    below = np.cumsum(negatives, axis=1) - negatives
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    valid = pairs > 0
    return (positives * (below + 0.5 * negatives)).sum(axis=1)[valid] / pairs[valid]


def single_class_categories(labels: np.ndarray, categories: Sequence[str]) -> dict[str, str]:
    """Category -> why it cannot be scored: ``no positive`` / ``no negative`` in the labels."""
    positives = labels.sum(axis=0)
    return {category: "no positive" if positives[c] == 0 else "no negative"
            for c, category in enumerate(categories) if positives[c] in (0, len(labels))}  # fmt: skip


def _pad_cat(tensors: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
    """Concatenate along dim 0 after zero-padding dimension ``dim`` to the longest (ITM text lengths differ per batch)."""
    length = max(t.shape[dim] for t in tensors)
    padded = [F.pad(t, [0, 0] * (t.ndim - 1 - dim) + [0, length - t.shape[dim]]) for t in tensors]
    return torch.cat(padded)


def itm_pair_scorer(
    network: nn.Module,
    image_tokens: torch.Tensor,
    text_tokens: torch.Tensor,
    text_token_mask: torch.Tensor,
    batch_size: int = 256,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``score(image_index [P], study_index [P]) -> [P]``: the mean ITM logit of each image with a study's texts.

    Args:
        network: a ``MedFILIP`` with an ITM head (``match_logits``).
        image_tokens: ``[N, I, C]`` image tokens of the N images.
        text_tokens: ``[N, T, L, W]`` token states of the T text slots of the N studies.
        text_token_mask: ``[N, T, L]`` True on real tokens; an all-False slot is empty and skipped.
        batch_size: (image, text) pairs fused per call of the head.
    """
    device = next(network.parameters()).device

    def score(image_index: torch.Tensor, study_index: torch.Tensor) -> torch.Tensor:
        image_index, study_index = image_index.cpu(), study_index.cpu()
        mask = text_token_mask[study_index]
        pair, slot = mask.any(dim=-1).nonzero(as_tuple=True)
        logits = []
        with eval_mode(network):
            for start in range(0, len(pair), batch_size):
                p, t = pair[start:start + batch_size], slot[start:start + batch_size]
                logits.append(network.match_logits(
                    image_tokens[image_index[p]].to(device).float(),
                    text_tokens[study_index[p], t].to(device).float(),
                    mask[p, t].to(device),
                ).float().cpu())
        sums = torch.zeros(len(study_index)).index_add_(0, pair, torch.cat(logits))
        counts = torch.zeros(len(study_index)).index_add_(0, pair, torch.ones(len(pair)))
        return sums / counts.clamp(min=1.0)

    return score


def retrieval_report(
    outputs: Sequence[tuple[Mapping[str, torch.Tensor], torch.Tensor]],
    network: nn.Module,
    ks: Sequence[int] = (1, 5, 10),
    itm_top_k: int = 10,
    split: str = "test",
) -> dict[str, Any]:
    """Image-to-text and text-to-image Recall@K, and with an ITM head image-to-text re-ranked by ITM.

    Args:
        outputs: what ``EpochOutputStore`` collected from a SupervisedEvaluator run with
            ``decollate=False``: per iteration ``(pred, label)``, ``pred`` the network's output
            dict for B studies (``image_features`` ``[B, D]``, ``text_features`` ``[B*T, D]``
            with T text slots per study, zero rows empty; with an ITM head also ``image_tokens``
            ``[B, I, C]``, ``text_tokens`` ``[B*T, L', W]``, ``text_token_mask`` ``[B*T, L']``),
            ``label`` the ``[B, K]`` multi-hot positive categories that decide relevance.
        network: the evaluated network; ITM re-ranking runs when ``network.itm_head`` is not None.
        ks: the Recall@K cut-offs.
        itm_top_k: how many texts per image the ITM head re-ranks.
        split: the split's name, for the report.

    A study's text embedding is the normalised mean of its filled text slots (one slot for a
    report, several for finding texts). The ``itm_reranked`` block is absent without an ITM head.
    """
    if not outputs:
        raise ValueError("no retrieval outputs were collected: the evaluated split is empty")
    preds = [pred for pred, _ in outputs]
    batch, dim = preds[0]["image_features"].shape
    slots = preds[0]["text_features"].shape[0] // batch  # T text slots per study, the same in every batch
    labels = torch.cat([torch.as_tensor(label) for _, label in outputs])
    images = torch.cat([pred["image_features"].float() for pred in preds])
    texts = mean_text_embedding(torch.cat([pred["text_features"].float().view(-1, slots, dim) for pred in preds]))
    similarity = images @ texts.T
    relevance = relevance_from_labels(labels, labels)
    report: dict[str, Any] = {
        "split": split,
        "n_studies": len(labels),
        "relevance": RELEVANCE_RULE,
        "text_slots_per_study": int(slots),
        "image_to_text": _recall_keys(recall_at_k(similarity, relevance, ks)),
        "text_to_image": _recall_keys(recall_at_k(similarity.T, relevance.T, ks)),
        "chance": {"image_to_text": _recall_keys(chance_recall_at_k(relevance, ks)),
                   "text_to_image": _recall_keys(chance_recall_at_k(relevance.T, ks))},
    }
    model = getattr(network, "module", network)  # unwrap DistributedDataParallel
    if getattr(model, "itm_head", None) is None:
        return report
    if "image_tokens" not in preds[0]:
        raise ValueError("the network has an ITM head but the retrieval outputs carry no image_tokens/text_tokens")
    text_tokens = _pad_cat([p["text_tokens"].view(-1, slots, *p["text_tokens"].shape[1:]) for p in preds], dim=2)
    text_mask = _pad_cat([p["text_token_mask"].view(-1, slots, p["text_token_mask"].shape[-1]) for p in preds], dim=2)
    image_tokens = torch.cat([p["image_tokens"] for p in preds])
    reranked = rerank_top_k(similarity, itm_top_k, itm_pair_scorer(model, image_tokens, text_tokens, text_mask))
    report["itm_reranked"] = {"top_k": int(itm_top_k), "image_to_text": _recall_keys(recall_at_k(reranked, relevance, ks))}
    return report


def _recall_keys(recalls: Mapping[int, float]) -> dict[str, float]:
    return {f"recall@{k}": value for k, value in recalls.items()}


def preset_categories(knowledge_base: KnowledgeBase, list_name: str, datalist: Mapping[str, Any]) -> list[str]:
    """The categories of a zero-shot preset: the knowledge base's list ``list_name``.

    Categories of the list that the datalist lacks stay in (they have no positive, so the report
    skips and lists them).

    Raises:
        ValueError: the knowledge base has no such list, or the datalist names none of its categories
            (the preset is run on another collection's datalist).
    """
    categories = knowledge_base.ids_in_list(list_name)
    if not categories:
        raise ValueError(f"the knowledge base ({knowledge_base.source}) has no category in the list {list_name!r}")
    if not set(categories) & set(datalist.get("categories", [])):
        raise ValueError(
            f"the datalist {datalist.get('name', '')!r} names none of the {list_name} categories ({', '.join(categories)}); "
            "pass --dataset_dir of a datalist prepared for this preset (docs/evaluation.md, Presets)"
        )
    return categories


def zero_shot_report(
    validation_outputs: Sequence[Any],
    test_outputs: Sequence[Any],
    categories: Sequence[str],
    unseen_categories: Sequence[str],
    output_dir: str | Path,
    retrieval: Mapping[str, Any] | None = None,
    bootstrap_resamples: int = 1000,
    bootstrap_seed: int = 0,
    rarest: Mapping[str, int] | None = None,
    linear_probe: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Score the test split with per-category thresholds chosen on the validation split.

    Args:
        validation_outputs, test_outputs: what ``EpochOutputStore`` collected on each split
            (``(pred, label)`` per iteration, columns in ``categories`` order).
        categories: the scored category ids.
        unseen_categories: the ones held out of training; reported in their own group.
        output_dir: where ``zero_shot_metrics.json`` and ``zero_shot_roc.png`` go.
        retrieval: a :func:`retrieval_report`, stored under ``"retrieval"`` in the same JSON.
        bootstrap_resamples, bootstrap_seed: the AUC's 95 % interval per category
            (:func:`bootstrap_auc_intervals`).
        rarest: extra groups of the rarest scored categories, ``{group name: how many}`` (PadChest's
            ``padchest20``): the categories with the fewest test positives (ties by name).
        linear_probe: a :func:`~bundle.metrics.linear_probe.linear_probe_report` of the same test
            split: ``auc_linear_probe`` for each category it could score and each group's macro mean
            over those (absent where it scored none).

    Categories with no validation positive (the unseen ones, by construction) get the mean of the
    other categories' validation thresholds (``max_f1_thresholds``). A category without a positive
    or without a negative in test has no AUC: it is left out of every group and mean, and listed
    under ``"skipped"`` with the reason.

    Each category also gets ``auc_abnormal_studies``: its AUC over the test studies with at least one
    scored finding (the normal studies left out), and each group its macro mean. Normal studies are
    easy negatives for any finding prompt, so a score that only tells abnormal from normal still
    earns an AUC well above 0.5, even for a name the text tower never learned (the no-IKI ablation
    does on the held-out categories); among abnormal studies the negatives carry other findings, so
    this AUC asks which finding the study has.
    """
    val_scores, val_labels = stack_outputs(validation_outputs)
    test_scores, test_labels = stack_outputs(test_outputs)
    thresholds = max_f1_thresholds(val_scores, val_labels)
    skipped = single_class_categories(test_labels, categories)
    intervals = bootstrap_auc_intervals(test_scores, test_labels, bootstrap_resamples, bootstrap_seed)
    report: dict[str, Any] = {
        "thresholds_from": "validation", "n_validation": len(val_scores), "n_test": len(test_scores),
        "bootstrap": {"resamples": bootstrap_resamples, "seed": bootstrap_seed, "confidence": CONFIDENCE,
                      "method": BOOTSTRAP_METHOD},
        "skipped": {category: f"{reason} in test" for category, reason in skipped.items()},
    }  # fmt: skip
    scored = [c for c in categories if c not in skipped]
    groups = {"seen": [c for c in scored if c not in unseen_categories], "unseen": [c for c in scored if c in unseen_categories]}
    positives = test_labels.sum(axis=0)
    abnormal = test_labels[:, [categories.index(c) for c in scored]].max(axis=1, initial=0) > 0
    report["n_test_abnormal"] = int(abnormal.sum())
    abnormal_aucs = column_aucs(test_scores[abnormal], test_labels[abnormal])
    for name, size in (rarest or {}).items():
        groups[name] = sorted(scored, key=lambda c: (positives[categories.index(c)], c))[:size]
    tables = []
    for group, members in groups.items():
        if not members:
            continue
        columns = [categories.index(c) for c in members]
        results: dict[str, dict[str, Any]] = classification_metrics(
            test_scores[:, columns], test_labels[:, columns], thresholds[columns], members
        )
        for category, column in zip(members, columns):
            results[category]["auc_ci95"] = [float(bound) for bound in intervals[column]]
            results[category][ABNORMAL_AUC] = float(abnormal_aucs[column])
        results["macro"][ABNORMAL_AUC] = finite_mean(abnormal_aucs[columns])
        probed = {c: float(linear_probe[c]) for c in members if math.isfinite(linear_probe[c])} if linear_probe else {}
        for category, auc in probed.items():  # a category too rare for the probe's folds gets no entry, never a NaN
            results[category][LINEAR_PROBE_AUC] = auc
        if probed:
            results["macro"][LINEAR_PROBE_AUC] = float(np.mean(list(probed.values())))
        report[group] = results
        tables.append(format_table(results, f"Zero-shot classification, {group} categories (test split)"))
    if skipped:
        tables.append("Skipped (no AUC on the test split): " + ", ".join(f"{c} ({r})" for c, r in report["skipped"].items()))
    if retrieval is not None:
        report["retrieval"] = dict(retrieval)
        tables.append(format_retrieval_table(retrieval))
    output_dir = Path(output_dir)
    write_json_atomic(output_dir / "zero_shot_metrics.json", report)
    plot_roc_curves(test_scores, test_labels, list(categories), output_dir / "zero_shot_roc.png",
                    title="Zero-shot ROC on the test split")
    report["table"] = "\n\n".join(tables)
    print(report["table"], flush=True)
    return report
