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
    synthcxr_manifest.json   how the folder was written: generator version, arguments, study ids
    datalist.json            splits of items (see ``docs/data.md``)

``write_dataset`` only writes into a new or empty folder, or one that it wrote itself with the
same arguments (then a complete data set is left as it is and an interrupted one is redone);
anything else needs ``overwrite=True``.
"""

from __future__ import annotations

import io
import json
import math
import re
import sys
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ...io import unfinished_writes, write_bytes_atomic
from .recipes import CATEGORY_RECIPES, FindingSpec
from .sampling import sample_findings
from .study import SAMPLING, generate_study, seeded_rng

GENERATOR_VERSION = "1.0.0"
SPLITS = ("training", "validation", "test")
MANIFEST = "synthcxr_manifest.json"
DATALIST = "datalist.json"
STUDY_ID = re.compile(r"p\d{5,}_s\d+")  # only names of this form are ever deleted
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
    # An empty split would only fail later, far from here: training validates on one, evaluation tests on one.
    requested = (("val_fraction", val_fraction, "validation"), ("test_fraction", test_fraction, "test"))
    for name, fraction, split in requested:
        if fraction > 0 and round(fraction * n) == 0:
            raise ValueError(
                f"n={n} is too small for {name}={fraction}: the {split} split would get round({fraction} * {n}) = 0 "
                f"studies. A {split} split needs n >= {_smallest_n(fraction)}; set {name}=0 for none"
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


def _smallest_n(fraction: float) -> int:
    """The smallest number of studies that gives a split of ``fraction`` at least one study."""
    n = math.ceil(0.5 / fraction)
    return n if round(fraction * n) >= 1 else n + 1


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


def study_files(study_id: str) -> dict[str, str]:
    """The files of one study, relative to the data set's folder; the first three are datalist fields."""
    return {
        "image": f"images/{study_id}.png",
        "lung_mask": f"masks/lung/{study_id}.png",
        "lesion_mask": f"masks/lesion/{study_id}.png",
        "report": f"reports/{study_id}.txt",
        "truth": f"findings/{study_id}.json",
    }


def write_study(out_dir: Path, size: int, plan: StudyPlan) -> dict[str, Any]:
    """Draw one planned study, write its files and return its datalist item."""
    study = generate_study(
        plan.study_seed, size, specs=plan.specs, patient_seed=plan.patient_seed,
        negatable=plan.negatable, follow_up=plan.follow_up,
    )
    sid = plan.study_id
    files = study_files(sid)
    for key, array in (("image", study.image), ("lung_mask", study.lung_mask), ("lesion_mask", study.lesion_mask)):
        write_bytes_atomic(out_dir / files[key], png_bytes(array), fsync=False)
    findings = [finding.to_dict() for finding in study.findings]
    write_bytes_atomic(out_dir / files["report"], (study.report + "\n").encode("utf-8"), fsync=False)
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
    write_bytes_atomic(out_dir / files["truth"], json_bytes(truth), fsync=False)
    paths = {key: files[key] for key in ("image", "lung_mask", "lesion_mask")}
    return {**paths, "report": study.report, "findings": findings, "patient_id": plan.patient_id, "study_id": sid}


def _write_study_task(task: tuple[Path, int, StudyPlan]) -> tuple[str, dict[str, Any]]:
    out_dir, size, plan = task
    return plan.split, write_study(out_dir, size, plan)


def map_studies(task: Callable[[Any], Any], tasks: Sequence[Any], workers: int, desc: str, progress: bool) -> list:
    """``task`` over ``tasks`` in order, in ``workers`` spawned processes (in this one when 1), with a progress bar.

    Each study draws from its own seeded generators, so the results do not depend on ``workers``.
    """
    bar = dict(total=len(tasks), desc=desc, unit="study", disable=not progress)
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            return list(tqdm(pool.imap(task, tasks, chunksize=8), **bar))
    return [task(item) for item in tqdm(tasks, **bar)]


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
    overwrite: bool = False,
) -> Path:
    """Generate and write the data set; returns the path of ``datalist.json`` (written last).

    ``out_dir`` must be new, empty, or a folder this function wrote with the same arguments: a
    complete data set there is left as it is (nothing is drawn), an interrupted one is written
    again. ``overwrite=True`` accepts any folder: the files an earlier SynthCXR run recorded
    there are deleted first, files with SynthCXR's names are replaced, and other files are kept.
    """
    out_dir = Path(out_dir)
    plans = plan_dataset(n, seed, unseen, val_fraction, test_fraction, normal_fraction)
    arguments = {"n": n, "size": size, "seed": seed, "unseen": list(unseen), "val_fraction": val_fraction,
                 "test_fraction": test_fraction, "normal_fraction": normal_fraction}
    manifest = {"name": "SynthCXR", "generator_version": GENERATOR_VERSION, "arguments": arguments,
                "study_ids": [plan.study_id for plan in plans]}
    if not overwrite and _holds(out_dir, manifest):
        if progress:
            print(f"SynthCXR: {out_dir} already holds this data set (same arguments, every file present); "
                  "nothing to write", file=sys.stderr)
        return out_dir / DATALIST
    _make_room(out_dir, manifest, overwrite)
    write_bytes_atomic(out_dir / MANIFEST, json_bytes(manifest))
    tasks = [(out_dir, size, plan) for plan in plans]
    results = map_studies(_write_study_task, tasks, workers, "SynthCXR", progress)
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
    path = out_dir / DATALIST
    write_bytes_atomic(path, json_bytes(datalist))
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable or not JSON: not a record of ours
        return None


