"""Which findings a synthetic study has: categories, compatible locations, severities, presence."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...findings import Presence
from .recipes import CATEGORY_RECIPES, FindingSpec

FINDING_COUNTS = (1, 2, 3)
FINDING_COUNT_PROBABILITIES = (0.5, 0.33, 0.17)
LOCATION_TRIES = 12


def sample_findings(
    rng: np.random.Generator,
    categories: Sequence[str] | None = None,
    normal_fraction: float = 0.25,
    uncertain_fraction: float = 0.12,
    required: Sequence[str] = (),
    keep: Sequence[FindingSpec] = (),
) -> list[FindingSpec]:
    """Sample the drawn findings of one study.

    Args:
        rng: the study's sampling generator.
        categories: categories that may be drawn (default: all of ``CATEGORY_RECIPES``).
        normal_fraction: share of studies with no finding (unless something is required or kept).
        uncertain_fraction: share of hedgeable findings that are uncertain (drawn faint).
        required: categories that must be drawn (e.g. a held-out category in the test split).
        keep: findings carried over from the patient's previous study, kept as they are.

    Two findings never share a zone of the same lung, so lesions do not hide each other;
    a category that finds no free place is dropped.
    """
    categories = list(CATEGORY_RECIPES if categories is None else categories)
    unknown = set(categories) - set(CATEGORY_RECIPES)
    if unknown:
        raise ValueError(f"SynthCXR cannot draw {sorted(unknown)}; it draws {sorted(CATEGORY_RECIPES)}")
    specs = list(keep)
    if not required and not keep and rng.random() < normal_fraction:
        return specs
    count = max(int(rng.choice(FINDING_COUNTS, p=FINDING_COUNT_PROBABILITIES)), len(required) + len(keep))
    taken = {spec.category for spec in specs}
    optional = [c for c in categories if c not in taken and c not in required]
    extra = max(count - len(specs) - len(required), 0)
    chosen = [c for c in required if c not in taken] + [str(c) for c in rng.permutation(optional)[:extra]]
    occupied = {(side, spec.zone) for spec in specs for side in spec.sides}
    for category in chosen:
        spec = _place(category, rng, occupied, uncertain_fraction)
        if spec is not None:
            specs.append(spec)
            occupied.update((side, spec.zone) for side in spec.sides)
    return specs


def _place(
    category: str, rng: np.random.Generator, occupied: set[tuple[str, str | None]], uncertain_fraction: float
) -> FindingSpec | None:
    recipe = CATEGORY_RECIPES[category]
    presence = Presence.PRESENT
    severities = list(recipe.severities)
    if recipe.can_be_uncertain and rng.random() < uncertain_fraction:
        presence = Presence.UNCERTAIN
        # a hedged finding is a subtle one
        severities = [s for s in severities if s in ("minimal", "mild")] or severities[:1]
    severity = str(rng.choice(severities)) if severities else None
    for _ in range(LOCATION_TRIES):
        laterality = str(rng.choice(recipe.lateralities)) if recipe.lateralities else None
        zone = str(rng.choice(recipe.zones)) if recipe.zones else None
        spec = FindingSpec(category, laterality, zone, severity, presence)
        if not any((side, zone) in occupied for side in spec.sides):
            return spec
    return None
