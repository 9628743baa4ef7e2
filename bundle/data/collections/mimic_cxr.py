"""MIMIC-CXR-JPG (Johnson et al. 2019): 377,110 JPG radiographs of 227,827 studies of 65,379 patients,
with the free-text report of each study (MIMIC-CXR).

Layout under ``root`` (the ``mimic-cxr-jpg/2.x.0`` folder as PhysioNet serves it)::

    mimic-cxr-2.0.0-metadata.csv(.gz)   dicom_id, subject_id, study_id, ViewPosition, ... (one row per image)
    mimic-cxr-2.0.0-split.csv(.gz)      optional: dicom_id, study_id, subject_id, split (train/validate/test)
    mimic-cxr-2.0.0-chexpert.csv(.gz)   optional: subject_id, study_id and the 14 CheXpert labels (per study)
    files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg               the images
    mimic-cxr-reports/files/pXX/pSUBJECT/sSTUDY.txt        the reports (MIMIC-CXR's mimic-cxr-reports.zip),
      | files/pXX/pSUBJECT/sSTUDY.txt                       or unpacked beside the images

Findings come from the reports, through the extraction stage (``ReportFindings``: the rules
backend by default, or the findings file of an earlier scripts/extract_findings.py run, keyed by
study id ``sSTUDY``); every item keeps its ``report``. The CheXpert table's labels, where present,
are kept as ``labels`` (finding records, as the chexpert adapter reads them) for evaluation, not
for training. A report mentions what its author saw fit, so ``unmentioned_findings`` is
``unknown``. Frontal images (``ViewPosition`` PA or AP) by default. The official split keeps each
patient in one split; a patient found in several is moved wholly to the most held-out one (test,
then validate, then train) and counted. Without the split table the collection is split by patient.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from ...knowledge.base import KnowledgeBase
from . import chexpert
from .common import (
    CollectionError,
    PreparedCollection,
    ReportFindings,
    SplitFractions,
    Summary,
    find_table,
    knowledge_base_categories,
    make_item,
    patient_split,
    read_csv,
    report_findings,
)

NAME = "mimic-cxr"
METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition")
SPLIT_COLUMNS = ("dicom_id", "subject_id", "split")
FRONTAL_VIEWS = ("PA", "AP")
VIEWS = ("frontal", "all")
# official split -> datalist split, most held-out first (a patient in several goes to the first)
OFFICIAL_SPLITS = {"test": "test", "validate": "validation", "train": "training"}
REPORT_FOLDERS = ("mimic-cxr-reports/files", "files")
FIX = ("--root must be the MIMIC-CXR-JPG folder (mimic-cxr-jpg/2.x.0) holding mimic-cxr-2.0.0-metadata.csv(.gz) "
       "and files/; download it from physionet.org/content/mimic-cxr-jpg/")  # fmt: skip


def study_path(subject: str, study: str) -> str:
    """``pXX/pSUBJECT/sSTUDY``: where a study's images (a folder) and its report (``.txt``) live."""
    return f"p{subject[:2]}/p{subject}/s{study}"


def read_official_split(root: Path, summary: Summary) -> tuple[dict[str, str], dict[str, str]] | None:
    """``(dicom_id -> official split, subject -> official split)``, or None without the split table.

    A subject's split is the most held-out one of its images (see ``OFFICIAL_SPLITS``), so a patient
    that the table puts in several splits is never in two.
    """
    try:
        path = find_table(root, ("mimic-cxr-2.*-split.csv",), "split table", "")
    except CollectionError:
        summary.notes.append("no mimic-cxr-2.0.0-split.csv(.gz) under the root: split by patient")
        return None
    summary.tables["split"] = path.name
    by_image, by_subject = {}, {}
    rank = list(OFFICIAL_SPLITS)
    for line, row in enumerate(read_csv(path, SPLIT_COLUMNS), start=2):
        if row["split"] not in OFFICIAL_SPLITS:
            raise CollectionError(f"{path} line {line}: split {row['split']!r} is not one of {', '.join(rank)}. {FIX}")
        by_image[row["dicom_id"]] = row["split"]
        earlier = by_subject.get(row["subject_id"], row["split"])
        by_subject[row["subject_id"]] = min(earlier, row["split"], key=rank.index)
    return by_image, by_subject


def read_labels(root: Path, knowledge_base: KnowledgeBase, summary: Summary) -> dict[str, list[dict[str, Any]]]:
    """Study id -> the CheXpert table's labels as finding records; empty without the table."""
    try:
        path = find_table(root, ("mimic-cxr-2.*-chexpert.csv",), "CheXpert label table", "")
    except CollectionError:
        summary.notes.append("no mimic-cxr-2.0.0-chexpert.csv(.gz) under the root: items have no labels")
        return {}
    summary.tables["labels"] = path.name
    categories = chexpert.label_categories(knowledge_base)
    labels = {}
    for line, row in enumerate(read_csv(path, ("study_id", chexpert.NORMAL_LABEL, *chexpert.LABELS)), start=2):
        try:
            labels[row["study_id"]] = chexpert.read_labels(row, categories, summary)
        except ValueError as error:
            summary.skip("bad CheXpert label value (the study keeps no labels)", f"{path.name} line {line}: {error}")
    return labels


