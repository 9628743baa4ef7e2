"""The SynthCXR data set on disk: synthetic patients, splits by patient, held-out categories, files.

``plan_dataset`` decides everything cheap and sequential in one process (patients and their
1-3 studies, the split of each patient, which findings each study has, findings carried over
from a patient's previous study, held-out categories forced into the test split), so that
the expensive part, ``write_study`` (drawing and writing files), is independent per study and
the output is byte-identical whatever the number of workers.

Layout under the output folder (``<id>`` is the study id, e.g. ``p00012_s1``)::

    images/<id>.png          8-bit grayscale radiograph
    masks/lung/<id>.png      uint8 lung fields: 0 background, 1 right lung, 2 left lung
    masks/lesion/<id>.png    uint8 lesions: 0 background, k = findings[k-1] (a drawn finding)
    reports/<id>.txt         the report
    findings/<id>.json       ground truth: findings, lesion labels, acquisition
    datalist.json            splits of items (see ``docs/data.md``)
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ...io import write_bytes_atomic
from .recipes import CATEGORY_RECIPES, FindingSpec
from .sampling import sample_findings
from .study import SAMPLING, generate_study, seeded_rng

GENERATOR_VERSION = "1.0.0"
SPLITS = ("training", "validation", "test")
PATIENT_PLAN = 100  # purpose ids of the run-level generators, apart from the per-study ones
SPLIT_PLAN = 101
MAX_STUDIES_PER_PATIENT = 3
CARRY_OVER = 0.5  # chance that a finding persists into the patient's next study
UNSEEN_CYCLE = 8  # each held-out category is forced into one test study in 8 (one in m + 1 if m > 7 are held out)


@dataclass(frozen=True)
class StudyPlan:
    """Everything that decides one study before it is drawn."""

    patient_id: str
    study_id: str
    split: str
    patient_seed: tuple[int, ...]
    study_seed: tuple[int, ...]
    specs: tuple[FindingSpec, ...]
    negatable: tuple[str, ...]
    follow_up: bool


def plan_dataset(
    n: int,
    seed: int = 0,
    unseen: Sequence[str] = (),
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normal_fraction: float = 0.25,
) -> list[StudyPlan]:
    """Plan ``n`` studies: patients, disjoint patient splits, and each study's findings.

    Held-out (``unseen``) categories are never drawn, hedged or even negated in training and
    validation reports; in the test split each is forced in turn into one study in
    ``UNSEEN_CYCLE`` (12.5%), on top of its ordinary chance.
    """
    categories = list(CATEGORY_RECIPES)
    _check_arguments(n, unseen, val_fraction, test_fraction, normal_fraction, categories)
    study_counts = _patients(n, seed)
    split_of = _split_patients(study_counts, n, seed, val_fraction, test_fraction)
    if unseen and "test" not in split_of:
        raise ValueError(f"n={n} is too small for a test split, where the held-out categories {list(unseen)} appear")
    seen = [c for c in categories if c not in unseen]
    cycle = max(len(unseen) + 1, UNSEEN_CYCLE)
    plans: list[StudyPlan] = []
    test_index = 0
    for patient, count in enumerate(study_counts):
        split = split_of[patient]
        allowed = categories if split == "test" else seen
        previous: list[FindingSpec] = []
        for study in range(count):
            study_seed = (seed, patient, study)
            rng = seeded_rng(study_seed, SAMPLING)
            keep = [spec for spec in previous if rng.random() < CARRY_OVER]
            required: list[str] = []
            if split == "test":
                slot = test_index % cycle
                if slot < len(unseen):
                    required.append(unseen[slot])
                test_index += 1
            specs = sample_findings(rng, allowed, normal_fraction, required=required, keep=keep)
            patient_id = f"p{patient:05d}"
            plans.append(
                StudyPlan(
                    patient_id=patient_id,
                    study_id=f"{patient_id}_s{study + 1}",
                    split=split,
                    patient_seed=(seed, patient),
                    study_seed=study_seed,
                    specs=tuple(specs),
                    negatable=tuple(allowed),
                    follow_up=study > 0,
                )
            )
            previous = specs
    return plans


def _check_arguments(
    n: int, unseen: Sequence[str], val_fraction: float, test_fraction: float, normal_fraction: float,
    categories: Sequence[str],
) -> None:
    if n < 1:
        raise ValueError(f"the number of studies must be at least 1, got n={n}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction),
                        ("normal_fraction", normal_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must leave studies for training, got {val_fraction + test_fraction}"
        )
    unknown = set(unseen) - set(categories)
    if unknown:
        raise ValueError(f"unseen categories {sorted(unknown)} are not SynthCXR categories; choose from {categories}")
    if len(set(unseen)) != len(unseen):
        raise ValueError(f"unseen categories are listed twice: {list(unseen)}")
    if unseen and test_fraction == 0.0:
        raise ValueError("held-out (unseen) categories only appear in the test split: set test_fraction > 0")
    if len(unseen) >= len(categories):
        raise ValueError("at least one category must stay seen in training")


def _patients(n: int, seed: int) -> list[int]:
    """Studies per patient (1-3 each), adding up to ``n``."""
    rng = seeded_rng(seed, PATIENT_PLAN)
    counts = []
    while sum(counts) < n:
        counts.append(int(rng.integers(1, MAX_STUDIES_PER_PATIENT + 1)))
    counts[-1] -= sum(counts) - n
    return counts


def _split_patients(
    study_counts: Sequence[int], n: int, seed: int, val_fraction: float, test_fraction: float
) -> list[str]:
    """Assign whole patients to test, then validation, then training, in a seeded random order."""
    order = seeded_rng(seed, SPLIT_PLAN).permutation(len(study_counts))
    targets = {"test": round(test_fraction * n), "validation": round(val_fraction * n)}
    taken = {"test": 0, "validation": 0}
    split_of = ["training"] * len(study_counts)
    for patient in order:
        for split in ("test", "validation"):
            if taken[split] < targets[split]:
                split_of[patient] = split
                taken[split] += study_counts[patient]
                break
    if "training" not in split_of:
        raise ValueError(f"n={n} is too small to leave any patient for training with these split fractions")
    return split_of


def write_study(out_dir: Path, size: int, plan: StudyPlan) -> dict[str, Any]:
    """Draw one planned study, write its files and return its datalist item."""
    study = generate_study(
        plan.study_seed, size, specs=plan.specs, patient_seed=plan.patient_seed,
        negatable=plan.negatable, follow_up=plan.follow_up,
    )
    sid = plan.study_id
    paths = {
        "image": f"images/{sid}.png",
        "lung_mask": f"masks/lung/{sid}.png",
        "lesion_mask": f"masks/lesion/{sid}.png",
    }
    for key, array in (("image", study.image), ("lung_mask", study.lung_mask), ("lesion_mask", study.lesion_mask)):
        write_bytes_atomic(out_dir / paths[key], png_bytes(array), fsync=False)
    findings = [finding.to_dict() for finding in study.findings]
    write_bytes_atomic(out_dir / f"reports/{sid}.txt", (study.report + "\n").encode("utf-8"), fsync=False)
    truth = {
        "study_id": sid,
        "patient_id": plan.patient_id,
        "split": plan.split,
        "generator_version": GENERATOR_VERSION,
        "image_size": size,
        "report": study.report,
        "findings": findings,
        "lesion_labels": {str(k + 1): spec.category for k, spec in enumerate(study.specs)},
        "acquisition": {key: round(value, 6) for key, value in asdict(study.acquisition).items()},
    }
    write_bytes_atomic(out_dir / f"findings/{sid}.json", json_bytes(truth), fsync=False)
    return {**paths, "report": study.report, "findings": findings, "patient_id": plan.patient_id, "study_id": sid}


def _write_study_task(task: tuple[Path, int, StudyPlan]) -> tuple[str, dict[str, Any]]:
    out_dir, size, plan = task
    return plan.split, write_study(out_dir, size, plan)


def write_dataset(
    out_dir: str | Path,
    n: int = 2000,
    size: int = 224,
    seed: int = 0,
    unseen: Sequence[str] = (),
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normal_fraction: float = 0.25,
    workers: int = 2,
    progress: bool = True,
) -> Path:
    """Generate and write the data set; returns the path of ``datalist.json`` (written last)."""
    out_dir = Path(out_dir)
    plans = plan_dataset(n, seed, unseen, val_fraction, test_fraction, normal_fraction)
    for folder in ("images", "masks/lung", "masks/lesion", "reports", "findings"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    tasks = [(out_dir, size, plan) for plan in plans]
    bar = dict(total=len(tasks), desc="SynthCXR", unit="study", disable=not progress)
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            results = list(tqdm(pool.imap(_write_study_task, tasks, chunksize=8), **bar))
    else:
        results = [_write_study_task(task) for task in tqdm(tasks, **bar)]
    datalist: dict[str, Any] = {
        "name": "SynthCXR",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": size,
        "categories": list(CATEGORY_RECIPES),
        "unseen_categories": list(unseen),
        # ground truth lists every drawn finding: a category an item does not mention is absent
        "unmentioned_findings": "absent",
    }
    for split in SPLITS:
        datalist[split] = [item for item_split, item in results if item_split == split]
    path = out_dir / "datalist.json"
    write_bytes_atomic(path, json_bytes(datalist))
    return path


def png_bytes(array: np.ndarray) -> bytes:
    """A ``[H, W]`` uint8 array as a grayscale (mode "L") PNG."""
    buffer = io.BytesIO()
    if array.dtype != np.uint8 or array.ndim != 2:
        raise ValueError(f"expected a [H, W] uint8 array, got {array.dtype} {array.shape}")
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)  # 4x faster than the default, 10% larger
    return buffer.getvalue()


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=False) + "\n").encode("utf-8")


