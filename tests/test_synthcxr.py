"""SynthCXR: recipes, drawing, reports and ground truth, the data set on disk and its CLI."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from PIL import Image
from scipy import ndimage

from bundle.data.datalist import load_datalist
from bundle.data.synthcxr import (
    CATEGORY_RECIPES,
    CATEGORY_TERMS,
    FindingSpec,
    generate_study,
    plan_dataset,
    write_dataset,
)
from bundle.data.synthcxr.recipes import DENSITIES, LATERALITIES, SHAPES, SIZES, ZONES
from bundle.data.synthcxr.reports import CLEAR_LUNGS_NEGATIONS, HEART_NEGATIONS, NEGATIONS
from bundle.findings import FINDING_SCHEMA, Finding, Presence

REPO = Path(__file__).resolve().parents[1]
NEGATION_SENTENCES = {text for text, _ in NEGATIONS} | set(HEART_NEGATIONS) | set(CLEAR_LUNGS_NEGATIONS)
SEVERITY_ORDER = ("minimal", "mild", "moderate", "severe")


def categories_with(attribute: str, value: str) -> set[str]:
    out = set()
    for category, recipe in CATEGORY_RECIPES.items():
        values = getattr(recipe, attribute)
        if value == values or (isinstance(values, tuple) and value in values):
            out.add(category)
    return out


# ---- recipes --------------------------------------------------------------------------------
def test_recipes_share_attributes_across_categories():
    vocabularies = (("density", DENSITIES), ("size", SIZES), ("zones", ZONES), ("lateralities", LATERALITIES))
    for attribute, values in vocabularies:
        for value in values:
            assert len(categories_with(attribute, value)) >= 2, f"{attribute}={value} is in fewer than 2 categories"
    assert {shape for recipe in CATEGORY_RECIPES.values() for shape in recipe.shapes} == set(SHAPES)
    # the compositions that make held-out categories describable
    lucent, opaque = categories_with("density", "lucent"), categories_with("density", "opaque")
    round_ = categories_with("shapes", "round")
    assert lucent & round_ & categories_with("size", "small") and lucent & round_ & categories_with("size", "large")
    assert opaque & round_ & categories_with("size", "small") and opaque & round_ & categories_with("size", "large")
    assert lucent & categories_with("shapes", "pleural line") and opaque & categories_with("shapes", "pleural line")
    assert len(CATEGORY_RECIPES) >= 14 and all(recipe.attributes()["shapes"] for recipe in CATEGORY_RECIPES.values())


def listed(values: tuple[str, ...]) -> str:
    return ", ".join(values) or "–"


def test_docs_recipe_table_matches_the_recipes():
    rows = {}
    for line in (REPO / "docs/data.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] in CATEGORY_RECIPES:
            rows[cells[0]] = cells[1:]
    assert set(rows) == set(CATEGORY_RECIPES), "docs/data.md must list every category of CATEGORY_RECIPES"
    for category, recipe in CATEGORY_RECIPES.items():
        expected = [
            recipe.density, listed(recipe.shapes), recipe.size, listed(recipe.zones), listed(recipe.lateralities),
            listed(recipe.signs), listed(recipe.severities), "yes" if recipe.can_be_uncertain else "no",
        ]
        assert rows[category] == expected, f"docs/data.md row for {category} is out of date"


def test_finding_spec_rejects_what_the_recipe_forbids():
    with pytest.raises(ValueError, match="cannot draw category 'fracture'"):
        FindingSpec("fracture", "left", "base")
    with pytest.raises(ValueError, match="laterality must be one of"):
        FindingSpec("pulmonary_edema", "left", "perihilar", "mild")
    with pytest.raises(ValueError, match="takes no zone"):
        FindingSpec("cardiomegaly", None, "base", "mild")
    with pytest.raises(ValueError, match="absent findings are reported, not drawn"):
        FindingSpec("nodule", "left", "upper zone", "mild", Presence.ABSENT)


# ---- one study ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def studies():
    return [generate_study(seed, size=64) for seed in range(40)]


def test_study_arrays_and_ground_truth(studies):
    validator = jsonschema.Draft7Validator(FINDING_SCHEMA)
    for study in studies:
        assert study.image.shape == study.lung_mask.shape == study.lesion_mask.shape == (64, 64)
        assert study.image.dtype == study.lung_mask.dtype == study.lesion_mask.dtype == np.uint8
        assert set(np.unique(study.lung_mask)) == {0, 1, 2}
        assert set(np.unique(study.lesion_mask)) <= set(range(len(study.specs) + 1))
        assert "FINDINGS: " in study.report and "IMPRESSION: " in study.report
        for finding in study.findings:
            validator.validate(finding.to_dict())
            assert Finding.from_dict(finding.to_dict()) == finding
            assert finding.evidence in study.report
        drawn = study.findings[: len(study.specs)]
        assert [(f.category, f.location, f.severity, f.presence) for f in drawn] == [
            (s.category, s.location, s.severity, s.presence) for s in study.specs
        ]


def test_every_finding_is_named_in_its_evidence_sentence(studies):
    seen_presences = Counter()
    for study in studies:
        for finding in study.findings:
            seen_presences[finding.presence] += 1
            sentence = finding.evidence.lower()
            assert any(term in sentence for term in CATEGORY_TERMS[finding.category]), (finding, study.report)
            if finding.presence is Presence.UNCERTAIN:
                assert any(hedge in sentence for hedge in ("possible", "cannot exclude", "may ", "questionable"))
    assert seen_presences[Presence.PRESENT] and seen_presences[Presence.ABSENT] and seen_presences[Presence.UNCERTAIN]


def test_reports_speak_the_knowledge_base_vocabulary(studies):
    """Category ids are knowledge-base ids, and an evidence sentence's severity words all mean its severity."""
    kb = yaml.safe_load((REPO / "bundle/knowledge/knowledge_base.yaml").read_text())
    assert set(CATEGORY_RECIPES) <= {category["id"] for category in kb["categories"]}
    lexicon = {term.lower(): severity for severity, terms in kb["severities"].items() for term in terms}
    words = re.compile(r"\b(" + "|".join(sorted(map(re.escape, lexicon), key=len, reverse=True)) + r")\b", re.I)
    for study in studies:
        for finding in study.findings:
            said = {lexicon[word.lower()] for word in words.findall(finding.evidence)}
            assert said == ({finding.severity} if finding.severity else set()), finding


