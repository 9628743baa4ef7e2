"""Label fractions for fine-tuning: a deterministic patient-level subset of the training split.

``label_fraction_subset`` keeps whole patients (all their studies or none, so that no patient is
partly labelled), chosen in an order fixed by a hash of ``(seed, patient id)``: the same
datalist, fraction and seed give the same subset on every machine, whatever the datalist order,
and the patients a smaller fraction takes in that order are among those of a larger one.
Patients are added in that order until the subset holds ``ceil(fraction * items)`` items; then,
for each category that has a positive in the whole split but none in the subset, the next
patient with such a positive is added, so that every category that can be learned has at least
one positive example. What was added, and which categories have no positive at all, is logged.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any, Callable, Mapping, Sequence

import torch

from .errors import UserInputError

LOGGER = logging.getLogger(__name__)
Labeller = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def patient_of(item: Mapping[str, Any]) -> str:
    """An item's patient: ``patient_id``, else its study (``study_id``), else its image (one study per patient)."""
    return str(item.get("patient_id") or item.get("study_id") or item["image"])


def positives(items: Sequence[Mapping[str, Any]], labeller: Labeller, label_key: str = "label") -> torch.Tensor:
    """``[N, C]`` boolean: item n is positive for category c (label above 0, e.g. by ``FindingsToLabelsd``)."""
    if not items:
        return torch.zeros(0, 0, dtype=torch.bool)
    return torch.stack([torch.as_tensor(labeller(dict(item))[label_key]) > 0 for item in items])


def positive_counts(items: Sequence[Mapping[str, Any]], labeller: Labeller) -> list[int]:
    """Positive items per category (the columns of ``labeller``'s label vector)."""
    return positives(items, labeller).sum(dim=0).tolist()


def label_fraction_subset(
    items: Sequence[Mapping[str, Any]],
    fraction: float,
    labeller: Labeller,
    categories: Sequence[str],
    seed: int = 0,
) -> list[Mapping[str, Any]]:
    """The labelled training items for ``fraction`` of the split, whole patients, in datalist order.

    Args:
        items: the training split's items.
        fraction: in ``(0, 1]``; 1 keeps every item.
        labeller: turns an item into its label vector under ``"label"`` (the config's ``FindingsToLabelsd``).
        categories: the label vector's category ids, for the log.
        seed: fixes the patient order (see the module docstring).

    Raises:
        UserInputError: ``fraction`` outside ``(0, 1]``.
    """
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        fraction = math.nan
    if not 0.0 < fraction <= 1.0:
        raise UserInputError(
            f"label_fraction must be above 0 and at most 1, got {fraction!r}. Fix: pass --label_fraction 0.01, 0.1 "
            "or 1.0, or layer configs/finetune_1pct.json or configs/finetune_10pct.json"
        )
    is_positive = positives(items, labeller)
    without = [c for c, found in zip(categories, is_positive.any(dim=0).tolist()) if not found]
    if without:
        LOGGER.info(f"No training item is positive for {', '.join(without)}: their outputs are not trained")
    if fraction == 1.0:
        LOGGER.info(f"label_fraction 1: all {len(items)} training items are labelled")
        return list(items)

    members: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        members.setdefault(patient_of(item), []).append(index)
    order = sorted(members, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    target = math.ceil(fraction * len(items))
    chosen: list[str] = []
    count = 0
    for patient in order:
        if count >= target:
            break
        chosen.append(patient)
        count += len(members[patient])

    added: list[str] = []
    for c, category in enumerate(categories):
        selected = [i for p in chosen for i in members[p]]
        if category in without or is_positive[selected, c].any():
            continue
        patient = next(p for p in order if p not in chosen and is_positive[members[p], c].any())
        chosen.append(patient)
        added.append(category)
    selected = sorted(i for p in chosen for i in members[p])
    LOGGER.info(
        f"label_fraction {fraction:g} (subset seed {seed}): {len(selected)} of {len(items)} training items labelled, "
        f"from {len(chosen)} of {len(members)} patients"
        + (f"; {len(added)} patient(s) added so that every category with a training positive has one "
           f"({', '.join(added)})" if added else "")
    )
    return [items[i] for i in selected]
