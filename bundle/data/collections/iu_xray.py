"""IU X-ray / Open-i (Demner-Fushman et al., JAMIA 2016): 3,955 de-identified chest X-ray reports of
Indiana University, each with its frontal and lateral images (7,470).

Layout under ``root``::

    ecgen-radiology/*.xml         the reports as Open-i publishes them (NLMCXR_reports.tgz): uId, the
                                  FINDINGS and IMPRESSION AbstractText, a parentImage per image
      | iu_reports*.csv            or a table of them: uId, findings, impression, images (";"-separated
      | indiana_reports.csv        image ids); or Kaggle's indiana_reports.csv (uid, findings, impression),
                                  whose images come from the projection table
    indiana_projections.csv       uid, filename, projection (Frontal/Lateral): Kaggle's projection table
    NLMCXR_png/CXR1_1_IM-0001-4001.png              optional images, Open-i's NLMCXR_png.tgz
      | images/images_normalized/1_IM-0001-4001.dcm.png   or Kaggle's, found by name in images/,
                                                          images/images_normalized/, NLMCXR_png/ or the root

The XML tree wins over a table when both are present. A report's text is its FINDINGS and
IMPRESSION as ``FINDINGS: ...`` / ``IMPRESSION: ...`` paragraphs, exactly as
scripts/extract_findings.py reads the XML or the table (``--text-columns findings,impression``), so
their cache and findings files serve here. Findings come from the reports through the extraction
stage (``ReportFindings``), keyed by ``uId`` (``CXR1``; the table's bare number also matches).
Open-i's image ids (``CXR2_IM-0652-1001``) and Kaggle's file names (``2_IM-0652-1001.dcm.png``)
meet on the report number and the ``IM-`` part. Frontal images only by default. Each report is one
study of one patient (the collection keeps no patient id across reports), so the patient-level
split is a split by report. ``unmentioned_findings`` is ``unknown``, as for every report collection.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...extraction.readers import compose_text
from ...knowledge.base import KnowledgeBase
from .common import (
    CollectionError,
    PreparedCollection,
    ReportFindings,
    SplitFractions,
    Summary,
    find_table,
    index_files,
    knowledge_base_categories,
    make_item,
    patient_split,
    read_csv,
    report_findings,
)

NAME = "iu-xray"
XML_FOLDER = "ecgen-radiology"
REPORT_TABLES = ("iu_reports*.csv", "indiana_reports.csv")
PROJECTIONS = "indiana_projections.csv"
IMAGE_FOLDERS = ("NLMCXR_png", "images/images_normalized", "images", ".")
TEXT_SECTIONS = ("findings", "impression")
VIEWS = ("frontal", "all")
FRONTAL = "Frontal"
# Open-i image id (CXR1_1_IM-0001-4001, CXR2_IM-0652-1001) and Kaggle file name (1_IM-0001-4001.dcm.png):
# the report number and the IM- part name one image in both.
OPENI_IMAGE = re.compile(r"CXR(\d+)_(?:.*_)?(IM-[^_]+?)(?:\.png)?")
KAGGLE_IMAGE = re.compile(r"(\d+)_(?:.*_)?(IM-[^_]+?)\.dcm\.png")
FIX = (f"--root must hold the reports ({XML_FOLDER}/*.xml from Open-i's NLMCXR_reports.tgz, or a reports CSV) and "
       f"{PROJECTIONS}")  # fmt: skip


@dataclass
class Report:
    uid: str  # CXRn
    text: str
    images: list[str] | None  # Open-i image ids; None when the source lists none (Kaggle's table)
    where: str


def image_key(name: str) -> tuple[str, str] | None:
    """``(report number, IM- part)`` of an Open-i image id or file name, or of a Kaggle file name."""
    match = OPENI_IMAGE.fullmatch(name) or KAGGLE_IMAGE.fullmatch(name)
    return (match.group(1), match.group(2)) if match else None


def read_xml_reports(folder: Path, summary: Summary) -> list[Report]:
    reports = []
    for file in sorted(folder.glob("*.xml"), key=lambda path: (len(path.stem), path.stem)):
        try:
            root = ET.parse(file).getroot()
        except ET.ParseError as error:
            summary.skip("malformed XML (re-extract it from NLMCXR_reports.tgz)", f"{file.name}: {error}")
            continue
        uid = root.find("uId")
        sections = {(node.get("Label") or "").lower(): (node.text or "").strip() for node in root.iter("AbstractText")}
        images = [node.get("id", "") for node in root.iter("parentImage") if node.get("id")]
        record_id = uid.get("id") if uid is not None and uid.get("id") else file.stem
        reports.append(Report(record_id, compose_text(sections, TEXT_SECTIONS), images, file.name))
    return reports


def read_table_reports(path: Path) -> list[Report]:
    rows = read_csv(path, TEXT_SECTIONS)
    header = rows[0].keys() if rows else ()
    if rows and "uId" not in header and "uid" not in header:
        raise CollectionError(f"{path} has no uId or uid column (its columns: {list(header)}). {FIX}")
    reports = []
    for line, row in enumerate(rows, start=2):
        uid = row["uId"] if "uId" in row else f"CXR{row['uid']}"
        images = [image for image in row["images"].split(";") if image] if "images" in row else None
        reports.append(Report(uid, compose_text(row, TEXT_SECTIONS), images, f"{path.name} line {line}"))
    return reports


def read_projections(root: Path, views: str, summary: Summary) -> dict[str, dict[tuple[str, str], str]]:
    """Report number -> {image key -> projection}; empty without the table when every view is kept.

    Raises:
        CollectionError: no projection table though only frontal images are wanted.
    """
    path = root / PROJECTIONS
    if not path.is_file():
        if views == "frontal":
            raise CollectionError(f"no {PROJECTIONS} under {root}: frontal images cannot be told from lateral ones. "
                                  f"Add Kaggle's table (raddar/chest-xrays-indiana-university), or pass --views all")  # fmt: skip
        summary.notes.append(f"no {PROJECTIONS}: views unknown")
        return {}
    summary.tables["projections"] = path.name
    projections: dict[str, dict[tuple[str, str], str]] = {}
    for line, row in enumerate(read_csv(path, ("uid", "filename", "projection")), start=2):
        key = image_key(row["filename"])
        if key is None:
            summary.skip(f"file name not of the form N_IM-....dcm.png in {PROJECTIONS}", f"line {line}: {row['filename']}")
            continue
        projections.setdefault(key[0], {})[key] = row["projection"]
    return projections


def index_images(root: Path) -> dict[tuple[str, str], Path]:
    """Image key -> PNG file, over the folders where Open-i's and Kaggle's archives unpack."""
    files = index_files([root / folder for folder in IMAGE_FOLDERS], (".png",))
    return {key: path for name, path in files.items() if (key := image_key(name)) is not None}


def read_reports(root: Path, summary: Summary) -> list[Report]:
    if (root / XML_FOLDER).is_dir():
        summary.tables["reports"] = f"{XML_FOLDER}/*.xml"
        return read_xml_reports(root / XML_FOLDER, summary)
    path = find_table(root, REPORT_TABLES, f"reports ({XML_FOLDER}/*.xml or a reports CSV)", FIX)
    summary.tables["reports"] = path.name
    return read_table_reports(path)


def prepare(
    root: Path,
    knowledge_base: KnowledgeBase,
    fractions: SplitFractions = SplitFractions(),
    views: str = "frontal",
    reports: ReportFindings | None = None,
) -> PreparedCollection:
    """Read the collection under ``root`` into datalist items (see the module docstring).

    ``views``: ``frontal`` (default) or ``all``. ``reports``: where the findings come from (default:
    the rules backend, without a cache).
    """
    if views not in VIEWS:
        raise CollectionError(f"views {views!r} is not one of {', '.join(VIEWS)}")
    root, reports = Path(root), reports or ReportFindings()
    start = time.perf_counter()
    summary = Summary(NAME)
    records = read_reports(root, summary)
    summary.rows = len(records)
    projections = read_projections(root, views, summary)
    images = index_images(root)
    kept: dict[str, list[tuple[Path, str | None]]] = {}
    texts: dict[str, str] = {}
    for report in records:
        number = report.uid.removeprefix("CXR")
        listed = projections.get(number, {})
        named = {name: image_key(name) for name in report.images} if report.images is not None else {
            f"CXR{key[0]}_{key[1]}": key for key in listed}  # fmt: skip
        if not named:
            summary.skip("no images listed", f"{report.where} ({report.uid})")
            continue
        if not report.text:
            summary.skip("no FINDINGS or IMPRESSION text", f"{report.where} ({report.uid})")
            continue
        for name, key in named.items():
            projection = listed.get(key) if key else None
            if views == "frontal" and projection != FRONTAL:
                reason = f"{projection.lower()} view" if projection else f"projection unknown (not in {PROJECTIONS})"
                summary.skip(f"{reason}; --views all keeps it", name)
                continue
            if key not in images:
                summary.missing_images.append(name)
                continue
            kept.setdefault(report.uid, []).append((images[key], projection))
            texts[report.uid] = report.text
    summary.patients = len(kept)
    aliases = {uid: (uid.removeprefix("CXR"),) for uid in texts}
    findings = report_findings(texts, aliases, reports, knowledge_base, summary)
    splits: dict[str, list[dict[str, Any]]] = {}
    for uid, uid_images in kept.items():
        if uid not in findings:
            continue
        split = patient_split(uid, fractions)
        for image, projection in uid_images:
            item = make_item(image, findings[uid], uid, projection, uid, report=texts[uid])
            splits.setdefault(split, []).append(item)
    summary.notes.append("each report is one study of one patient: the patient-level split is a split by report")
    summary.seconds = time.perf_counter() - start
    return PreparedCollection(NAME, splits, knowledge_base_categories(knowledge_base, splits), "unknown", summary)
