"""NIH ChestX-ray14 (Wang et al., CVPR 2017): 112,120 frontal radiographs of 30,805 patients, 14 labels.

Layout under ``root`` (the NIH Box release or its Kaggle copy)::

    Data_Entry_2017.csv | Data_Entry_2017_v2020.csv (.gz)   Image Index, Finding Labels ("|"-separated), Patient ID, View Position
    BBox_List_2017.csv (.gz)                                 optional: 984 boxes (Image Index, Finding Label, x, y, w, h)
    train_val_list.txt, test_list.txt                        optional: the official patient-level split
    images/*.png  or  images_0NN/images/*.png                the images, found by name

Every image is labelled for all 14 findings ("No Finding" when none), so a category an item does
not name is absent (``unmentioned_findings: absent``). With the official lists, ``test`` is the
official test list and ``validation`` a patient-level share of ``train_val``; without them the
whole collection is split by patient.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

from ...knowledge.base import KnowledgeBase
from .common import (
    CollectionError,
    LabelMapper,
    PreparedCollection,
    SplitFractions,
    Summary,
    categories_in_order,
    find_table,
    index_files,
    label_findings,
    make_item,
    open_table,
    patient_split,
    read_csv,
    validation_split,
)

NAME = "chestx-ray14"
# The published class list, in the paper's order; every image is labelled for each.
LABELS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
          "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")  # fmt: skip
NORMAL_LABEL = "No Finding"
COLUMNS = ("Image Index", "Finding Labels", "Patient ID", "View Position", "Follow-up #")
OFFICIAL_LISTS = {"train_val": "train_val_list.txt", "test": "test_list.txt"}
FIX = "Download Data_Entry_2017_v2020.csv from the NIH release (nihcc.app.box.com/v/ChestXray-NIHCC) into the root."


def image_folders(root: Path) -> list[Path]:
    """Where the release keeps images: ``images/`` or the extracted archives ``images_0NN/images/``."""
    return [root / "images", *sorted(root.glob("images_*/images")), *sorted(p for p in root.glob("images_*") if p.is_dir())]


def read_official_split(root: Path) -> dict[str, str] | None:
    """Image name -> ``train_val``/``test`` from the official lists, or None when neither is present."""
    present = {split: root / name for split, name in OFFICIAL_LISTS.items() if (root / name).is_file()}
    if not present:
        return None
    if len(present) < len(OFFICIAL_LISTS):
        missing = [name for split, name in OFFICIAL_LISTS.items() if split not in present]
        raise CollectionError(
            f"{root} has {', '.join(p.name for p in present.values())} but not {', '.join(missing)}; the official "
            "split needs both lists. Add the missing one from the NIH release, or remove the other to split by patient."
        )
    return {name.strip(): split for split, path in present.items() for name in path.read_text().split() if name.strip()}


def read_boxes(root: Path, mapper: LabelMapper) -> tuple[dict[str, list[dict[str, Any]]], Path | None]:
    """Image name -> boxes ``{category, label, x, y, width, height}`` in pixels of the 1024 x 1024 image."""
    try:
        path = find_table(root, ("BBox_List_2017.csv",), "box list", "")
    except CollectionError:
        return {}, None
    boxes: dict[str, list[dict[str, Any]]] = {}
    with open_table(path) as handle:
        rows = csv.reader(handle)
        header = next(rows, [])
        if header[:2] != ["Image Index", "Finding Label"]:
            raise CollectionError(f"{path} does not start with the columns Image Index, Finding Label; {FIX}")
        for line, row in enumerate(rows, start=2):
            try:
                x, y, width, height = (float(value) for value in row[2:6])
            except ValueError:
                raise CollectionError(f"{path} line {line}: box {row[2:6]} is not four numbers; {FIX}") from None
            label = row[1].strip()
            category = next(iter(mapper.read([label])), None)
            if category:  # a label without a category is counted by the mapper and reported
                boxes.setdefault(row[0].strip(), []).append(
                    {"category": category, "label": label, "x": x, "y": y, "width": width, "height": height}
                )
    return boxes, path


def prepare(root: Path, knowledge_base: KnowledgeBase, fractions: SplitFractions = SplitFractions()) -> PreparedCollection:
    """Read the collection under ``root`` into datalist items (see the module docstring)."""
    root = Path(root)
    start = time.perf_counter()
    table = find_table(root, ("Data_Entry_2017*.csv",), "label table Data_Entry_2017*.csv", FIX)
    rows = read_csv(table, COLUMNS)
    summary = Summary(NAME, tables={"labels": table.name}, rows=len(rows))
    mapper = LabelMapper(knowledge_base, NAME, normal_labels=(NORMAL_LABEL,))
    box_mapper = LabelMapper(knowledge_base, NAME)
    boxes, box_table = read_boxes(root, box_mapper)
    if box_table:
        summary.tables["boxes"] = box_table.name
    official = read_official_split(root)
    summary.notes.append(
        "official split (train_val_list.txt / test_list.txt); validation is a patient-level share of train_val"
        if official else "no official split lists under the root: split by patient"
    )
    images = index_files(image_folders(root), (".png",))
    splits: dict[str, list[dict[str, Any]]] = {}
    patients = set()
    for row in rows:
        name, patient = row["Image Index"], row["Patient ID"]
        patients.add(patient)
        labels = [label.strip() for label in row["Finding Labels"].split("|") if label.strip()]
        named = mapper.read(labels)
        if official is None:
            official_split, split = None, patient_split(patient, fractions)
        elif name not in official:
            summary.skip("not in the official split lists", name)
            continue
        else:
            official_split = official[name]
            split = "test" if official_split == "test" else validation_split(patient, fractions)
        if name not in images:
            summary.missing_images.append(name)
            continue
        item = make_item(images[name], label_findings(named), patient, row["View Position"] or None,
                         study_id=name.rsplit(".", 1)[0], official_split=official_split, boxes=boxes.get(name))  # fmt: skip
        splits.setdefault(split, []).append(item)
    summary.patients = len(patients)
    summary.label_counts = mapper.label_counts
    summary.unmapped_labels = mapper.unmapped + box_mapper.unmapped
    summary.seconds = time.perf_counter() - start
    known = [mapper.lookup(label) for label in LABELS]
    if None in known:
        missing = [label for label, category in zip(LABELS, known) if category is None]
        raise CollectionError(
            f"the knowledge base names no category for the ChestX-ray14 label(s) {missing}; add them as synonyms or "
            f"to a category's collection_labels ({NAME}) in bundle/knowledge/knowledge_base.yaml"
        )
    return PreparedCollection(NAME, splits, categories_in_order(known, splits), "absent", summary)
