"""Datalists: the JSON index of a data set (splits of items with image paths, reports and findings).

The format is MONAI's decathlon datalist extended with chest X-ray fields; SynthCXR writes it
and dataset adapters convert other collections to it::

    {"categories": [...], "unseen_categories": [...],
     "training": [{"image": "images/x.png", "report": "...", "findings": [...], ...}, ...],
     "validation": [...], "test": [...]}

Paths are relative to the datalist's folder. MONAI's ``load_decathlon_datalist`` resolves only
``image``/``label``; here every path field is resolved and checked up front, so a missing file
is reported with its item before training starts rather than deep inside a worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Hashable, Mapping

PATH_KEYS = ("image", "lung_mask", "lesion_mask", "label")
SPLITS = ("training", "validation", "test")


def describe_item(data: Mapping[Hashable, object]) -> str:
    """A short name for a datalist item, for error messages (its study id or image path)."""
    for key in ("study_id", "id", "image"):
        if key in data:
            return f"{key}={data[key]!r}"
    return "an item without study_id/image"


class DatalistError(ValueError):
    """A datalist that cannot be used as it is; the message names the file, the item and the fix."""


def load_datalist(path: str | Path, check_files: bool = True) -> dict[str, Any]:
    """Read a datalist JSON, resolve every path field against its folder and check the files exist.

    Returns the datalist dict with absolute paths in each split's items.
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
    if not any(split in datalist for split in SPLITS):
        raise DatalistError(f"datalist '{path}' has none of the splits {SPLITS}; add at least 'training'.")
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
                    missing.append(f"  {split}[{index}] ({item.get('study_id', '?')}) {key}: {resolved}")
    if missing:
        shown = "\n".join(missing[:10]) + (f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise DatalistError(
            f"datalist '{path}' lists {len(missing)} file(s) that do not exist:\n{shown}\n"
            "Paths are relative to the datalist's folder: check `dataset_dir`, or regenerate the data set."
        )
    return datalist


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