def read_report(root: Path, subject: str, study: str, found_in: Counter[str], summary: Summary) -> str | None:
    """The study's report, from the first of ``REPORT_FOLDERS`` that holds it (counted in ``found_in``);
    None when none does or it does not read (skipped in the summary)."""
    for folder in REPORT_FOLDERS:
        path = root / folder / f"{study_path(subject, study)}.txt"
        if path.is_file():
            found_in[folder] += 1
            try:
                return path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                summary.skip("unreadable report (not UTF-8 text)", f"{path}: {error}")
                return None
    return None


def prepare(
    root: Path,
    knowledge_base: KnowledgeBase,
    fractions: SplitFractions = SplitFractions(),
    views: str = "frontal",
    reports: ReportFindings | None = None,
) -> PreparedCollection:
    """Read the collection under ``root`` into datalist items (see the module docstring).

    ``views``: ``frontal`` (default: PA and AP, what MIMIC-CXR pre-training and its zero-shot
    protocols use) or ``all``. ``reports``: where the findings come from (default: the rules backend,
    without a cache).
    """
    if views not in VIEWS:
        raise CollectionError(f"views {views!r} is not one of {', '.join(VIEWS)}")
    root, reports = Path(root), reports or ReportFindings()
    start = time.perf_counter()
    metadata = find_table(root, ("mimic-cxr-2.*-metadata.csv",), "metadata table mimic-cxr-2.0.0-metadata.csv", FIX)
    rows = read_csv(metadata, METADATA_COLUMNS)
    summary = Summary(NAME, tables={"metadata": metadata.name}, rows=len(rows))
    official = read_official_split(root, summary)
    labels = read_labels(root, knowledge_base, summary)
    kept: list[dict[str, str]] = []
    for row in rows:
        dicom, subject, study, view = row["dicom_id"], row["subject_id"], row["study_id"], row["ViewPosition"]
        if not (subject.isdigit() and study.isdigit()):
            summary.skip("subject_id or study_id is not a number", f"{metadata.name}: {dicom}")
            continue
        if views == "frontal" and view not in FRONTAL_VIEWS:
            summary.skip(f"not a frontal view (ViewPosition not {' or '.join(FRONTAL_VIEWS)}; --views all keeps it)", dicom)
            continue
        if official is not None and dicom not in official[0]:
            summary.skip("not in the split table", dicom)
            continue
        relative = f"files/{study_path(subject, study)}/{dicom}.jpg"
        if not (root / relative).is_file():
            summary.missing_images.append(relative)
            continue
        kept.append(row)
    summary.patients = len({row["subject_id"] for row in kept})
    texts: dict[str, str | None] = {}
    found_in: Counter[str] = Counter()
    for row in kept:
        key = f"s{row['study_id']}"
        if key not in texts:
            texts[key] = read_report(root, row["subject_id"], row["study_id"], found_in, summary)
    summary.notes.append("reports looked for in " + " then ".join(
        f"{folder}/pXX/pSUBJECT/sSTUDY.txt ({found_in[folder]} found)" for folder in REPORT_FOLDERS))  # fmt: skip
    aliases = {key: (key[1:],) for key in texts}
    findings = report_findings(texts, aliases, reports, knowledge_base, summary)
    splits: dict[str, list[dict[str, Any]]] = {}
    moved = set()
    for row in kept:
        key, subject = f"s{row['study_id']}", row["subject_id"]
        if key not in findings:
            continue
        if official is None:
            official_split, split = None, patient_split(subject, fractions)
        else:
            official_split, patient_official = official[0][row["dicom_id"]], official[1][subject]
            split = OFFICIAL_SPLITS[patient_official]
            if official_split != patient_official:
                moved.add(f"p{subject}")
        image = root / f"files/{study_path(subject, row['study_id'])}/{row['dicom_id']}.jpg"
        item = make_item(image, findings[key], f"p{subject}", row["ViewPosition"] or None, key,
                         official_split=official_split, dicom_id=row["dicom_id"], report=texts[key],
                         labels=labels.get(row["study_id"]))  # fmt: skip
        splits.setdefault(split, []).append(item)
    if moved:
        summary.notes.append(f"{len(moved)} patients are in several official splits; all their images went to the "
                             f"most held-out one (test, then validate, then train): {', '.join(sorted(moved)[:10])}")
    summary.seconds = time.perf_counter() - start
    return PreparedCollection(NAME, splits, knowledge_base_categories(knowledge_base, splits), "unknown", summary)
