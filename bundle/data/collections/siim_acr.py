"""SIIM-ACR Pneumothorax Segmentation (Kaggle 2019): DICOM radiographs with pneumothorax masks as RLE.

Layout under ``root`` (the competition download)::

    train-rle.csv (.gz)                          ImageId, EncodedPixels (" -1": no pneumothorax; one row per region)
    **/<ImageId>.dcm                             the DICOM files, found by name in any sub-folder
                                                 (dicom-images-train/<study>/<series>/<ImageId>.dcm)

``EncodedPixels`` is the competition's relative run-length code: pairs ``start length`` where each
start counts from the end of the previous run, over the pixels in column-major order (the
competition's ``rle2mask(...).T``). The masks are decoded to 8-bit PNG label maps (1 = pneumothorax)
in ``masks_dir``, one per image, empty for ``-1`` images, and become the items' ``lesion_mask``.
Patient id and view come from the DICOM header. Every image is labelled for its one category, so
``unmentioned_findings`` is ``absent``; negatives also carry an explicit absent finding. Split by patient.
"""

from __future__ import annotations

import io
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image

from ...findings import Finding, Presence
from ...io import write_bytes_atomic
from ...knowledge.base import KnowledgeBase
from .common import (
    CollectionError,
    PreparedCollection,
    SplitFractions,
    Summary,
    find_table,
    make_item,
    patient_split,
    read_csv,
    required_category,
)

NAME = "siim-acr"
LABEL = "Pneumothorax"
EMPTY = "-1"
COLUMNS = ("ImageId", "EncodedPixels")
FIX = "Download train-rle.csv from the SIIM-ACR Pneumothorax Segmentation competition into the root."


def decode_rle(encoded: str, height: int = 1024, width: int = 1024) -> np.ndarray:
    """The ``[height, width]`` uint8 mask (1 inside) of one relative, column-major RLE string.

    Raises:
        ValueError: not an even number of integers, a negative value, or runs beyond the image.
    """
    values = np.array(encoded.split(), dtype=np.int64) if encoded.strip() else np.zeros(0, dtype=np.int64)
    if values.size % 2 or (values < 0).any():
        raise ValueError(f"RLE {encoded[:40]!r}... is not pairs of non-negative integers")
    gaps, lengths = values[0::2], values[1::2]
    # each start is relative to the end of the previous run
    starts = np.cumsum(gaps) + np.concatenate(([0], np.cumsum(lengths)[:-1]))
    flat = np.zeros(height * width, dtype=np.uint8)
    if starts.size and starts[-1] + lengths[-1] > flat.size:
        raise ValueError(f"RLE runs reach pixel {starts[-1] + lengths[-1]} of a {height} x {width} image")
    for start, length in zip(starts, lengths):
        flat[start:start + length] = 1
    return flat.reshape(width, height).T


def png_bytes(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def prepare(
    root: Path, knowledge_base: KnowledgeBase, fractions: SplitFractions = SplitFractions(), masks_dir: Path | None = None
) -> PreparedCollection:
    """Read the collection under ``root``, writing the decoded masks to ``masks_dir`` (see the module docstring)."""
    if masks_dir is None:
        raise CollectionError("siim-acr writes its decoded masks to a folder: pass masks_dir (--masks-dir)")
    root, masks_dir = Path(root), Path(masks_dir)
    start = time.perf_counter()
    table = find_table(root, ("train-rle.csv", "siim-pneumothorax-train-rle.csv"), "RLE table train-rle.csv", FIX)
    rows = read_csv(table, COLUMNS)
    summary = Summary(NAME, tables={"labels": table.name}, rows=len(rows))
    category = required_category(knowledge_base, NAME, LABEL)
    codes: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        codes[row["ImageId"]].append(row["EncodedPixels"])
    summary.label_counts.update({LABEL: sum(any(c != EMPTY for c in rles) for rles in codes.values()),
                                 f"no {LABEL}": sum(all(c == EMPTY for c in rles) for rles in codes.values())})  # fmt: skip
    dicoms = {path.stem: path for path in root.rglob("*.dcm")}
    splits: dict[str, list[dict[str, Any]]] = {}
    patients = set()
    for image_id, rles in codes.items():
        if image_id not in dicoms:
            summary.missing_images.append(f"{image_id}.dcm")
            continue
        try:
            header = pydicom.dcmread(dicoms[image_id], stop_before_pixels=True)
            height, width = int(header.Rows), int(header.Columns)
        except (pydicom.errors.InvalidDicomError, AttributeError, OSError, ValueError) as error:
            summary.skip("unreadable DICOM header", f"{dicoms[image_id]} ({type(error).__name__}: {error})")
            continue
        mask = np.zeros((height, width), dtype=np.uint8)
        try:
            for rle in rles:
                if rle != EMPTY:
                    mask |= decode_rle(rle, height, width)
        except ValueError as error:
            summary.skip("bad RLE row", f"{image_id}: {error}")
            continue
        mask_path = masks_dir / f"{image_id}.png"
        write_bytes_atomic(mask_path, png_bytes(mask), fsync=False)  # regenerable, one of thousands
        presence = Presence.PRESENT if mask.any() else Presence.ABSENT
        patient = str(header.get("PatientID", "")) or image_id
        patients.add(patient)
        findings = [Finding(category, presence=presence).to_dict()]
        item = make_item(dicoms[image_id], findings, patient, str(header.get("ViewPosition", "")) or None,
                         study_id=image_id, lesion_mask=mask_path)  # fmt: skip
        splits.setdefault(patient_split(patient, fractions), []).append(item)
    summary.patients = len(patients)
    summary.seconds = time.perf_counter() - start
    return PreparedCollection(NAME, splits, [category], "absent", summary)
