"""IKI, the image-specific knowledge injector: the text of a finding, composed from the knowledge base.

A finding (category, location, severity, presence) becomes a sentence through a template
declared in the config, e.g. ``"{severity} {location} {name}: {attributes}"`` gives
``"moderate left base pleural effusion: opaque, large, meniscus, blunted costophrenic angle"``.
The attribute words come from the knowledge base, so a category never seen in training can
still be described (and recognised) by the visual attributes it shares with seen ones.

During training each field is dropped at random (MedFILIP's unused ``random_mask``, made to
work): texts then vary in which words they contain, attribute words must carry meaning on
their own, and the SSM targets say which partial texts still match an image
(``bundle.losses.ssm``). Name and attributes are never dropped together, so a text always
says *what* it is about. ``FindingText`` records exactly which fields a text kept, which is
what the SSM compares.
"""

from __future__ import annotations

import enum
import re
import string
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from bundle.findings import Finding, Presence
from bundle.knowledge.base import KnowledgeBase

MASKABLE_FIELDS = ("severity", "location", "name", "attributes")
TEMPLATE_FIELDS = frozenset(MASKABLE_FIELDS) | {"description"}
DEFAULT_TEMPLATES: dict[str, str] = {
    "present": "{severity} {location} {name}: {attributes}",
    "uncertain": "possible {severity} {location} {name}: {attributes}",
    "absent": "no {name}",
    "no_finding": "no acute cardiopulmonary finding",
}
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,:;.])")
_REPEATED_PUNCTUATION = re.compile(r"([,:;.])(\s*[,:;.])+")


class TextKind(enum.IntEnum):
    """What a training text asserts; the integer is its code in ``text_code`` tensors (0 = padding)."""

    PADDING = 0
    PRESENT = 1
    UNCERTAIN = 2
    ABSENT = 3
    NO_FINDING = 4


@dataclass(frozen=True)
class FindingText:
    """A composed text and the fields it kept (the SSM compares these, not the words).

    Args:
        text: the sentence given to the text tower.
        kind: what it asserts (present, uncertain, absent finding, or no finding at all).
        category: the finding's category id (None for the no-finding text).
        name_kept: whether the category name is in the text.
        attribute_terms: the knowledge-base attribute terms the text shows (empty when dropped or IKI is off).
        location: the location the text shows, or None.
        severity: the severity the text shows, or None.
    """

    text: str
    kind: TextKind
    category: str | None = None
    name_kept: bool = False
    attribute_terms: tuple[str, ...] = ()
    location: str | None = None
    severity: str | None = None


_KIND_OF_PRESENCE = {Presence.PRESENT: TextKind.PRESENT, Presence.UNCERTAIN: TextKind.UNCERTAIN, Presence.ABSENT: TextKind.ABSENT}


