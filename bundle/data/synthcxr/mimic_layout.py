"""SynthCXR written in the MIMIC-CXR-JPG layout, so that the real pre-training path (report tree ->
findings extraction -> scripts/prepare_dataset.py --collection mimic-cxr -> training) runs on any
machine without credentialed data.

Layout under the output folder, as PhysioNet serves MIMIC-CXR-JPG and MIMIC-CXR's reports::

    files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg       the radiograph (8-bit grayscale JPEG)
    mimic-cxr-reports/files/pXX/pSUBJECT/sSTUDY.txt the report, with MIMIC's FINAL REPORT header
    mimic-cxr-2.0.0-metadata.csv.gz               dicom_id, subject_id, study_id, ViewPosition, ...
    mimic-cxr-2.0.0-split.csv.gz                  dicom_id, study_id, subject_id, split (train/validate/test)
    mimic-cxr-2.0.0-chexpert.csv.gz               subject_id, study_id, the 14 CheXpert labels (1.0/0.0/-1.0/blank)

Patients, studies, splits and findings are SynthCXR's (``plan_dataset``): patient ``k`` is subject
``10000000 + k``, study ``j`` (in plan order) is ``50000000 + j``, and each study has one PA image.
The CheXpert labels roll the study's ground-truth findings up to the CheXpert labels
(``bundle.extraction.writers.chexpert_labels``), as a labeler would from a perfect reading. The
tables are gzip-compressed like the release, with a fixed timestamp, so the same arguments give
the same bytes.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ...extraction.writers import chexpert_labels
from ...io import write_bytes_atomic
from ...knowledge.base import CHEXPERT_LABELS, KnowledgeBase, default_knowledge_base
from .dataset import StudyPlan, map_studies, plan_dataset
from .study import generate_study

FIRST_SUBJECT = 10_000_000
FIRST_STUDY = 50_000_000
SPLIT_NAMES = {"training": "train", "validation": "validate", "test": "test"}
METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
                    "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                    "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning")  # fmt: skip
LABEL_COLUMNS = tuple(sorted(CHEXPERT_LABELS))  # the release's column order
REPORT_HEADER = "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA)\n \n"
JPEG_QUALITY = 95


def dicom_id(seed: int, study_id: int) -> str:
    """A MIMIC-style image id (five dash-separated groups of 8 hex digits), fixed by the seed and study."""
    digest = hashlib.sha256(f"synthcxr-{seed}-{study_id}".encode()).hexdigest()[:40]
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def jpeg_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def gzip_csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    """A CSV table gzip-compressed with timestamp 0 (the same rows give the same bytes)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return gzip.compress(text.getvalue().encode("utf-8"), mtime=0)


def write_mimic_study(task: tuple[Path, int, int, int, StudyPlan]) -> dict[str, Any]:
    """Draw one planned study (``out_dir, size, seed, index in the plan, plan``), write its JPEG and
    report, and return its table fields and ground-truth findings."""
    out_dir, size, seed, index, plan = task
    study = generate_study(plan.study_seed, size, specs=plan.specs, patient_seed=plan.patient_seed,
                           negatable=plan.negatable, follow_up=plan.follow_up)  # fmt: skip
    subject, study_id = FIRST_SUBJECT + int(plan.patient_id[1:]), FIRST_STUDY + index
    image_id = dicom_id(seed, study_id)
    folder = f"p{str(subject)[:2]}/p{subject}/s{study_id}"
    write_bytes_atomic(out_dir / "files" / folder / f"{image_id}.jpg", jpeg_bytes(study.image), fsync=False)
    report = REPORT_HEADER + study.report + "\n"
    write_bytes_atomic(out_dir / "mimic-cxr-reports/files" / f"{folder}.txt", report.encode("utf-8"), fsync=False)
    return {"dicom_id": image_id, "subject_id": subject, "study_id": study_id, "split": SPLIT_NAMES[plan.split],
            "findings": study.findings, "rows": size, "columns": size}  # fmt: skip


def _check_folder(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"'{out_dir}' is a file, not a folder: give a new or empty folder for the data set")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ValueError(f"'{out_dir}' is not empty; give a new or empty folder, or pass --overwrite to write into it "
                         "(files with the layout's names are replaced, nothing is deleted)")  # fmt: skip


def write_mimic_layout(
    out_dir: str | Path,
    n: int = 2000,
    size: int = 224,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normal_fraction: float = 0.25,
    workers: int = 2,
    progress: bool = True,
    overwrite: bool = False,
    knowledge_base: KnowledgeBase | None = None,
) -> Path:
    """Generate SynthCXR and write it in the MIMIC-CXR-JPG layout (see the module docstring); returns
    the metadata table's path (written last, so its presence means a complete folder).

    ``workers`` processes draw the studies (the files are the same whatever their number);
    ``knowledge_base`` rolls findings up to CheXpert labels (default: the bundle's).
    """
    out_dir = Path(out_dir)
    _check_folder(out_dir, overwrite)
    plans = plan_dataset(n, seed, (), val_fraction, test_fraction, normal_fraction)
    knowledge_base = knowledge_base or default_knowledge_base()
    tasks = [(out_dir, size, seed, index, plan) for index, plan in enumerate(plans)]
    studies = map_studies(write_mimic_study, tasks, workers, "SynthCXR (MIMIC-CXR layout)", progress)
    labels = []
    for study in studies:
        values = chexpert_labels(study["findings"], knowledge_base)
        labels.append([study["subject_id"], study["study_id"],
                       *("" if values[label] is None else f"{values[label]:.1f}" for label in LABEL_COLUMNS)])  # fmt: skip
    tables = {
        "mimic-cxr-2.0.0-chexpert.csv.gz": gzip_csv(("subject_id", "study_id", *LABEL_COLUMNS), labels),
        "mimic-cxr-2.0.0-split.csv.gz": gzip_csv(
            ("dicom_id", "study_id", "subject_id", "split"),
            [(s["dicom_id"], s["study_id"], s["subject_id"], s["split"]) for s in studies],
        ),
        "mimic-cxr-2.0.0-metadata.csv.gz": gzip_csv(
            METADATA_COLUMNS,
            [(s["dicom_id"], s["subject_id"], s["study_id"], "CHEST (PA)", "PA", s["rows"], s["columns"], "",
              "", "CHEST (PA)", "postero-anterior", "Erect") for s in studies],
        ),
    }  # fmt: skip
    for name, data in tables.items():
        write_bytes_atomic(out_dir / name, data)
    return out_dir / "mimic-cxr-2.0.0-metadata.csv.gz"
