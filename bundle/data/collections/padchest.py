"""PadChest (Bustos et al., Medical Image Analysis 2020): 160,868 radiographs of 67,625 patients, Hospital San Juan.

Layout under ``root`` (the BIMCV release)::

    PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv (.gz/.zip)
        ImageID, ImageDir, StudyID, PatientID, Projection, MethodLabel, Labels, ... (one row per image)
    <ImageDir>/<ImageID>        16-bit PNG images, as the official archives 0.zip ... 54.zip unpack,
      or images/<ImageID>       or all in one flat folder (images/ or the root itself)

``Labels`` is a Python list literal of label strings (``['pleural effusion', 'COPD signs']``), read
with ``ast.literal_eval``. Each label is named with a category through the knowledge base
(``collection_labels`` of ``padchest``, then synonyms); many of PadChest's 174 finding labels have
no category and are reported with their counts. ``normal`` names no finding; ``suboptimal study``
and ``unchanged`` are remarks that name none either; a row labelled ``exclude`` is skipped. Rows
label the findings a report mentions, not every category, so silence says nothing
(``unmentioned_findings: unknown``). ``MethodLabel`` tells rows labelled by physicians
(``Physician``, about 27 %) from those labelled by the authors' model (``RNN_model``): it is kept
in each item as ``label_method`` and ``physician_only`` keeps only the former. ``Projection`` PA,
AP and AP_horizontal (a supine AP, written ``AP Supine``) are frontal; ``views="all"`` keeps the
others (L, COSTAL, ...). Files known to be unreadable are skipped, and so is any image whose header
does not open. No official split: split by patient.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

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
    patient_split,
    read_csv,
)

NAME = "padchest"
TABLE = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
COLUMNS = ("ImageID", "ImageDir", "StudyID", "PatientID", "Projection", "MethodLabel", "Labels")
NORMAL_LABEL = "normal"
EXCLUDE_LABEL = "exclude"
REMARK_LABELS = ("suboptimal study", "unchanged")
PHYSICIAN = "Physician"
FRONTAL_PROJECTIONS = {"PA": "PA", "AP": "AP", "AP_horizontal": "AP Supine"}
VIEWS = ("frontal", "all")
# Files of the release that cannot be read (missing from the archives, broken or truncated PNGs), as
# torchxrayvision's PC_Dataset lists them (Apache-2.0); any other file whose header fails is counted too.
UNREADABLE_FILES = frozenset({
    "216840111366964012819207061112010307142602253_04-014-084.png",
    "216840111366964012989926673512011074122523403_00-163-058.png",
    "216840111366964012959786098432011033083840143_00-176-115.png",
    "216840111366964012558082906712009327122220177_00-102-064.png",
    "216840111366964012339356563862009072111404053_00-043-192.png",
    "216840111366964013076187734852011291090445391_00-196-188.png",
    "216840111366964012373310883942009117084022290_00-064-025.png",
    "216840111366964012283393834152009033102258826_00-059-087.png",
    "216840111366964012373310883942009170084120009_00-097-074.png",
    "216840111366964012819207061112010315104455352_04-024-184.png",
    "216840111366964012819207061112010306085429121_04-020-102.png",
    "216840111366964012989926673512011083134050913_00-168-009.png",
    "216840111366964012373310883942009152114636712_00-102-045.png",
    "216840111366964012819207061112010281134410801_00-129-131.png",
    "216840111366964012487858717522009280135853083_00-075-001.png",
    "216840111366964012989926673512011151082430686_00-157-045.png",
    "216840111366964013686042548532013208193054515_02-026-007.png",
    "216840111366964013590140476722013058110301622_02-056-111.png",
    "216840111366964013590140476722013043111952381_02-065-198.png",
    "216840111366964013829543166512013353113303615_02-092-190.png",
    "216840111366964013962490064942014134093945580_01-178-104.png",
})  # fmt: skip
FIX = f"Download {TABLE} from the BIMCV PadChest release (bimcv.cipf.es/bimcv-projects/padchest) into the root."


def parse_labels(text: str) -> list[str]:
    """The label strings of a ``Labels`` cell (a Python list literal; never ``eval``), stripped.

    Raises:
        ValueError: not a list of strings.
    """
    try:
        labels = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"Labels {text[:60]!r} is not a Python list literal") from None
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ValueError(f"Labels {text[:60]!r} is not a list of strings")
    return [label.strip() for label in labels if label.strip()]


def image_folders(root: Path) -> list[Path]:
    """The archives' numbered folders (``0`` ... ``54``), then a flat ``images/`` folder and the root."""
    numbered = sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    return [*numbered, root / "images", root]


