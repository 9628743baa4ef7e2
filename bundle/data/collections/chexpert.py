"""CheXpert (Irvin et al., AAAI 2019): 224,316 radiographs of 65,240 patients, 14 report-derived labels.

Layout under ``root`` (the ``CheXpert-v1.0`` or ``CheXpert-v1.0-small`` folder, as it unpacks)::

    train.csv, valid.csv      Path, Sex, Age, Frontal/Lateral, AP/PA, the 14 labels
    train/ valid/             patientNNNNN/studyN/viewN_frontal.jpg | viewN_lateral.jpg
    test_labels.csv           optional, the radiologist-consensus test labels: Path (test/patientN/studyN/
      | groundtruth.csv         viewN_frontal.jpg) and the 14 labels, per image; or groundtruth.csv of the
    test/                       test-set release: Study (CheXpert-v1.0/test/patientN/studyN) and the
                                labels, per study, for every image in the study folder

``Path`` starts with the release's folder name (``CheXpert-v1.0-small/train/...``); that first
part is dropped and the rest read under ``root``, so a renamed folder still works. A label is 1
(present), 0 (absent), -1 (uncertain) or blank (not mentioned: no finding written), so silence says
nothing (``unmentioned_findings: unknown``). ``No Finding`` names no category. Each other label
names the category whose ``chexpert`` field is that label and which the label names (the
knowledge base's ``collection_labels`` or synonyms); where the label names none of them, the one
such category in the CheXpert list. Splits: ``validation`` is a patient-level share of
``train.csv``; ``test`` is the official test set when its labels are under the root, else
``valid.csv`` (the common practice while the test labels were withheld), which otherwise joins
``validation``. Each item keeps its official ``split`` (``train``, ``valid``, ``test``).
"""

from __future__ import annotations

import time
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
    read_csv,
    validation_split,
)

NAME = "chexpert"
NORMAL_LABEL = "No Finding"
# The 13 findings, in the release's column order (after No Finding).
LABELS = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation",
          "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
          "Support Devices")  # fmt: skip
VALUES = {1.0: Presence.PRESENT, 0.0: Presence.ABSENT, -1.0: Presence.UNCERTAIN}
SPLIT_FOLDERS = ("train", "valid", "test")
VIEWS = ("frontal", "all")
TEST_TABLES = {"test_labels.csv": "Path", "groundtruth.csv": "Study"}
FIX = "--root must be the CheXpert-v1.0(-small) folder as it unpacks (train.csv, valid.csv, train/, valid/)."


def label_categories(knowledge_base: KnowledgeBase) -> dict[str, str]:
    """CheXpert label -> category id, by the categories' ``chexpert`` field (see the module docstring).

    Raises:
        CollectionError: a label that no category, or several without one named, claims.
    """
    mapper = LabelMapper(knowledge_base, NAME)
    categories = {}
    for label in LABELS:
        claimants = [c for c in knowledge_base.categories.values() if c.chexpert == label]
        named = mapper.lookup(label)
        chosen = [c.id for c in claimants if c.id == named] or [c.id for c in claimants if "chexpert" in c.lists]
        if len(chosen) != 1:
            raise CollectionError(
                f"the knowledge base has {len(chosen)} categories for the CheXpert label {label!r} "
                f"({', '.join(chosen) or 'none'}); give exactly one category `chexpert: {label}` and the label as a "
                f"synonym or in its collection_labels ({NAME}) in bundle/knowledge/knowledge_base.yaml"
            )
        categories[label] = chosen[0]
    return categories


def read_labels(row: dict[str, str], categories: dict[str, str], summary: Summary) -> list[dict[str, Any]]:
    """Findings of one row: 1 present, 0 absent, -1 uncertain, blank none (see the module docstring).

    Raises:
        ValueError: a value other than those (the row is skipped).
    """
    findings = []
    for label in (NORMAL_LABEL, *LABELS):
        text = row[label]
        if not text:
            continue
        try:
            presence = VALUES[float(text)]
        except (ValueError, KeyError):
            raise ValueError(f"{label} = {text!r}, not 1, 0, -1 or blank") from None
        summary.label_counts[f"{label} {presence.value}"] += 1
        if label != NORMAL_LABEL:
            findings.append(finding_record(categories[label], presence, label))
    return findings


