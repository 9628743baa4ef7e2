"""VinDr-CXR (Nguyen et al., Scientific Data 2022): 18,000 frontal DICOM radiographs from two Vietnamese
hospitals, 28 image-level labels and boxes for 22 local findings.

Layout under ``root`` (the PhysioNet release ``vindr-cxr/1.0.0``)::

    annotations/image_labels_train.csv   image_id, rad_id, one 0/1 column per label (three rows per image:
                                         one per radiologist)
    annotations/image_labels_test.csv    image_id, [rad_id,] the labels (one consensus row per image)
    annotations/annotations_train.csv    optional: image_id, rad_id, class_name, x_min, y_min, x_max, y_max
    annotations/annotations_test.csv     optional: the same without rad_id (the consensus boxes)
    train/<image_id>.dicom               the DICOM images (``.dcm`` is accepted as well)
    test/<image_id>.dicom

Consensus: a label is ``present`` when more than half of the rows of its image mark it (2 of the 3
training radiologists; the single consensus row of the test set), ``uncertain`` when some but not
more than half do (1 of 3: the disagreement is kept, and the training config decides how an
uncertain finding counts), and otherwise absent. The label columns are read from the header and
named with categories through the knowledge base (``collection_labels`` of ``vindr-cxr``, then
synonyms); labels that name the same category are merged (the strongest presence wins); ``No
finding`` names none, and labels without a category (``Other lesion``, ...) are reported. Every
image is labelled for every label, so ``unmentioned_findings`` is ``absent`` over the mapped
categories. Boxes are kept in pixels of the DICOM, with the radiologist (``rad_id``) that drew
them where the table names one. VinDr-CXR publishes no patient ids (de-identification removed
them), so each image is its own patient: ``test`` is the official test set and ``validation`` a
share of the training images drawn by the hash of ``image_id``.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
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
    index_files,
    make_item,
    read_csv,
    validation_split,
)

NAME = "vindr-cxr"
NORMAL_LABEL = "No finding"
OFFICIAL_SPLITS = ("train", "test")
ID_COLUMNS = ("image_id", "rad_id")
BOX_COLUMNS = ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max")
IMAGE_SUFFIXES = (".dicom", ".dcm")
STRENGTH = {Presence.ABSENT: 0, Presence.UNCERTAIN: 1, Presence.PRESENT: 2}
FIX = "--root must be the vindr-cxr/1.0.0 folder of the PhysioNet release (annotations/, train/, test/)."


def consensus(marks: int, readers: int) -> Presence:
    """A label's presence from how many of an image's ``readers`` rows mark it (see the module docstring)."""
    if 2 * marks > readers:
        return Presence.PRESENT
    return Presence.UNCERTAIN if marks else Presence.ABSENT


def read_marks(rows: list[dict[str, str]], labels: list[str], where: str) -> Counter[str]:
    """How many of an image's rows mark each label.

    Raises:
        ValueError: a value other than 0 or 1 (the image is skipped: a partial label would be wrong).
    """
    marks: Counter[str] = Counter()
    for row in rows:
        for label in labels:
            value = row[label]
            if value not in ("0", "1", "0.0", "1.0"):
                raise ValueError(f"{where}: {label} = {value!r} (rad_id {row.get('rad_id', '-')}), not 0 or 1")
            marks[label] += value.startswith("1")
    return marks


def image_findings(marks: Counter[str], readers: int, mapper: LabelMapper) -> list[dict[str, Any]]:
    """Present and uncertain findings of one image; labels naming one category merged, strongest first."""
    strongest: dict[str, tuple[Presence, str]] = {}
    for label, count in marks.items():
        category, presence = mapper.lookup(label), consensus(count, readers)
        if category and STRENGTH[presence] > STRENGTH[strongest.get(category, (Presence.ABSENT, ""))[0]]:
            strongest[category] = (presence, label)
    return [finding_record(category, presence, label) for category, (presence, label) in strongest.items()]


def read_boxes(table: Path, mapper: LabelMapper, summary: Summary) -> dict[str, list[dict[str, Any]]]:
    """image_id -> boxes ``{category, label, x, y, width, height[, rad_id]}``; ``No finding`` rows carry none."""
    boxes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line, row in enumerate(read_csv(table, BOX_COLUMNS), start=2):
        label = row["class_name"]
        if mapper.is_normal(label):
            continue
        category = next(iter(mapper.read([label])), None)
        if category is None:  # counted by the mapper and reported
            continue
        try:
            x_min, y_min, x_max, y_max = (float(row[key]) for key in BOX_COLUMNS[2:])
        except ValueError:
            summary.skip("box that is not four numbers", f"{table.name} line {line} ({row['image_id']}, {label})")
            continue
        box = {"category": category, "label": label, "x": x_min, "y": y_min, "width": x_max - x_min,
               "height": y_max - y_min}  # fmt: skip
        if row.get("rad_id"):
            box["rad_id"] = row["rad_id"]
        boxes[row["image_id"]].append(box)
    return boxes


def prepare(root: Path, knowledge_base: KnowledgeBase, fractions: SplitFractions = SplitFractions()) -> PreparedCollection:
    """Read the collection under ``root`` into datalist items (see the module docstring)."""
    root = Path(root)
    start = time.perf_counter()
    summary = Summary(NAME)
    mapper = LabelMapper(knowledge_base, NAME, normal_labels=(NORMAL_LABEL,))
    box_mapper = LabelMapper(knowledge_base, NAME, normal_labels=(NORMAL_LABEL,))
    splits: dict[str, list[dict[str, Any]]] = {}
    known: list[str] = []
    for official in OFFICIAL_SPLITS:
        table = root / "annotations" / f"image_labels_{official}.csv"
        if not table.is_file():
            raise CollectionError(f"no annotations/{table.name} under {root}. {FIX}")
        rows = read_csv(table, ID_COLUMNS[:1])
        summary.tables[f"{official} labels"] = table.name
        summary.rows += len(rows)
        labels = [column for column in rows[0] if column not in ID_COLUMNS] if rows else []
        known.extend(c for c in map(mapper.lookup, labels) if c and c not in known)
        unmapped = [label for label in labels if mapper.lookup(label) is None and not mapper.is_normal(label)]
        summary.unmapped_labels.update(dict.fromkeys(unmapped, 0))  # listed even when no image has them
        per_image: dict[str, list[dict[str, str]]] = defaultdict(list)
        for row in rows:
            per_image[row["image_id"]].append(row)
        box_table = root / "annotations" / f"annotations_{official}.csv"
        boxes = read_boxes(box_table, box_mapper, summary) if box_table.is_file() else {}
        if boxes:
            summary.tables[f"{official} boxes"] = box_table.name
        images = index_files([root / official], IMAGE_SUFFIXES)
        for image_id, image_rows in per_image.items():
            try:
                marks = read_marks(image_rows, labels, f"{table.name} {image_id}")
            except ValueError as error:
                summary.skip("bad label value", str(error))
                continue
            for label, count in marks.items():
                if count:
                    summary.label_counts[f"{label} {consensus(count, len(image_rows)).value}"] += 1
            summary.unmapped_labels.update(label for label in unmapped if marks[label])
            image = next((images[image_id + s] for s in IMAGE_SUFFIXES if image_id + s in images), None)
            if image is None:
                summary.missing_images.append(f"{official}/{image_id}.dicom")
                continue
            item = make_item(image, image_findings(marks, len(image_rows), mapper), image_id, None, study_id=image_id,
                             official_split=official, readers=len(image_rows), boxes=boxes.get(image_id))  # fmt: skip
            split = "test" if official == "test" else validation_split(image_id, fractions)
            splits.setdefault(split, []).append(item)
        summary.patients += len(per_image)
    summary.unmapped_labels.update({f"{label} (box)": count for label, count in box_mapper.unmapped.items()})
    summary.notes.append("no patient ids in the release: each image is its own patient; validation is a share of "
                         "the training images by the hash of image_id")  # fmt: skip
    summary.seconds = time.perf_counter() - start
    return PreparedCollection(NAME, splits, known, "absent", summary)
