"""Datalists: the JSON index of a data set (splits of items with image paths, reports and findings).

The format is MONAI's decathlon datalist extended with chest X-ray fields; SynthCXR writes it
and dataset adapters convert other collections to it::

    {"categories": [...], "unseen_categories": [...],
     "training": [{"image": "images/x.png", "report": "...", "findings": [...], ...}, ...],
     "validation": [...], "test": [...]}

Paths are relative to the datalist's folder. MONAI's ``load_decathlon_datalist`` resolves only
``image``/``label``; here every path field is resolved and checked up front, and so is every
item's findings, so a missing file, field or bad value is reported with its item before
training starts rather than deep inside a worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Collection, Hashable, Mapping

from monai.transforms import MapTransform

from ..findings import FINDING_SCHEMA, Finding, Presence

PATH_KEYS = ("image", "lung_mask", "lesion_mask", "label")
SPLITS = ("training", "validation", "test")
REQUIRED_KEYS = ("image", "findings")
PRESENCE_VALUES = tuple(presence.value for presence in Presence)
FINDING_FIELDS = tuple(FINDING_SCHEMA["properties"])


def describe_item(data: Mapping[Hashable, object]) -> str:
    """A short name for a datalist item, for error messages (its study id or image path)."""
    for key in ("study_id", "id", "image"):
        if key in data:
            return f"{key}={data[key]!r}"
    return "an item without study_id/image"


class DatalistError(ValueError):
    """A datalist that cannot be used as it is; the message names the file, the item and the fix."""


def finding_problem(record: object, categories: Collection[str] | None = None) -> str | None:
    """What is wrong with one finding record of an item (None when nothing is): the rules of
    ``FINDING_SCHEMA`` with ``category`` the only required field, and the category one of
    ``categories`` when given.

    Checked by hand: jsonschema takes about 50 us a record, minutes on a MIMIC-size datalist.
    """
    if isinstance(record, Finding):
        record = record.to_dict()
    if not isinstance(record, Mapping):
        return f"{record!r} is not a finding (an object with a category and a presence)"
    unknown = sorted(set(record) - set(FINDING_FIELDS))
    if unknown:
        return f"unknown field(s) {unknown} in {dict(record)}; a finding has the fields {list(FINDING_FIELDS)}"
    if "category" not in record:
        return f"{dict(record)} has no category"
    category = record["category"]
    if not isinstance(category, str) or not category:
        return f"category {category!r} in {dict(record)} is not a category id (a non-empty string)"
    for field in ("location", "severity", "evidence"):
        if not isinstance(record.get(field, ""), (str, type(None))):
            return f"{field} {record[field]!r} of finding {category!r} is not a string or null"
    presence = record.get("presence", Presence.PRESENT.value)
    if presence not in PRESENCE_VALUES:
        return f"presence {presence!r} of finding {category!r} is not one of {', '.join(PRESENCE_VALUES)}"
    if categories is not None and category not in categories:
        return f"category {category!r} is not one of the categories {', '.join(categories)}"
    return None


def item_problems(item: object, required_keys: Collection[str], categories: Collection[str] | None) -> list[str]:
    """What is wrong with one datalist item: missing keys, findings that are not a list of valid records."""
    if not isinstance(item, Mapping):
        return [f"{item!r} is not an item (an object with {', '.join(required_keys)})"]
    problems = [f"no '{key}'" for key in required_keys if key not in item]
    findings = item.get("findings", [])
    if not isinstance(findings, list):
        return problems + [f"findings {findings!r} is not a list of findings"]
    for index, record in enumerate(findings):
        problem = finding_problem(record, categories)
        if problem:
            problems.append(f"findings[{index}]: {problem}")
    return problems


def item_findings(
    data: Mapping[Hashable, Any],
    key: Hashable,
    categories: Collection[str] | None = None,
    fix: str = "Fix the item's findings in the datalist (docs/data.md describes them).",
) -> list[Finding]:
    """The findings under ``key`` of one item as records; a bad one raises a :class:`DatalistError` that
    names the item, the value, the allowed values and ``fix``."""
    problems = item_problems({"findings": data[key]}, (), categories)
    if problems:
        raise DatalistError(f"item {describe_item(data)}, key '{key}': {'; '.join(problems)}. {fix}")
    return [record if isinstance(record, Finding) else Finding.from_dict(record) for record in data[key]]


def check_item_keys(transform: MapTransform, data: Mapping[Hashable, Any]) -> None:
    """Raise a :class:`DatalistError` naming the item when it lacks a key ``transform`` needs (MONAI's
    own ``KeyError`` names neither the item nor the fix)."""
    if transform.allow_missing_keys:
        return
    missing = [key for key in transform.keys if key not in data]
    if missing:
        raise DatalistError(
            f"item {describe_item(data)} has no {', '.join(map(repr, missing))}, which {type(transform).__name__} "
            "needs. Add it to the item in the datalist, or set allow_missing_keys if items may lack it."
        )


def load_datalist(
    path: str | Path, check_files: bool = True, required_keys: Collection[str] = REQUIRED_KEYS
) -> dict[str, Any]:
    """Read a datalist JSON, check its items and resolve every path field against its folder.

    Every item must have ``required_keys`` and findings that are valid records whose category is
    one of the datalist's ``categories`` (when it lists them); with ``check_files`` every path
    field must name an existing file. All problems are reported together in one
    :class:`DatalistError`. Returns the datalist dict with absolute paths in each split's items.
    """
    path = Path(path)
    if not path.is_file():
        raise DatalistError(
            f"datalist '{path}' does not exist. Generate the demo data with "
            f"`python scripts/make_demo_data.py --out {path.parent}` or point `dataset_dir` at your data."
        )
    try:
        datalist = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatalistError(f"datalist '{path}' is not valid JSON ({err}); regenerate or fix it.") from err
    if not isinstance(datalist, dict) or not any(split in datalist for split in SPLITS):
        raise DatalistError(f"datalist '{path}' has none of the splits {SPLITS}; add at least 'training'.")
    categories = datalist.get("categories")
    bad_items = [
        f"  {split}[{index}] ({_study_id(item)}) {problem}"
        for split in SPLITS
        for index, item in enumerate(datalist.get(split, []))
        for problem in item_problems(item, required_keys, categories)
    ]
    if bad_items:
        raise DatalistError(
            f"datalist '{path}' has {len(bad_items)} problem(s) in its items:\n{_first_ten(bad_items)}\n"
            "Fix those items (docs/data.md describes an item), or regenerate the data set."
        )
    base = path.parent
    missing = []
    for split in SPLITS:
        for index, item in enumerate(datalist.get(split, [])):
            for key in PATH_KEYS:
                if key not in item:
                    continue
                resolved = (base / item[key]).resolve()
                item[key] = str(resolved)
                if check_files and not resolved.is_file():
                    missing.append(f"  {split}[{index}] ({_study_id(item)}) {key}: {resolved}")
    if missing:
        raise DatalistError(
            f"datalist '{path}' lists {len(missing)} file(s) that do not exist:\n{_first_ten(missing)}\n"
            "Paths are relative to the datalist's folder: check `dataset_dir`, or regenerate the data set."
        )
    return datalist


def _study_id(item: object) -> str:
    return str(item.get("study_id", "?")) if isinstance(item, Mapping) else "?"


def _first_ten(lines: list[str]) -> str:
    return "\n".join(lines[:10]) + (f"\n  ... and {len(lines) - 10} more" if len(lines) > 10 else "")


def seen_categories(datalist: dict[str, Any]) -> list[str]:
    """Categories that training may see: all listed categories minus the held-out (unseen) ones."""
    unseen = set(datalist.get("unseen_categories", []))
    return [c for c in datalist.get("categories", []) if c not in unseen]


def split_items(datalist: dict[str, Any], split: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The items of one split (optionally the first ``limit``), with a clear error if it is empty."""
    items = datalist.get(split, [])
    if not items:
        raise DatalistError(f"the datalist has no '{split}' items; the workflow needs them.")
    return items[:limit] if limit else items