def _holds(out_dir: Path, manifest: dict[str, Any]) -> bool:
    """Whether ``out_dir`` is the complete data set that ``manifest`` describes."""
    if _read_json(out_dir / MANIFEST) != manifest or not (out_dir / DATALIST).is_file():
        return False
    return all((out_dir / name).is_file() for sid in manifest["study_ids"] for name in study_files(sid).values())


def _recorded_study_ids(out_dir: Path) -> set[str] | None:
    """Studies that an earlier SynthCXR run wrote in ``out_dir``, from its manifest and (before manifests
    existed) its datalist; None when the folder holds no SynthCXR record."""
    records = [_read_json(out_dir / MANIFEST), _read_json(out_dir / DATALIST)]
    records = [record for record in records if isinstance(record, dict) and record.get("name") == "SynthCXR"]
    if not records:
        return None
    ids = {sid for record in records for sid in record.get("study_ids", [])}
    ids |= {item.get("study_id") for record in records for split in SPLITS for item in record.get(split, [])
            if isinstance(item, dict)}
    # a record names files to delete, so only ids of SynthCXR's own form, which stay inside the folder, count
    return {sid for sid in ids if isinstance(sid, str) and STUDY_ID.fullmatch(sid)}


def _unfinished(out_dir: Path, study_ids: set[str]) -> list[Path]:
    """Temporary files that a killed run left behind for these studies and the folder's records."""
    names: dict[Path, set[str]] = {out_dir: {DATALIST, MANIFEST}}
    for sid in study_ids:
        for name in study_files(sid).values():
            names.setdefault((out_dir / name).parent, set()).add(Path(name).name)
    return [leftover for folder, folder_names in names.items() for leftover in unfinished_writes(folder, folder_names)]


def _make_room(out_dir: Path, manifest: dict[str, Any], overwrite: bool) -> None:
    """Check that ``out_dir`` may receive the data set, and delete what an earlier run would leave stale.

    Only files that a SynthCXR record names (and their unfinished temporary files) are deleted, never
    anything else, even with ``overwrite``.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"'{out_dir}' is a file, not a folder: give a new or empty folder for the data set")
    entries = sorted(entry.name for entry in out_dir.iterdir()) if out_dir.is_dir() else []
    if not entries:
        return
    previous, recorded = _read_json(out_dir / MANIFEST), _recorded_study_ids(out_dir)
    if previous != manifest and not overwrite:
        raise ValueError(_refusal(out_dir, entries, previous, manifest, recorded is not None))
    if recorded is None:
        return  # not a SynthCXR folder: nothing in it is ours to delete
    # the datalist goes first, so that an interruption never leaves one naming deleted or half-replaced files
    (out_dir / DATALIST).unlink(missing_ok=True)
    planned = set(manifest["study_ids"])
    stale = [out_dir / name for sid in recorded - planned for name in study_files(sid).values()]
    for path in stale + _unfinished(out_dir, recorded | planned):
        path.unlink(missing_ok=True)


def _refusal(
    out_dir: Path, entries: list[str], previous: Any, manifest: dict[str, Any], synthcxr: bool
) -> str:
    fix = ("Give a new or empty folder, or pass --overwrite (overwrite=True) to write there anyway: the files an "
           "earlier SynthCXR run recorded are deleted, files with SynthCXR's names are replaced, other files are kept.")
    if not synthcxr:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        return f"'{out_dir}' is not empty and is not a SynthCXR folder (it holds {shown}). {fix}"
    if not isinstance(previous, dict):
        return f"'{out_dir}' holds a SynthCXR data set written before manifests (no {MANIFEST}). {fix}"
    arguments = previous.get("arguments")
    before = {"generator_version": previous.get("generator_version"),
              **(arguments if isinstance(arguments, dict) else {})}
    now = {"generator_version": manifest["generator_version"], **manifest["arguments"]}
    changes = ", ".join(f"{key}={before.get(key)!r} (now {value!r})" for key, value in now.items()
                        if before.get(key) != value)
    changes = changes or "an incomplete record"
    return f"'{out_dir}' holds a SynthCXR data set written with other arguments: {changes}. {fix}"


def png_bytes(array: np.ndarray) -> bytes:
    """A ``[H, W]`` uint8 array as a grayscale (mode "L") PNG."""
    buffer = io.BytesIO()
    if array.dtype != np.uint8 or array.ndim != 2:
        raise ValueError(f"expected a [H, W] uint8 array, got {array.dtype} {array.shape}")
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)  # 4x faster than the default, 10% larger
    return buffer.getvalue()


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=False) + "\n").encode("utf-8")