def opens(image: Path) -> str | None:
    """None when the image's header opens (``Image.open`` parses it), else why not. Pixels are not
    decoded: over the release's terabyte that would take hours, so a file truncated after its header
    passes here (the known ones are in ``UNREADABLE_FILES``)."""
    try:
        with Image.open(image):
            pass
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def prepare(
    root: Path,
    knowledge_base: KnowledgeBase,
    fractions: SplitFractions = SplitFractions(),
    views: str = "frontal",
    physician_only: bool = False,
) -> PreparedCollection:
    """Read the collection under ``root`` into datalist items (see the module docstring)."""
    if views not in VIEWS:
        raise CollectionError(f"views {views!r} is not one of {', '.join(VIEWS)}")
    root = Path(root)
    start = time.perf_counter()
    table = find_table(root, (TABLE, "PADCHEST_chest_x_ray_images_labels_160K*.csv"), f"label table {TABLE}", FIX)
    rows = read_csv(table, COLUMNS)
    summary = Summary(NAME, tables={"labels": table.name}, rows=len(rows))
    mapper = LabelMapper(knowledge_base, NAME, normal_labels=(NORMAL_LABEL,), ignored_labels=(EXCLUDE_LABEL, *REMARK_LABELS))
    images = index_files(image_folders(root), (".png",))
    splits: dict[str, list[dict[str, Any]]] = {}
    patients = set()
    for line, row in enumerate(rows, start=2):
        name = row["ImageID"]
        where = f"line {line} ({name})"
        if physician_only and row["MethodLabel"] != PHYSICIAN:
            summary.skip("labelled by the model, not a physician (--physician-only)", where)
            continue
        if views == "frontal" and row["Projection"] not in FRONTAL_PROJECTIONS:
            summary.skip("not a frontal projection (PA, AP, AP_horizontal; --views all keeps it)",
                         f"{where}: {row['Projection']}")  # fmt: skip
            continue
        try:
            labels = parse_labels(row["Labels"]) if row["Labels"] else []
        except ValueError as error:
            summary.skip("unreadable Labels", f"{where}: {error}")
            continue
        if not labels:
            summary.skip("no labels", where)
            continue
        if any(label.casefold() == EXCLUDE_LABEL for label in labels):
            summary.skip("labelled exclude by the annotators", where)
            continue
        named = mapper.read(labels)
        if not named and not any(mapper.is_normal(label) for label in labels):
            # no finding would read as a normal image
            summary.skip("labels name no knowledge-base category", f"{where}: {', '.join(labels)}")
            continue
        if name in UNREADABLE_FILES:
            summary.skip("known unreadable file of the release", where)
            continue
        patient = row["PatientID"]
        patients.add(patient)
        image = images.get(name)
        if image is None:
            summary.missing_images.append(f"{row['ImageDir']}/{name}")
            continue
        problem = opens(image)
        if problem:
            summary.skip("image does not open", f"{image} ({problem})")
            continue
        view = FRONTAL_PROJECTIONS.get(row["Projection"], row["Projection"] or None)
        item = make_item(image, label_findings(named), patient, view, study_id=row["StudyID"] or name,
                         label_method=row["MethodLabel"] or None)  # fmt: skip
        splits.setdefault(patient_split(patient, fractions), []).append(item)
    summary.patients = len(patients)
    summary.label_counts = mapper.label_counts
    summary.unmapped_labels = mapper.unmapped
    summary.seconds = time.perf_counter() - start
    return PreparedCollection(NAME, splits, categories_in_order((), splits), "unknown", summary)
