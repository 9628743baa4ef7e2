"""TBX11K (Liu et al., CVPR 2020): 11,200 chest X-rays (512 x 512) — healthy, sick but not tuberculosis,
and tuberculosis with boxes.

Layout under ``root`` (the release as it unpacks)::

    annotations/json/TBX11K_train.json   COCO: images (file_name such as ``tb/tb0005.png``, relative to
    annotations/json/TBX11K_val.json       imgs/), annotations (bbox [x, y, width, height], category_id) and
                                           categories (ActiveTuberculosis, ObsoletePulmonaryTuberculosis,
                                           PulmonaryTuberculosis); the val file is optional
    imgs/health/h*.png, imgs/sick/s*.png, imgs/tb/tb*.png

The image's folder says its class: ``tb`` images (and any image with a box) show tuberculosis,
``health`` and ``sick`` (another disease, not labelled further) ones do not; a box on a
``health`` or ``sick`` image contradicts its class and the image is skipped. The box classes are
named with a category through the knowledge base (``collection_labels`` of ``tbx11k``; all three
are ``tuberculosis``). Every image is labelled for its one category, so ``unmentioned_findings`` is
``absent`` and negatives carry an explicit absent finding. The release has no patient ids: each
image is its own patient. The test set's labels are withheld, so ``test`` is the official val set
and ``validation`` a share of train by the hash of the file name; without the val file the train
set is split three ways. Each item keeps its official ``split`` (``train``, ``val``).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ...findings import Presence
from ...knowledge.base import KnowledgeBase
from .common import (
    CollectionError,
    LabelMapper,
    PreparedCollection,
    SplitFractions,
    Summary,
    finding_record,
    make_item,
    patient_split,
    required_category,
    validation_split,
)

NAME = "tbx11k"
LABEL = "Tuberculosis"
OFFICIAL = ("train", "val")
POSITIVE_FOLDERS = ("tb",)
NEGATIVE_FOLDERS = ("health", "sick")
FIX = "--root must be the TBX11K folder as it unpacks (annotations/json/TBX11K_train.json and imgs/)."


def read_coco(path: Path) -> dict[str, Any]:
    """A COCO file with ``images``, ``annotations`` and ``categories``.

    Raises:
        CollectionError: not JSON, or one of those lists missing.
    """
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as error:
        raise CollectionError(f"{path} is not readable JSON ({type(error).__name__}: {error}). {FIX}") from None
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(coco.get(key), list)]
    if missing:
        raise CollectionError(f"{path} has no {', '.join(missing)} list(s); it is not a TBX11K COCO file. {FIX}")
    return coco


def image_boxes(coco: dict[str, Any], mapper: LabelMapper, where: str, summary: Summary) -> dict[Any, list[dict[str, Any]]]:
    """COCO image id -> boxes ``{category, label, x, y, width, height}``; a malformed annotation is skipped."""
    names = {category["id"]: category["name"] for category in coco["categories"]}
    boxes: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for annotation in coco["annotations"]:
        label = names.get(annotation.get("category_id"), str(annotation.get("category_id")))
        category = next(iter(mapper.read([label])), None)
        try:
            x, y, width, height = (float(value) for value in annotation["bbox"])
        except (KeyError, TypeError, ValueError):
            summary.skip("annotation without a four-number bbox", f"{where} annotation {annotation.get('id')}")
            continue
        if category:  # a class without a category is counted by the mapper and reported
            boxes[annotation.get("image_id")].append(
                {"category": category, "label": label, "x": x, "y": y, "width": width, "height": height}
            )
    return boxes


def prepare(root: Path, knowledge_base: KnowledgeBase, fractions: SplitFractions = SplitFractions()) -> PreparedCollection:
    """Read the collection under ``root`` into datalist items (see the module docstring)."""
    root = Path(root)
    start = time.perf_counter()
    files = {split: root / "annotations" / "json" / f"TBX11K_{split}.json" for split in OFFICIAL}
    if not files["train"].is_file():
        raise CollectionError(f"no annotations/json/{files['train'].name} under {root}. {FIX}")
    files = {split: path for split, path in files.items() if path.is_file()}
    category = required_category(knowledge_base, NAME, LABEL)
    mapper = LabelMapper(knowledge_base, NAME)
    summary = Summary(NAME, tables={split: path.name for split, path in files.items()})
    splits: dict[str, list[dict[str, Any]]] = {}
    box_count, patients = 0, set()
    for official, path in files.items():
        coco = read_coco(path)
        summary.rows += len(coco["images"])
        boxes = image_boxes(coco, mapper, path.name, summary)
        for record in coco["images"]:
            name = str(record.get("file_name", ""))
            folder = name.split("/", 1)[0] if "/" in name else ""
            image_box = boxes.get(record.get("id"), [])
            if image_box and folder in NEGATIVE_FOLDERS:
                summary.skip("boxes on an image of a class without tuberculosis", f"{path.name} {name}")
                continue
            present = bool(image_box) or folder in POSITIVE_FOLDERS
            summary.label_counts[f"{folder or 'unfoldered'} ({'tuberculosis' if present else 'no tuberculosis'})"] += 1
            image, patient = root / "imgs" / name, Path(name).stem  # no patient ids in the release
            patients.add(patient)
            if not name or not image.is_file():
                summary.missing_images.append(f"imgs/{name}")
                continue
            box_count += len(image_box)
            findings = [finding_record(category, Presence.PRESENT if present else Presence.ABSENT)]
            item = make_item(image, findings, patient, None, study_id=patient, official_split=official,
                             boxes=image_box or None)  # fmt: skip
            if "val" not in files:
                split = patient_split(patient, fractions)
            else:
                split = "test" if official == "val" else validation_split(patient, fractions)
            splits.setdefault(split, []).append(item)
    summary.patients = len(patients)
    summary.unmapped_labels = mapper.unmapped
    summary.notes.append(f"{box_count} tuberculosis boxes written")
    summary.notes.append("test: the official val set (test labels are withheld); validation: a share of train" if "val" in files
                         else "no TBX11K_val.json: train is split three ways by the hash of the file name")  # fmt: skip
    summary.seconds = time.perf_counter() - start
    return PreparedCollection(NAME, splits, [category], "absent", summary)
