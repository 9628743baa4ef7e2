"""RSNA Pneumonia Detection Challenge (Kaggle 2018): 26,684 frontal DICOM radiographs, pneumonia boxes.

Layout under ``root`` (the competition download)::

    stage_2_train_labels.csv (.gz/.zip)        patientId, x, y, width, height, Target (one row per box;
                                               Target 0 rows have no box)
    stage_2_train_images/<patientId>.dcm       the DICOM images
    *stage_2_train_images_dicom_headers.csv    optional: DICOM header fields per image (Filename,
                                               PatientID, ViewPosition, ...), as torchxrayvision ships it

``Target`` 1 says the image shows pneumonia ("Lung Opacity" in the detailed class table), with
its boxes in pixels of the 1024 x 1024 image; 0 says it does not. Every image is labelled for
its one category, so ``unmentioned_findings`` is ``absent`` and negatives carry an explicit
absent finding. Patient id and view come from the header table where it lists the image, else
from the DICOM header. The challenge gave every image its own patient id, so the patient split
is in effect an image split.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pydicom

from ...findings import Finding, Presence
from ...knowledge.base import KnowledgeBase
from .common import (
    CollectionError,
    PreparedCollection,
    SplitFractions,
    Summary,
    find_table,
    index_files,
    make_item,
    patient_split,
    read_csv,
    required_category,
)

NAME = "rsna-pneumonia"
LABEL = "Pneumonia"
COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
HEADER_COLUMNS = ("Filename", "PatientID", "ViewPosition")
IMAGE_FOLDER = "stage_2_train_images"
FIX = "Download stage_2_train_labels.csv from the RSNA Pneumonia Detection Challenge (Kaggle) into the root."


def read_header_table(root: Path, summary: Summary) -> dict[str, dict[str, str]]:
    """patientId -> {PatientID, ViewPosition} from the optional DICOM header table (empty without one)."""
    try:
        path = find_table(root, ("*stage_2_train_images_dicom_headers.csv",), "DICOM header table", "")
    except CollectionError:
        return {}
    summary.tables["dicom headers"] = path.name
    return {Path(row["Filename"]).stem: row for row in read_csv(path, HEADER_COLUMNS)}


def image_label(image_id: str, rows: list[dict[str, str]], category: str) -> tuple[Presence, list[dict[str, Any]]]:
    """The presence of pneumonia on one image and its boxes, from all the image's rows.

    Raises:
        ValueError: a Target other than 0/1, rows that disagree on it, or a positive row whose box is not
            four numbers (the whole image is then skipped: a partial label would be wrong).
    """
    targets = {row["Target"] for row in rows}
    if not targets <= {"0", "1"} or len(targets) != 1:
        raise ValueError(f"{image_id}: Target {sorted(targets)} (expected one of 0 or 1 on all its rows)")
    if targets == {"0"}:
        return Presence.ABSENT, []
    boxes = []
    for row in rows:
        try:
            x, y, width, height = (float(row[key]) for key in ("x", "y", "width", "height"))
        except ValueError:
            raise ValueError(f"{image_id}: Target 1 with box {[row[k] for k in COLUMNS[1:5]]}, not four numbers") from None
        boxes.append({"category": category, "label": LABEL, "x": x, "y": y, "width": width, "height": height})
    return Presence.PRESENT, boxes


def prepare(root: Path, knowledge_base: KnowledgeBase, fractions: SplitFractions = SplitFractions()) -> PreparedCollection:
    """Read the collection under ``root`` into datalist items (see the module docstring)."""
    root = Path(root)
    start = time.perf_counter()
    table = find_table(root, ("*stage_2_train_labels.csv",), "label table stage_2_train_labels.csv", FIX)
    rows = read_csv(table, COLUMNS)
    summary = Summary(NAME, tables={"labels": table.name}, rows=len(rows))
    category = required_category(knowledge_base, NAME, LABEL)
    per_image: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        per_image[row["patientId"]].append(row)
    headers = read_header_table(root, summary)
    images = index_files([root / IMAGE_FOLDER], (".dcm",))
    splits: dict[str, list[dict[str, Any]]] = {}
    patients, box_count = set(), 0
    for image_id, image_rows in per_image.items():
        try:
            presence, boxes = image_label(image_id, image_rows, category)
        except ValueError as error:
            summary.skip("bad label rows", str(error))
            continue
        summary.label_counts[LABEL if presence is Presence.PRESENT else f"no {LABEL}"] += 1
        header: Any = headers.get(image_id)
        if header is not None:
            patients.add(header["PatientID"] or image_id)
        image = images.get(f"{image_id}.dcm")
        if image is None:
            summary.missing_images.append(f"{IMAGE_FOLDER}/{image_id}.dcm")
            continue
        if header is None:
            try:
                header = pydicom.dcmread(image, stop_before_pixels=True)
            except (pydicom.errors.InvalidDicomError, OSError, ValueError) as error:
                summary.skip("unreadable DICOM header", f"{image} ({type(error).__name__}: {error})")
                continue
        patient = str(header.get("PatientID", "")) or image_id
        patients.add(patient)
        box_count += len(boxes)
        findings = [Finding(category, presence=presence).to_dict()]
        item = make_item(image, findings, patient, str(header.get("ViewPosition", "")) or None, study_id=image_id,
                         boxes=boxes or None)  # fmt: skip
        splits.setdefault(patient_split(patient, fractions), []).append(item)
    summary.patients = len(patients)
    summary.notes.append(f"{box_count} pneumonia boxes written")
    summary.seconds = time.perf_counter() - start
    return PreparedCollection(NAME, splits, [category], "absent", summary)