def template_fields(template: str) -> set[str]:
    """The ``{field}`` names a template uses."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def tidy(text: str) -> str:
    """Collapse the spaces and punctuation left by empty fields: ``" left  : opaque"`` -> ``"left: opaque"``."""
    text = " ".join(text.split())
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)
    text = _REPEATED_PUNCTUATION.sub(r"\1", text)
    return text.strip(" ,:;")


class FindingTextComposer:
    """Compose finding texts and zero-shot prompts from the knowledge base.

    Args:
        knowledge_base: categories with names, visual attributes and descriptions.
        templates: one template per text kind (``present``, ``uncertain``, ``absent``,
            ``no_finding``), using the fields ``severity``, ``location``, ``name``, ``attributes``
            and ``description``. ``present`` and ``uncertain`` need ``{name}``, ``{attributes}`` or
            ``{description}``; ``absent`` needs ``{name}``.
        iki: inject knowledge; False leaves ``{attributes}`` and ``{description}`` empty (the
            no-IKI ablation: texts name the finding but never describe it).
        drop_probabilities: per field (``severity``, ``location``, ``name``, ``attributes``), the
            chance that training drops it from a text; ``{description}`` goes with ``attributes``.
        attribute_term_drop_probability: the chance that each attribute term is dropped from a
            text that keeps its attributes (at least one term stays).

    Raises:
        ValueError: a template uses an unknown field, lacks a required one, or a probability is out of [0, 1].
    """

    def __init__(
        self,
        knowledge_base: KnowledgeBase,
        templates: Mapping[str, str] | None = None,
        iki: bool = True,
        drop_probabilities: Mapping[str, float] | None = None,
        attribute_term_drop_probability: float = 0.0,
    ) -> None:
        self.kb = knowledge_base
        self.templates = {**DEFAULT_TEMPLATES, **(templates or {})}
        self.iki = bool(iki)
        self.drop_probabilities = {field: 0.0 for field in MASKABLE_FIELDS}
        for field, probability in (drop_probabilities or {}).items():
            if field not in MASKABLE_FIELDS:
                raise ValueError(f"drop_probabilities: unknown field {field!r}; the fields are {MASKABLE_FIELDS}")
            self.drop_probabilities[field] = _probability(f"drop_probabilities[{field!r}]", probability)
        self.attribute_term_drop_probability = _probability(
            "attribute_term_drop_probability", attribute_term_drop_probability
        )
        self._check_templates()

    def _check_templates(self) -> None:
        unknown_kinds = set(self.templates) - set(DEFAULT_TEMPLATES)
        if unknown_kinds:
            raise ValueError(f"templates: unknown text kind(s) {sorted(unknown_kinds)}; use {sorted(DEFAULT_TEMPLATES)}")
        for kind, template in self.templates.items():
            fields = template_fields(template)
            if fields - TEMPLATE_FIELDS:
                raise ValueError(
                    f"template {kind!r} ({template!r}) uses unknown field(s) {sorted(fields - TEMPLATE_FIELDS)}; "
                    f"the fields are {sorted(TEMPLATE_FIELDS)}"
                )
            if kind in ("present", "uncertain") and not fields & {"name", "attributes", "description"}:
                raise ValueError(f"template {kind!r} ({template!r}) must name or describe the finding: add {{name}} or {{attributes}}")
            if kind == "absent" and "name" not in fields:
                raise ValueError(f"template 'absent' ({template!r}) must contain {{name}}: a negation names what is absent")
            if kind == "no_finding" and fields:
                raise ValueError(f"template 'no_finding' ({template!r}) is a fixed sentence; it takes no fields")

    def display_name(self, category: str) -> str:
        known = self.kb.categories.get(category)
        return known.name if known else category.replace("_", " ")

    def attribute_terms(self, category: str) -> tuple[str, ...]:
        """The attribute words IKI shows for ``category`` (empty with IKI off or for a category without them)."""
        if not self.iki or category not in self.kb.categories:
            return ()
        return tuple(self.kb.attribute_terms(category))

    def description(self, category: str) -> str:
        if not self.iki or category not in self.kb.categories:
            return ""
        return self.kb.categories[category].description

    def compose(self, finding: Finding | None, rng: np.random.Generator | np.random.RandomState | None = None) -> FindingText:
        """The text of one finding (None: the no-finding text); ``rng`` turns on field dropping."""
        if finding is None:
            return FindingText(tidy(self.templates["no_finding"]), TextKind.NO_FINDING)
        kind = _KIND_OF_PRESENCE[finding.presence]
        template = self.templates[kind.name.lower()]
        used = template_fields(template)
        terms = self.attribute_terms(finding.category)
        values = {
            "severity": finding.severity if "severity" in used else None,
            "location": finding.location if "location" in used else None,
            "name": "name" in used,
            "attributes": bool(used & {"attributes", "description"}) and bool(terms or self.description(finding.category)),
        }
        kept = {field: bool(value) for field, value in values.items()}
        if rng is not None and kind is not TextKind.ABSENT:
            kept = self._drop_fields(kept, rng)
            if kept["attributes"] and terms:
                terms = self._drop_terms(terms, rng)
        shown_terms = terms if kept["attributes"] else ()
        text = template.format(
            severity=finding.severity if kept["severity"] else "",
            location=finding.location if kept["location"] else "",
            name=self.display_name(finding.category) if kept["name"] else "",
            attributes=", ".join(shown_terms),
            description=self.description(finding.category) if kept["attributes"] else "",
        )
        return FindingText(
            text=tidy(text),
            kind=kind,
            category=finding.category,
            name_kept=kept["name"],
            attribute_terms=shown_terms,
            location=finding.location if kept["location"] else None,
            severity=finding.severity if kept["severity"] else None,
        )

    def _drop_fields(self, kept: dict[str, bool], rng: np.random.Generator | np.random.RandomState) -> dict[str, bool]:
        dropped = {field: kept[field] and rng.random() < self.drop_probabilities[field] for field in MASKABLE_FIELDS}
        result = {field: kept[field] and not dropped[field] for field in MASKABLE_FIELDS}
        if not (result["name"] or result["attributes"]):
            # never drop what the text is about: restore one of the content fields it had
            restorable = [field for field in ("name", "attributes") if kept[field]]
            result[restorable[int(rng.choice(len(restorable)))]] = True
        return result

    def _drop_terms(self, terms: tuple[str, ...], rng: np.random.Generator | np.random.RandomState) -> tuple[str, ...]:
        if self.attribute_term_drop_probability == 0.0 or len(terms) == 1:
            return terms
        keep = rng.random(len(terms)) >= self.attribute_term_drop_probability
        if not keep.any():
            keep[int(rng.choice(len(terms)))] = True
        return tuple(term for term, k in zip(terms, keep) if k)

    def prompts(self, category: str) -> tuple[str, str]:
        """The zero-shot ``(positive, negative)`` prompts of a category, composed like training texts.

        The positive prompt is the ``present`` template without location and severity; the
        negative is the ``absent`` template. A category that is not in the knowledge base is
        named by its id.
        """
        positive = self.compose(Finding(category, presence=Presence.PRESENT)).text
        negative = self.compose(Finding(category, presence=Presence.ABSENT)).text
        return positive, negative


def _probability(what: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be a probability in [0, 1], got {value}")
    return value
