"""Load, validate and query the knowledge base (``knowledge_base.yaml``).

The YAML is checked against ``knowledge_base.schema.json`` (structure) and then for meaning:
unique category ids, no synonym shared by two categories, no term shared by two locations or
severities, every attribute term in ``attribute_vocabulary``, zones and lateralities that are
location terms, statements of normality that name known categories. Lookups normalise free text
to the canonical vocabulary:

>>> kb = default_knowledge_base()
>>> kb.category_for("Pleural effusions"), kb.normalise_location("LT lower lobe"), kb.normalise_severity("large")
('pleural_effusion', 'left lower lobe', 'severe')
>>> kb.attribute_terms("pleural_effusion")
['opaque', 'large', 'meniscus', 'blunted costophrenic angle']
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import jsonschema
import yaml

from bundle.knowledge.phrases import GAP_MARKER, PhraseIndex, plural_forms, tokenize

KNOWLEDGE_DIR = Path(__file__).resolve().parent
DEFAULT_KNOWLEDGE_BASE_PATH = KNOWLEDGE_DIR / "knowledge_base.yaml"
SCHEMA_PATH = KNOWLEDGE_DIR / "knowledge_base.schema.json"

# CheXpert's 14 labels in the order of the CheXpert CSV.
# The keys of ``attribute_vocabulary`` and of every category's ``attributes``.
ATTRIBUTE_KEYS: tuple[str, ...] = ("density", "shape", "size", "zone", "laterality", "signs")
# The attributes a finding's text shows, in this order; zone and laterality are where the
# category may occur, the finding's own location comes from its report.
TEXT_ATTRIBUTE_KEYS: tuple[str, ...] = ("density", "size", "shape", "signs")

CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)  # fmt: skip


class KnowledgeBaseError(ValueError):
    """The knowledge base file is malformed; the message names the entry and the fix."""


@dataclass(frozen=True)
class Category:
    """One finding category.

    Args:
        id: canonical id (``pleural_effusion``), stable across versions.
        name: display name.
        synonyms: terms that name it in reports (misspellings and abbreviations included).
        chexpert: the CheXpert label it rolls up to, or None.
        lists: the reference lists it belongs to (``chexpert``, ``medklip``, ``iu16``...).
        description: one sentence on its chest radiograph appearance.
        attributes: its visual attributes, ``{key: terms}`` for every key of ``ATTRIBUTE_KEYS``
            (``density``, ``shape``, ``size``, ``zone``, ``laterality``, ``signs``), terms from the
            knowledge base's ``attribute_vocabulary``; a list may be empty.
        extra: any further fields kept verbatim.
    """

    id: str
    name: str
    synonyms: tuple[str, ...]
    chexpert: str | None
    lists: tuple[str, ...]
    description: str
    attributes: Mapping[str, tuple[str, ...]]
    extra: Mapping[str, Any] = field(default_factory=dict)


class KnowledgeBase:
    """The validated vocabulary with phrase indexes for matching.

    Use ``KnowledgeBase.from_yaml(path)`` or ``default_knowledge_base()``; ``from_dict`` takes
    the already-parsed mapping (``source`` names it in error messages).
    """

    def __init__(self, data: Mapping[str, Any], source: str = "<dict>") -> None:
        validate_knowledge_base(data, source)
        self.source = source
        self.version: str = data["version"]
        # sha256 of the canonical JSON: results depend on the content, which an edit can change
        # without bumping the version
        canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
        self.fingerprint: str = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        self.categories: dict[str, Category] = {}
        for entry in data["categories"]:
            known = {"id", "name", "synonyms", "chexpert", "lists", "description", "attributes"}
            self.categories[entry["id"]] = Category(
                id=entry["id"],
                name=entry["name"],
                synonyms=tuple(entry["synonyms"]),
                chexpert=entry["chexpert"],
                lists=tuple(entry["lists"]),
                description=entry["description"],
                attributes={key: tuple(entry["attributes"][key]) for key in ATTRIBUTE_KEYS},
                extra={k: v for k, v in entry.items() if k not in known},
            )
        self.attribute_vocabulary: dict[str, tuple[str, ...]] = {
            key: tuple(data["attribute_vocabulary"][key]) for key in ATTRIBUTE_KEYS
        }
        self.laterality: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in data["locations"]["laterality"].items()}
        self.regions: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in data["locations"]["regions"].items()}
        self.severities: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in data["severities"].items()}
        self.change_words: tuple[str, ...] = tuple(data["change_words"])

        def build(entries: list[tuple[str, Any]], what: str, add_plurals: bool) -> PhraseIndex:
            try:
                return PhraseIndex(entries, add_plurals=add_plurals)
            except ValueError as error:
                raise KnowledgeBaseError(f"{source}: {what}: {error}") from None

        category_terms = [(t, (c.id,)) for c in self.categories.values() for t in (c.id.replace("_", " "), c.name, *c.synonyms)]
        for compound in data.get("compound_terms", []):
            unknown = [c for c in compound["categories"] if c not in self.categories]
            if unknown:
                raise KnowledgeBaseError(f"{source}: compound term {compound['term']!r} names unknown categories {unknown}")
            category_terms.append((compound["term"], tuple(compound["categories"])))
        # Values are tuples of ids: a compound term names several categories.
        self.category_index: PhraseIndex[tuple[str, ...]] = build(category_terms, "categories", add_plurals=True)
        normal_terms = []
        for statement in data.get("normal_statements", []):
            term, ids = statement["term"], tuple(statement["categories"])
            unknown = [c for c in ids if c not in self.categories]
            if unknown:
                raise KnowledgeBaseError(
                    f"{source}: normal statement {term!r} names unknown categories {unknown}; use category ids"
                )
            if GAP_MARKER not in term and term in self.category_index:
                raise KnowledgeBaseError(
                    f"{source}: normal statement {term!r} is also a category synonym; a term either names a "
                    "finding or states normality, remove it from one of the two"
                )
            normal_terms.append((term, ids))
        # Statements of normality ("heart size ... normal") and the categories they rule out.
        self.normal_index: PhraseIndex[tuple[str, ...]] = build(normal_terms, "normal_statements", add_plurals=True)
        # The last word of every statement (and its plurals): a sentence with none of them states no normality.
        last_words = {tokenize(term.split(GAP_MARKER)[-1])[-1] for term, _ in normal_terms}
        self.normal_statement_words: frozenset[str] = frozenset(
            last_words.union(*(plural_forms(word) for word in last_words))
        )
        self.laterality_index = build(_lexicon_terms(self.laterality), "locations.laterality", add_plurals=False)
        self.region_index = build(_lexicon_terms(self.regions), "locations.regions", add_plurals=True)
        self.severity_index = build(_lexicon_terms(self.severities), "severities", add_plurals=False)
        self.change_index = build([(w, w) for w in self.change_words], "change_words", add_plurals=False)
        overlap = set(self.severities_terms()) & set(self.change_words)
        if overlap:
            raise KnowledgeBaseError(f"{source}: {sorted(overlap)} are both severities and change words; keep them apart")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> "KnowledgeBase":
        return cls(data, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "KnowledgeBase":
        """Read and validate a knowledge-base YAML file."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KnowledgeBaseError(f"knowledge base {path} does not exist; pass the path of a knowledge_base.yaml") from None
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise KnowledgeBaseError(f"knowledge base {path} is not valid UTF-8 YAML: {error}") from None
        return cls(data, str(path))

    def attribute_terms(self, category_id: str) -> list[str]:
        """The words a finding text shows for a category: its density, size, shape and sign terms, in that order.

        Zone and laterality are left out: they say where the category may occur, while a
        finding's own location comes from its report.

        Raises:
            KeyError: ``category_id`` is not a category of this knowledge base.
        """
        try:
            attributes = self.categories[category_id].attributes
        except KeyError:
            raise KeyError(f"unknown category id {category_id!r}; known ids: {', '.join(self.categories)}") from None
        return [term for key in TEXT_ATTRIBUTE_KEYS for term in attributes[key]]

    def severities_terms(self) -> list[str]:
        return [t for terms in self.severities.values() for t in terms]

    @property
    def category_ids(self) -> list[str]:
        return list(self.categories)

    def ids_in_list(self, list_name: str) -> list[str]:
        """Category ids tagged with ``list_name`` (``chexpert``, ``medklip``, ``medfilip``, ``synthcxr``, ``iu16``)."""
        return [c.id for c in self.categories.values() if list_name in c.lists]

    def category_for(self, text: str) -> str | None:
        """The category id that ``text`` names as a whole (id, display name or synonym), or None.

        A compound term ("nodular opacity") gives its first category.
        """
        ids = self.category_index.get(text.replace("_", " "))
        return ids[0] if ids else None

    def normalise_severity(self, text: str | None) -> str | None:
        """The normalised severity of the first severity term in ``text`` (or the term itself), or None."""
        if not text:
            return None
        if text in self.severities:
            return text
        matches = self.severity_index.find_all(tokenize(text))
        return matches[0].value if matches else None

    def severity_rank(self, severity: str) -> int:
        """0 for the mildest normalised severity, increasing with severity."""
        return list(self.severities).index(severity)

    def location_from_tokens(self, tokens: Sequence[str], start: int = 0, end: int | None = None) -> str | None:
        """The normalised ``"<laterality> <region>"`` named in ``tokens[start:end]``, or None.

        Both ``left`` and ``right`` in the window read as ``bilateral``; the first region wins.
        """
        sides = {m.value for m in self.laterality_index.find_all(tokens, start, end)}
        if {"left", "right"} <= sides:
            sides = {"bilateral"}
        side = "bilateral" if "bilateral" in sides else next(iter(sides), None)
        regions = self.region_index.find_all(tokens, start, end)
        region = regions[0].value if regions else None
        return " ".join(part for part in (side, region) if part) or None

    def normalise_location(self, text: str | None) -> str | None:
        """Normalise a free-text location (``"LT lower lobe"`` -> ``"left lower lobe"``), or None."""
        if not text:
            return None
        return self.location_from_tokens(tokenize(text))


