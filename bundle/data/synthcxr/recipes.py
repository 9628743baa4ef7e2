"""Findings as compositions of shared visual attributes: the recipe table.

Every SynthCXR category is a recipe over the same small attribute vocabulary (density, shape,
size, zone, laterality, plus a few named signs), and the renderer draws a finding by drawing
its attributes, one primitive per shape and one effect per sign. A nodule and a mass differ
only in size; a cavity and a bulla are lucent round lesions with a thick or a thin wall; a
pneumothorax and pleural thickening are both a pleural line, lucent or opaque. That is what
lets a model that learnt the attributes on some categories recognise a held-out one from its
description. ``CATEGORY_RECIPES`` is plain data so that knowledge injection can read it.

Zones and lateralities are the knowledge base's normalised location terms, and severities
are its normalised severity terms (``bundle/knowledge/knowledge_base.yaml``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ...findings import Presence

DENSITIES = ("opaque", "lucent")
SHAPES = (
    "round",
    "linear band",
    "wedge",
    "patchy",
    "meniscus",
    "pleural line",
    "enlarged silhouette",
    "reticular",
)
SIZES = ("small", "medium", "large", "diffuse")
ZONES = ("apex", "upper zone", "mid zone", "lower zone", "base", "perihilar", "periphery")
LATERALITIES = ("left", "right", "bilateral")
SEVERITIES = ("minimal", "mild", "moderate", "severe")
SIGNS = (
    "blunted costophrenic angle",
    "absent lung markings",
    "air bronchograms",
    "volume loss",
    "septal lines",
    "hyperinflation",
    "thick wall",
    "thin wall",
    "calcified",
)


@dataclass(frozen=True)
class Recipe:
    """The visual attributes of one category and where it may be drawn.

    Args:
        density: ``opaque`` (adds attenuation, white) or ``lucent`` (removes it, black).
        shapes: the drawing primitives, composed (e.g. ``("reticular", "linear band")``).
        size: the size class; severity scales within it.
        zones: the zones it may be drawn in (empty for the heart).
        lateralities: the sides it may be drawn on (empty for the heart).
        signs: extra named effects (walls, air bronchograms, volume loss...).
        severities: the severities it may be sampled with; empty when it is not graded.
        can_be_uncertain: whether a report may hedge it ("possible ...").
    """

    density: str
    shapes: tuple[str, ...]
    size: str
    zones: tuple[str, ...]
    lateralities: tuple[str, ...]
    signs: tuple[str, ...] = ()
    severities: tuple[str, ...] = SEVERITIES
    can_be_uncertain: bool = True

    def __post_init__(self) -> None:
        checks = (
            ("density", (self.density,), DENSITIES),
            ("shapes", self.shapes, SHAPES),
            ("size", (self.size,), SIZES),
            ("zones", self.zones, ZONES),
            ("lateralities", self.lateralities, LATERALITIES),
            ("signs", self.signs, SIGNS),
            ("severities", self.severities, SEVERITIES),
        )
        for field, values, vocabulary in checks:
            unknown = set(values) - set(vocabulary)
            if unknown:
                raise ValueError(f"recipe {field} {sorted(unknown)} are not in the attribute vocabulary {vocabulary}")

    def attributes(self) -> dict[str, Any]:
        """The recipe as a JSON-ready dict (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


CATEGORY_RECIPES: dict[str, Recipe] = {
    "pleural_effusion": Recipe(
        "opaque", ("meniscus",), "large", ("base",), LATERALITIES, ("blunted costophrenic angle",)
    ),
    "pneumothorax": Recipe(
        "lucent", ("pleural line",), "large", ("apex", "periphery"), ("left", "right"), ("absent lung markings",)
    ),
    "cardiomegaly": Recipe(
        "opaque", ("enlarged silhouette",), "large", (), (), severities=("mild", "moderate", "severe")
    ),
    "consolidation": Recipe(
        "opaque", ("wedge", "patchy"), "large", ("upper zone", "mid zone", "lower zone"), LATERALITIES,
        ("air bronchograms",),
    ),
    "atelectasis": Recipe(
        "opaque", ("linear band",), "medium", ("mid zone", "lower zone", "base"), LATERALITIES, ("volume loss",)
    ),
    "nodule": Recipe(
        "opaque", ("round",), "small", ("upper zone", "mid zone", "lower zone", "periphery"), ("left", "right"),
        severities=("minimal", "mild", "moderate"),
    ),
    "mass": Recipe(
        "opaque", ("round",), "large", ("upper zone", "mid zone", "perihilar"), ("left", "right"),
        severities=("mild", "moderate", "severe"), can_be_uncertain=False,
    ),
    "pulmonary_edema": Recipe(
        "opaque", ("patchy", "reticular"), "diffuse", ("perihilar",), ("bilateral",), ("septal lines",)
    ),
    "emphysema": Recipe(
        "lucent", ("patchy",), "diffuse", ("upper zone",), ("bilateral",), ("hyperinflation", "absent lung markings"),
        can_be_uncertain=False,
    ),
    "cavity": Recipe(
        "lucent", ("round",), "small", ("apex", "upper zone"), ("left", "right"), ("thick wall",),
        severities=("mild", "moderate", "severe"), can_be_uncertain=False,
    ),
    "bulla": Recipe(
        "lucent", ("round",), "large", ("apex", "upper zone"), ("left", "right"), ("thin wall", "absent lung markings"),
        severities=("mild", "moderate", "severe"), can_be_uncertain=False,
    ),
    "pleural_thickening": Recipe(
        "opaque", ("pleural line",), "medium", ("apex", "periphery"), LATERALITIES, can_be_uncertain=False,
    ),
    "fibrosis": Recipe(
        "opaque", ("reticular", "linear band"), "diffuse", ("base", "lower zone", "periphery"), LATERALITIES,
        ("volume loss",), severities=("mild", "moderate", "severe"), can_be_uncertain=False,
    ),
    "granuloma": Recipe(
        "opaque", ("round",), "small", ("upper zone", "mid zone", "lower zone", "periphery"), ("left", "right"),
        ("calcified",), severities=(), can_be_uncertain=False,
    ),
}


@dataclass(frozen=True)
class FindingSpec:
    """One finding to draw and report: a category at a location with a severity and presence.

    ``presence`` is ``present`` or ``uncertain`` (drawn faint); absent categories are never drawn.
    """

    category: str
    laterality: str | None = None
    zone: str | None = None
    severity: str | None = None
    presence: Presence = Presence.PRESENT

    def __post_init__(self) -> None:
        recipe = CATEGORY_RECIPES.get(self.category)
        if recipe is None:
            raise ValueError(f"SynthCXR cannot draw category '{self.category}'; it draws {sorted(CATEGORY_RECIPES)}")
        object.__setattr__(self, "presence", Presence(self.presence))
        if self.presence is Presence.ABSENT:
            raise ValueError(f"{self.category}: absent findings are reported, not drawn; leave them out of the specs")
        allowed = (
            ("laterality", self.laterality, recipe.lateralities),
            ("zone", self.zone, recipe.zones),
            ("severity", self.severity, recipe.severities),
        )
        for field, value, values in allowed:
            if values and value not in values:
                raise ValueError(f"{self.category}: {field} must be one of {values}, got {value!r}")
            if not values and value is not None:
                raise ValueError(f"{self.category} takes no {field}, got {value!r}")

    @property
    def recipe(self) -> Recipe:
        return CATEGORY_RECIPES[self.category]

    @property
    def sides(self) -> tuple[str, ...]:
        """The patient sides it is drawn on: ``("left", "right")`` when bilateral, () for the heart."""
        if self.laterality == "bilateral":
            return ("left", "right")
        return (self.laterality,) if self.laterality else ()

    @property
    def location(self) -> str | None:
        """The normalised location term, ``"<laterality> <zone>"`` (either part optional)."""
        return " ".join(part for part in (self.laterality, self.zone) if part) or None