def relative_parts(path_text: str) -> tuple[str, ...]:
    """The parts of a ``Path``/``Study`` value under the root: the release's folder name dropped."""
    parts = tuple(part for part in path_text.replace("\\", "/").split("/") if part)
    return parts[1:] if parts and parts[0] not in SPLIT_FOLDERS else parts


def is_frontal(row: dict[str, str], image: str) -> bool:
    """Frontal by the ``Frontal/Lateral`` column, or by the file name where the table has no such column."""
    return row["Frontal/Lateral"] == "Frontal" if row.get("Frontal/Lateral") else "_frontal" in image.rsplit("/", 1)[-1]


def table_images(root: Path, table: str, parts: tuple[str, ...]) -> list[str]:
    """The images a row labels, relative to the root: its ``Path``, or every ``view*.jpg`` of its study
    folder (groundtruth.csv)."""
    relative = "/".join(parts)
    if table == "groundtruth.csv":
        return sorted(f"{relative}/{image.name}" for image in (root / relative).glob("view*.jpg"))
    return [relative]


def find_test_table(root: Path) -> Path | None:
    present = [root / name for name in TEST_TABLES if (root / name).is_file()]
    if len(present) > 1:
        raise CollectionError(
            f"{root} holds both {' and '.join(p.name for p in present)}; keep the one test-label table you mean to use"
        )
    return present[0] if present else None


def prepare(
    root: Path, knowledge_base: KnowledgeBase, fractions: SplitFractions = SplitFractions(), views: str = "frontal"
) -> PreparedCollection:
    """Read the collection under ``root`` into datalist items (see the module docstring).

    ``views``: ``frontal`` (default; the published CheXpert protocols score frontal images) or ``all``.
    """
    if views not in VIEWS:
        raise CollectionError(f"views {views!r} is not one of {', '.join(VIEWS)}")
    root = Path(root)
    start = time.perf_counter()
    tables: dict[str, Path] = {}
    for split in ("train", "valid"):
        tables[split] = root / f"{split}.csv"
        if not tables[split].is_file():
            raise CollectionError(f"no {split}.csv under {root}. {FIX}")
    test_table = find_test_table(root)
    if test_table:
        tables["test"] = test_table
    summary = Summary(NAME, tables={split: path.name for split, path in tables.items()})
    categories = label_categories(knowledge_base)
    splits: dict[str, list[dict[str, Any]]] = {}
    patients = set()
    for official, table in tables.items():
        key = TEST_TABLES.get(table.name, "Path")
        view_columns = ("Frontal/Lateral", "AP/PA") if official != "test" else ()  # the test tables have none
        rows = read_csv(table, (key, NORMAL_LABEL, *LABELS, *view_columns))
        summary.rows += len(rows)
        for line, row in enumerate(rows, start=2):
            where = f"{table.name} line {line} ({row[key]})"
            parts = relative_parts(row[key])
            if len(parts) < 3 or not parts[1].startswith("patient"):
                summary.skip("not a <split>/patientN/studyN path", where)
                continue
            patient, study = parts[1], f"{parts[1]}/{parts[2]}"
            try:
                findings = read_labels(row, categories, summary)
            except ValueError as error:
                summary.skip("bad label value", f"{where}: {error}")
                continue
            patients.add(patient)
            images = table_images(root, table.name, parts)
            if not images:
                summary.missing_images.append("/".join(parts) + "/view*.jpg")
            for relative in images:
                if views == "frontal" and not is_frontal(row, relative):
                    summary.skip("lateral view (--views all keeps it)", relative)
                    continue
                image = root / relative
                if not image.is_file():
                    summary.missing_images.append(relative)
                    continue
                if official == "train":
                    split = validation_split(patient, fractions)
                else:
                    split = "test" if official == "test" or "test" not in tables else "validation"
                view = row.get("AP/PA") or ("Frontal" if is_frontal(row, relative) else "Lateral")
                item = make_item(image, findings, patient, view, study_id=study, official_split=official)
                splits.setdefault(split, []).append(item)
    summary.patients = len(patients)
    summary.notes.append(
        f"test: the official test set ({test_table.name}); valid.csv joins validation" if test_table
        else "test: valid.csv (no test_labels.csv or groundtruth.csv under the root)"
    )
    summary.seconds = time.perf_counter() - start
    return PreparedCollection(NAME, splits, list(categories.values()), "unknown", summary)