def test_negated_categories_are_absent_and_not_drawn(studies):
    for study in studies:
        drawn = {spec.category for spec in study.specs}
        absent = [f for f in study.findings if f.presence is Presence.ABSENT]
        for finding in absent:
            assert finding.category not in drawn
            assert finding.evidence in NEGATION_SENTENCES
            assert finding.location is None and finding.severity is None
        lesion_labels = set(np.unique(study.lesion_mask)) - {0}
        assert all(study.findings[label - 1].presence is not Presence.ABSENT for label in lesion_labels)


def test_only_reports_without_findings_call_the_radiograph_normal(studies):
    for study in studies:
        says_normal = "Normal chest radiograph." in study.report
        assert not (says_normal and study.specs), study.report


def test_same_seed_same_study_and_different_seed_differs():
    first, again, other = generate_study(11, size=96), generate_study(11, size=96), generate_study(12, size=96)
    assert np.array_equal(first.image, again.image) and first.report == again.report
    assert np.array_equal(first.lesion_mask, again.lesion_mask)
    assert not np.array_equal(first.image, other.image)


def difference(seed: int, spec: FindingSpec, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Signed image change caused by one finding on a fixed patient and acquisition, and its lesion mask."""
    normal = generate_study(seed, size=size, specs=[])
    sick = generate_study(seed, size=size, specs=[spec])
    return sick.image.astype(float) - normal.image.astype(float), sick.lesion_mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_laterality_follows_pa_display(seed):
    """The patient's left is the image's right: a left effusion brightens the lower right of the image."""
    half = 64
    left, _ = difference(seed, FindingSpec("pleural_effusion", "left", "base", "moderate"))
    right, _ = difference(seed, FindingSpec("pleural_effusion", "right", "base", "moderate"))
    lower = slice(half, None)
    assert left[lower, half:].mean() > left[lower, :half].mean() + 2.0
    assert right[lower, :half].mean() > right[lower, half:].mean() + 2.0
    nodule, mask = difference(seed, FindingSpec("nodule", "left", "upper zone", "moderate"))
    assert np.argwhere(mask > 0)[:, 1].min() >= half


@pytest.mark.parametrize(
    "category,laterality,zone",
    [("pleural_effusion", "right", "base"), ("pneumothorax", "left", "apex"), ("cardiomegaly", None, None),
     ("nodule", "right", "mid zone"), ("pleural_thickening", "left", "periphery"),
     ("emphysema", "bilateral", "upper zone")],
)
def test_severity_grows_the_lesion(category, laterality, zone):
    areas = []
    for severity in CATEGORY_RECIPES[category].severities:
        _, mask = difference(5, FindingSpec(category, laterality, zone, severity))
        areas.append(int((mask > 0).sum()))
    assert all(a < b for a, b in zip(areas, areas[1:])), areas


@pytest.mark.parametrize(
    "spec",
    [FindingSpec("nodule", "right", "mid zone", "mild"), FindingSpec("mass", "left", "upper zone", "moderate"),
     FindingSpec("cavity", "right", "apex", "moderate"), FindingSpec("pneumothorax", "right", "periphery", "moderate")],
)
def test_lesion_mask_is_where_the_image_changed(spec):
    change, mask = difference(3, spec)
    near = ndimage.binary_dilation(mask > 0, iterations=3)
    assert mask.any()
    assert np.abs(change)[near].sum() > 0.85 * np.abs(change).sum()


def test_lung_mask_aligns_with_the_dark_lungs():
    for seed in range(4):
        study = generate_study(seed, size=128, specs=[])
        lungs = study.lung_mask > 0
        ring = ndimage.binary_dilation(lungs, iterations=4) & ~lungs
        assert study.image[lungs].mean() + 40 < study.image[ring].mean()


def test_uncertain_findings_are_drawn_faint_and_every_finding_is_visible_at_128():
    present, _ = difference(4, FindingSpec("consolidation", "left", "lower zone", "mild"))
    hedged, _ = difference(4, FindingSpec("consolidation", "left", "lower zone", "mild", Presence.UNCERTAIN))
    assert 0.2 * np.abs(present).sum() < np.abs(hedged).sum() < 0.7 * np.abs(present).sum()
    for category, recipe in CATEGORY_RECIPES.items():
        spec = FindingSpec(category, (recipe.lateralities or (None,))[0], (recipe.zones or (None,))[0],
                           (recipe.severities or (None,))[0])
        change, mask = difference(6, spec)
        assert np.abs(change)[mask > 0].mean() > 6.0, f"{category} at its least severe is not visible at 128 px"


# ---- the data set on disk -------------------------------------------------------------------
def tree_digest(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthcxr")
    write_dataset(out, n=60, size=48, seed=3, unseen=["mass", "bulla"], workers=2, progress=False)
    return out


def test_dataset_is_byte_identical_for_any_worker_count_and_seeded(dataset, tmp_path):
    write_dataset(tmp_path / "one", n=60, size=48, seed=3, unseen=["mass", "bulla"], workers=1, progress=False)
    assert tree_digest(dataset) == tree_digest(tmp_path / "one")
    write_dataset(tmp_path / "other", n=60, size=48, seed=4, unseen=["mass", "bulla"], workers=1, progress=False)
    assert (tmp_path / "other/datalist.json").read_bytes() != (dataset / "datalist.json").read_bytes()


def test_datalist_format_paths_and_files(dataset):
    raw = json.loads((dataset / "datalist.json").read_text())
    assert raw["name"] == "SynthCXR" and raw["seed"] == 3 and raw["image_size"] == 48
    assert raw["categories"] == list(CATEGORY_RECIPES) and raw["unseen_categories"] == ["mass", "bulla"]
    assert sum(len(raw[split]) for split in ("training", "validation", "test")) == 60
    datalist = load_datalist(dataset / "datalist.json")  # the training config's loader: resolves and checks files
    validator = jsonschema.Draft7Validator(FINDING_SCHEMA)
    for split in ("training", "validation", "test"):
        for item in datalist[split]:
            assert item["study_id"].startswith(item["patient_id"] + "_s")
            image, lesion = Image.open(item["image"]), Image.open(item["lesion_mask"])
            assert image.mode == "L" and image.size == (48, 48) and Image.open(item["lung_mask"]).size == (48, 48)
            assert np.asarray(lesion).max() <= sum(f["presence"] != "absent" for f in item["findings"])
            for record in item["findings"]:
                validator.validate(record)
            truth = json.loads((dataset / f"findings/{item['study_id']}.json").read_text())
            assert truth["findings"] == item["findings"] and truth["report"] == item["report"]
            assert (dataset / f"reports/{item['study_id']}.txt").read_text().strip() == item["report"]


def test_splits_are_disjoint_by_patient(dataset):
    raw = json.loads((dataset / "datalist.json").read_text())
    patients = {split: {item["patient_id"] for item in raw[split]} for split in ("training", "validation", "test")}
    assert not patients["training"] & patients["validation"]
    assert not patients["training"] & patients["test"] and not patients["validation"] & patients["test"]
    assert all(patients.values())
    studies = Counter(item["patient_id"] for split in ("training", "validation", "test") for item in raw[split])
    assert max(studies.values()) > 1  # patients have follow-up studies


def test_unseen_categories_only_in_test(dataset):
    raw = json.loads((dataset / "datalist.json").read_text())
    for split in ("training", "validation"):
        for item in raw[split]:
            assert not {f["category"] for f in item["findings"]} & {"mass", "bulla"}
            assert not any(term in item["report"].lower() for term in ("mass", "bulla", "bullous"))
    test = raw["test"]
    for category in ("mass", "bulla"):
        positives = sum(
            any(f["category"] == category and f["presence"] == "present" for f in item["findings"]) for item in test
        )
        assert positives >= 0.08 * len(test), (category, positives, len(test))


def test_plan_rejects_bad_arguments():
    with pytest.raises(ValueError, match="not SynthCXR categories"):
        plan_dataset(10, unseen=["tumour"])
    with pytest.raises(ValueError, match="leave studies for training"):
        plan_dataset(10, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="set test_fraction > 0"):
        plan_dataset(10, unseen=["mass"], test_fraction=0.0)


def test_cli_writes_a_dataset_and_explains_bad_input(tmp_path):
    out = tmp_path / "cli"
    command = [sys.executable, "scripts/make_demo_data.py", "--out", str(out), "--n", "20", "--size", "48",
               "--seed", "1", "--unseen", "cavity", "--workers", "2"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "cavity (unseen)" in result.stdout
    datalist = json.loads((out / "datalist.json").read_text())
    listed_studies = sum(len(datalist[split]) for split in ("training", "validation", "test"))
    assert len(list((out / "images").glob("*.png"))) == 20 == listed_studies
    bad = subprocess.run([sys.executable, "scripts/make_demo_data.py", "--out", str(out), "--unseen", "tumour"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not a SynthCXR category" in bad.stderr and "Traceback" not in bad.stderr


# ---- the output folder: resume, refusal, overwrite ------------------------------------------
SMALL = dict(n=8, size=32, seed=0, workers=1, progress=False)


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (inode, mtime): an atomic rewrite always makes a new inode."""
    files = (p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}


@pytest.fixture(scope="module")
def make_demo_data_main():
    """The CLI's main() in this process: its errors must come back as exit status 2, not as exceptions."""
    spec = importlib.util.spec_from_file_location("make_demo_data", REPO / "scripts/make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda *args: module.main(["--size", "32", "--workers", "1", "--quiet", *map(str, args)])


def test_same_arguments_leave_a_complete_dataset_alone_and_redo_an_interrupted_one(tmp_path):
    out = tmp_path / "synthcxr"
    write_dataset(out, **SMALL)
    manifest = json.loads((out / "synthcxr_manifest.json").read_text())
    assert manifest["arguments"] == {"n": 8, "size": 32, "seed": 0, "unseen": [], "val_fraction": 0.1,
                                     "test_fraction": 0.2, "normal_fraction": 0.25}
    digest, before = tree_digest(out), files_of(out)
    assert write_dataset(out, **SMALL) == out / "datalist.json"
    assert files_of(out) == before  # nothing was drawn or rewritten
    # a killed run: no datalist, a missing image, a temporary file left half written
    (out / "datalist.json").unlink()
    image = next((out / "images").iterdir())
    image.unlink()
    leftover = image.with_name(f".{image.name}.0123456789abcdef0123456789abcdef.tmp")
    leftover.write_bytes(b"half")
    write_dataset(out, **SMALL)
    assert tree_digest(out) == digest and not leftover.exists()


def test_a_folder_with_other_data_is_refused_and_overwrite_keeps_its_files(tmp_path, make_demo_data_main, capsys):
    out = tmp_path / "mine"
    (out / "images").mkdir(parents=True)
    own = {"datalist.json": '{"training": []}', "notes.txt": "keep me", "images/scan.png": "not synthcxr"}
    for name, text in own.items():
        (out / name).write_text(text)
    assert make_demo_data_main("--out", out, "--n", 8) == 2
    error = capsys.readouterr().err
    assert f"'{out}' is not empty and is not a SynthCXR folder (it holds datalist.json, images, notes.txt)" in error
    assert "--overwrite" in error
    assert {name: (out / name).read_text() for name in own} == own and not (out / "masks").exists()
    assert make_demo_data_main("--out", out, "--n", 8, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "keep me" and (out / "images/scan.png").read_text() == "not synthcxr"
    assert json.loads((out / "datalist.json").read_text())["name"] == "SynthCXR"  # --overwrite replaces same names


def test_other_arguments_are_refused_and_overwrite_leaves_no_stale_study(tmp_path):
    out, fresh = tmp_path / "synthcxr", tmp_path / "fresh"
    write_dataset(out, **SMALL)
    (out / "images/extra_notes.txt").write_text("user file inside a SynthCXR folder")
    before = tree_digest(out)
    changed = {**SMALL, "n": 6, "seed": 1}
    with pytest.raises(ValueError, match=r"written with other arguments: n=8 \(now 6\), seed=0 \(now 1\).*overwrite"):
        write_dataset(out, **changed)
    assert tree_digest(out) == before
    write_dataset(out, **changed, overwrite=True)
    write_dataset(fresh, **changed)
    expected = tree_digest(fresh)
    expected["images/extra_notes.txt"] = before["images/extra_notes.txt"]
    assert tree_digest(out) == expected  # exactly the new data set, plus the user's file


def test_overwrite_of_a_folder_without_manifest_trusts_only_synthcxr_study_ids(tmp_path):
    """A datalist named SynthCXR (as written before manifests) tells what to delete, but only ids of
    SynthCXR's form: a crafted id cannot reach outside the folder."""
    out = tmp_path / "old"
    write_dataset(out, **SMALL)
    (out / "synthcxr_manifest.json").unlink()
    datalist = json.loads((out / "datalist.json").read_text())
    datalist["training"].append({"study_id": "../../outside", "image": "images/x.png"})
    (out / "datalist.json").write_text(json.dumps(datalist))
    outside = tmp_path / "outside.png"  # where study_files("../../outside")["image"] would point
    outside.write_text("not in the data set")
    with pytest.raises(ValueError, match="written before manifests"):
        write_dataset(out, **{**SMALL, "n": 6})
    write_dataset(out, **{**SMALL, "n": 6}, overwrite=True)
    assert outside.read_text() == "not in the data set"
    assert len(list((out / "images").iterdir())) == 6


def test_out_that_is_a_file_is_a_clear_error(tmp_path, make_demo_data_main, capsys):
    (tmp_path / "afile").write_text("x")
    for out, message in ((tmp_path / "afile", f"'{tmp_path / 'afile'}' is a file, not a folder"),
                         (tmp_path / "afile/sub", f"cannot write the data set under '{tmp_path / 'afile/sub'}'")):
        assert make_demo_data_main("--out", out, "--n", 8) == 2  # was a NotADirectoryError traceback
        assert message in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "x"


def test_too_few_studies_for_a_requested_split_is_refused(tmp_path, make_demo_data_main, capsys):
    with pytest.raises(ValueError, match=r"n=1 is too small for val_fraction=0.1: the validation split would get "
                                         r"round\(0.1 \* 1\) = 0 studies. A validation split needs n >= 6"):
        plan_dataset(1)
    with pytest.raises(ValueError, match="the validation split would get round"):
        plan_dataset(4)  # test gets round(0.8) = 1 study, validation round(0.4) = 0
    with pytest.raises(ValueError, match="the test split would get round"):
        plan_dataset(2, val_fraction=0.0)
    assert {plan.split for plan in plan_dataset(1, val_fraction=0.0, test_fraction=0.0)} == {"training"}
    assert make_demo_data_main("--out", tmp_path / "one", "--n", 1) == 2
    assert "n=1 is too small" in capsys.readouterr().err and not (tmp_path / "one").exists()