def _lexicon_terms(lexicon: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    return [(term, normal) for normal, terms in lexicon.items() for term in (normal, *terms)]


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_knowledge_base(data: Any, source: str = "<dict>") -> None:
    """Check ``data`` against the JSON schema, for duplicate category ids and for attribute terms
    outside ``attribute_vocabulary``.

    Raises:
        KnowledgeBaseError: naming the offending entry (its path in the YAML) and the rule it breaks.
    """
    validator = jsonschema.Draft7Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "<top level>"
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise KnowledgeBaseError(f"{source}: entry '{where}': {first.message}{more}")
    ids = [c["id"] for c in data["categories"]]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise KnowledgeBaseError(f"{source}: category id(s) {duplicates} appear more than once; ids must be unique")
    _check_attributes(data, source)


def _check_attributes(data: Mapping[str, Any], source: str) -> None:
    """Every attribute term is in ``attribute_vocabulary``; zones and lateralities are location terms."""
    vocabulary = data["attribute_vocabulary"]
    locations = {"zone": ("locations.regions", data["locations"]["regions"]),
                 "laterality": ("locations.laterality", data["locations"]["laterality"])}  # fmt: skip
    for key, (where, lexicon) in locations.items():
        strays = [term for term in vocabulary[key] if term not in lexicon]
        if strays:
            raise KnowledgeBaseError(
                f"{source}: attribute_vocabulary.{key} terms {strays} are not {where} keys; "
                f"use normalised location terms ({', '.join(lexicon)})"
            )
    for entry in data["categories"]:
        for key in ATTRIBUTE_KEYS:
            for term in entry["attributes"][key]:
                if term not in vocabulary[key]:
                    raise KnowledgeBaseError(
                        f"{source}: category '{entry['id']}' attribute '{key}' uses {term!r}, which is not in "
                        f"attribute_vocabulary.{key} ({', '.join(vocabulary[key])}); use one of those terms "
                        f"or add it to attribute_vocabulary.{key}"
                    )


@functools.lru_cache(maxsize=4)
def default_knowledge_base(path: str | None = None) -> KnowledgeBase:
    """The knowledge base shipped with the bundle (or at ``path``), loaded once per process."""
    return KnowledgeBase.from_yaml(path or DEFAULT_KNOWLEDGE_BASE_PATH)
