"""The real pre-training path: MIMIC-CXR-JPG and IU X-ray adapters (findings from the reports through
the extraction stage) and SynthCXR written in the MIMIC-CXR-JPG layout, end to end through the real
CLIs: make_demo_data.py --layout mimic-cxr -> prepare_dataset.py -> monai.bundle training -> evaluation."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bundle.data.collections import iu_xray, mimic_cxr
from bundle.data.collections.common import ReportFindings, read_findings_jsonl
from bundle.data.datalist import SPLITS, load_datalist
from bundle.data.synthcxr.mimic_layout import write_mimic_layout
from bundle.extraction.cache import FindingsCache
from bundle.extraction.readers import compose_text
from bundle.extraction.rules import RulesExtractor
from bundle.knowledge.base import default_knowledge_base
from bundle_cli import EVALUATE_CONFIGS, describe, make_synthcxr, run_bundle, run_script
from scripts.extract_findings import main as extract_findings
from scripts.prepare_dataset import main

KB = default_knowledge_base()
RULES = RulesExtractor(KB)
IU = "iu-xray-openi"
TABLES = ("mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-2.0.0-split.csv.gz", "mimic-cxr-2.0.0-chexpert.csv.gz")


def rules_findings(text: str) -> list[dict]:
    return [finding.to_dict() for finding in RULES.extract_findings(text)]


def read_gz_csv(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", newline="") as handle:
        return list(csv.DictReader(handle))


def all_items(datalist: dict) -> list[dict]:
    return [item for split in SPLITS for item in datalist[split]]


def assert_patient_disjoint(splits: dict[str, list[dict]]) -> None:
    patients = [{item["patient_id"] for item in splits.get(split, [])} for split in SPLITS]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])


# -- SynthCXR in the MIMIC-CXR-JPG layout, end to end ----------------------------------------------------


@pytest.fixture(scope="module")
def mimic_synthcxr(tmp_path_factory) -> Path:
    return make_synthcxr(tmp_path_factory.mktemp("mimic") / "mimic-cxr-jpg", 40, "--layout", "mimic-cxr")


@pytest.fixture(scope="module")
def mimic_datalist(mimic_synthcxr, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("prepared") / "datalist.json"
    result = run_script("scripts/prepare_dataset.py", "--collection", "mimic-cxr", "--root", str(mimic_synthcxr),
                        "--output", str(output), "--quiet")  # fmt: skip
    assert result.returncode == 0, describe(result)
    return output


def test_synthcxr_mimic_layout_is_the_release_layout(mimic_synthcxr):
    metadata, split, labels = (read_gz_csv(mimic_synthcxr / name) for name in TABLES)
    assert len(metadata) == len(split) == len(labels) == 40
    assert list(metadata[0])[:5] == ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription",
                                     "ViewPosition"]  # fmt: skip
    assert list(split[0]) == ["dicom_id", "study_id", "subject_id", "split"]
    assert list(labels[0])[:3] == ["subject_id", "study_id", "Atelectasis"] and len(labels[0]) == 16
    assert {row["split"] for row in split} == {"train", "validate", "test"}
    assert {value for row in labels for key, value in row.items() if "_id" not in key} <= {"", "1.0", "0.0", "-1.0"}
    for row in metadata:
        folder = f"p{row['subject_id'][:2]}/p{row['subject_id']}/s{row['study_id']}"
        with Image.open(mimic_synthcxr / "files" / folder / f"{row['dicom_id']}.jpg") as image:
            assert image.format == "JPEG" and image.size == (64, 64) and image.mode == "L"
        report = (mimic_synthcxr / "mimic-cxr-reports/files" / f"{folder}.txt").read_text()
        assert report.lstrip().startswith("FINAL REPORT") and "FINDINGS:" in report


def test_synthcxr_mimic_layout_is_the_same_bytes_again_and_refuses_a_full_folder(tmp_path):
    first = write_mimic_layout(tmp_path / "a", n=6, size=32, seed=1, val_fraction=0.2, test_fraction=0.2, workers=1,
                               progress=False)  # fmt: skip
    second = write_mimic_layout(tmp_path / "b", n=6, size=32, seed=1, val_fraction=0.2, test_fraction=0.2, workers=2,
                                progress=False)  # fmt: skip
    files = sorted(path.relative_to(first.parent) for path in first.parent.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(second.parent) for path in second.parent.rglob("*") if path.is_file())
    assert all((first.parent / name).read_bytes() == (second.parent / name).read_bytes() for name in files)
    with pytest.raises(ValueError, match="is not empty; give a new or empty folder, or pass --overwrite"):
        write_mimic_layout(tmp_path / "a", n=6, size=32, workers=1, progress=False)
    refused = run_script("scripts/make_demo_data.py", "--out", str(tmp_path / "c"), "--layout", "mimic-cxr",
                         "--unseen", "mass")  # fmt: skip
    assert refused.returncode == 2 and "--unseen does not apply to --layout mimic-cxr" in refused.stderr


def test_mimic_datalist_findings_are_the_rules_extraction_of_the_written_reports(mimic_synthcxr, mimic_datalist):
    datalist = json.loads(mimic_datalist.read_text())
    items = all_items(datalist)
    assert len(items) == 40 and datalist["unmentioned_findings"] == "unknown"
    split_table = {row["dicom_id"]: row["split"] for row in read_gz_csv(mimic_synthcxr / TABLES[1])}
    labels = {row["study_id"]: row for row in read_gz_csv(mimic_synthcxr / TABLES[2])}
    official = {"train": "training", "validate": "validation", "test": "test"}
    for split in SPLITS:
        for item in datalist[split]:
            subject, study = item["patient_id"][1:], item["study_id"][1:]
            report = (mimic_synthcxr / f"mimic-cxr-reports/files/p{subject[:2]}/p{subject}/s{study}.txt").read_text()
            assert item["report"] == report
            assert item["findings"] == rules_findings(report)
            assert official[split_table[item["dicom_id"]]] == split == official[item["split"]]
            assert item["view"] == "PA"
            expected = {label: value for label, value in labels[study].items() if value and label not in
                        ("subject_id", "study_id", "No Finding")}  # fmt: skip
            assert {finding["evidence"]: finding["presence"] for finding in item["labels"]} == {
                label: {"1.0": "present", "0.0": "absent", "-1.0": "uncertain"}[value] for label, value in expected.items()
            }  # fmt: skip
    assert_patient_disjoint(datalist)
    named = {finding["category"] for item in items for finding in item["findings"]}
    assert set(datalist["categories"]) == named and datalist["categories"] == [c for c in KB.categories if c in named]
    loaded = load_datalist(mimic_datalist)
    assert Path(loaded["training"][0]["image"]).is_file()


def test_mimic_datalist_trains_and_evaluates_through_the_bundle_cli(mimic_datalist, tmp_path):
    data_dir = mimic_datalist.parent
    trained = run_bundle(tmp_path, data_dir, "training", "--max_epochs", "1", "--track_mlflow", "false")
    assert trained.returncode == 0, describe(trained)
    assert (tmp_path / "models/model.pt").is_file()
    assert "val_macro_auc" in trained.stdout + trained.stderr
    evaluated = run_bundle(tmp_path, data_dir, "--track_mlflow", "false", configs=EVALUATE_CONFIGS)
    assert evaluated.returncode == 0, describe(evaluated)
    metrics = json.loads((tmp_path / "eval/zero_shot_metrics.json").read_text())
    datalist = json.loads(mimic_datalist.read_text())
    assert metrics["n_test"] == len(datalist["test"]) and metrics["n_validation"] == len(datalist["validation"])
    positive = {f["category"] for item in datalist["test"] for f in item["findings"] if f["presence"] == "present"}
    scored = set(metrics["seen"]) - {"macro"}
    assert scored and scored == positive and scored | set(metrics["skipped"]) == set(datalist["categories"])
    assert 0.0 <= metrics["seen"]["macro"]["auc"] <= 1.0


def test_mimic_rerun_hits_the_cache_and_a_findings_file_replaces_the_extraction(
    mimic_synthcxr, mimic_datalist, tmp_path, capsys
):
    rerun = tmp_path / "rerun.json"
    shutil.copy(mimic_datalist.with_name("datalist.extraction-cache.sqlite"), tmp_path / "cache.sqlite")
    assert main(["--collection", "mimic-cxr", "--root", str(mimic_synthcxr), "--output", str(rerun),
                 "--extraction-cache", str(tmp_path / "cache.sqlite")]) == 0  # fmt: skip
    assert "(new 0, cache hits 40)" in capsys.readouterr().out
    assert json.loads(rerun.read_text()) == json.loads(mimic_datalist.read_text())
    # an earlier extraction run over the report tree (the LLM backend writes the same format)
    findings = tmp_path / "findings.jsonl"
    assert extract_findings(["--input", str(mimic_synthcxr / "mimic-cxr-reports"), "--output", str(findings),
                             "--no-progress"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in findings.read_text().splitlines()]
    rows[0]["triplets"] = [{"category": "pneumothorax", "location": "left apex", "severity": None,
                            "presence": "present", "evidence": "edited"}]  # fmt: skip
    findings.write_text("".join(json.dumps(row) + "\n" for row in rows[1:] + rows[:1]))
    output = tmp_path / "from_file.json"
    assert main(["--collection", "mimic-cxr", "--root", str(mimic_synthcxr), "--output", str(output),
                 "--findings", str(findings), "--quiet"]) == 0  # fmt: skip
    items = {item["study_id"]: item for item in all_items(json.loads(output.read_text()))}
    assert {study: item["findings"] for study, item in items.items()} == {row["id"]: row["triplets"] for row in rows}
    assert not output.with_name("from_file.extraction-cache.sqlite").exists()


def test_a_bad_findings_file_or_conflicting_options_exit_2_with_the_fix(mimic_synthcxr, tmp_path, capsys):
    findings = tmp_path / "findings.jsonl"
    findings.write_text('{"id": "s50000000", "triplets": [{"category": "not_a_category"}]}\n')
    argv = ["--collection", "mimic-cxr", "--root", str(mimic_synthcxr), "--output", str(tmp_path / "d.json")]
    assert main([*argv, "--findings", str(findings)]) == 2
    error = capsys.readouterr().err
    assert f"{findings}:1 (report 's50000000'): category 'not_a_category' is not one of" in error
    assert "Write it with scripts/extract_findings.py" in error
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--findings", str(findings), "--extraction-cache", str(tmp_path / "c.sqlite")])
    assert exit_info.value.code == 2 and "pass one of them" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--collection", "chexpert", "--root", str(tmp_path), "--output", str(tmp_path / "e.json"),
              "--findings", str(findings)])  # fmt: skip
    assert "--findings does not apply to chexpert" in capsys.readouterr().err
    assert not (tmp_path / "d.json").exists()


# -- MIMIC-CXR adapter rules on a hand-built root ---------------------------------------------------------


def write_csv_gz(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def mimic_root(tmp_path: Path, split_table: bool = True) -> Path:
    """Four patients: p10000001 (PA + LATERAL, report beside the images), p10000002 (the split table
    puts its two studies in train and test), p10000003 (no report), p10000004 (image missing)."""
    root = tmp_path / "mimic"
    images = [("d1", "10000001", "50000001", "PA", "train"), ("d1lat", "10000001", "50000001", "LATERAL", "train"),
              ("d2", "10000002", "50000002", "AP", "train"), ("d3", "10000002", "50000003", "PA", "test"),
              ("d4", "10000003", "50000004", "PA", "validate"), ("d5", "10000004", "50000005", "PA", "train")]
    reports = {"50000001": "FINDINGS: Small left pleural effusion.", "50000002": "IMPRESSION: No pneumothorax.",
               "50000003": "FINDINGS: Heart size is enlarged.", "50000005": "FINDINGS: Clear."}
    for dicom, subject, study, _, _ in images:
        folder = root / f"files/p{subject[:2]}/p{subject}/s{study}"
        folder.mkdir(parents=True, exist_ok=True)
        if dicom != "d5":
            Image.fromarray(np.full((16, 16), 99, np.uint8)).save(folder / f"{dicom}.jpg")
        if study in reports:
            beside = study == "50000001"
            report = (root if beside else root / "mimic-cxr-reports") / f"files/p{subject[:2]}/p{subject}/s{study}.txt"
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(reports[study])
    write_csv_gz(root / TABLES[0], ["dicom_id", "subject_id", "study_id", "ViewPosition"],
                 [[d, s, t, v] for d, s, t, v, _ in images])  # fmt: skip
    if split_table:
        write_csv_gz(root / TABLES[1], ["dicom_id", "study_id", "subject_id", "split"],
                     [[d, t, s, sp] for d, s, t, _, sp in images])  # fmt: skip
    return root


def test_mimic_views_report_locations_mixed_split_patients_and_missing_files(tmp_path):
    prepared = mimic_cxr.prepare(mimic_root(tmp_path), KB)
    items = {item["dicom_id"]: (split, item) for split, split_items in prepared.splits.items() for item in split_items}
    assert sorted(items) == ["d1", "d2", "d3"]
    assert items["d1"][1]["findings"] == rules_findings("FINDINGS: Small left pleural effusion.")
    assert items["d1"][1]["report"] == "FINDINGS: Small left pleural effusion."  # found beside the images
    # p10000002: the table puts one study in train and one in test; the patient is only in test
    assert items["d2"][0] == items["d3"][0] == "test" and items["d2"][1]["split"] == "train"
    assert_patient_disjoint(prepared.splits)
    summary = prepared.summary
    assert summary.skipped["not a frontal view (ViewPosition not PA or AP; --views all keeps it)"] == ["d1lat"]
    assert summary.skipped["no report text to extract findings from"] == ["s50000004"]
    assert summary.missing_images == ["files/p10/p10000004/s50000005/d5.jpg"]
    assert any("1 patients are in several official splits" in note and "p10000002" in note for note in summary.notes)
    assert any("mimic-cxr-reports/files/pXX/pSUBJECT/sSTUDY.txt (2 found) then files/pXX/pSUBJECT/sSTUDY.txt "
               "(1 found)" in note for note in summary.notes)  # fmt: skip
    everything = mimic_cxr.prepare(mimic_root(tmp_path / "all", split_table=False), KB, views="all")
    lateral = [item for items in everything.splits.values() for item in items if item["dicom_id"] == "d1lat"]
    assert lateral and lateral[0]["view"] == "LATERAL" and "split" not in lateral[0]
    assert "no mimic-cxr-2.0.0-split.csv(.gz) under the root: split by patient" in everything.summary.notes
    assert_patient_disjoint(everything.splits)


def test_mimic_without_metadata_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["--collection", "mimic-cxr", "--root", str(tmp_path / "empty"), "--output", str(tmp_path / "d.json")]) == 2
    error = capsys.readouterr().err
    assert "no metadata table mimic-cxr-2.0.0-metadata.csv" in error and "physionet.org/content/mimic-cxr-jpg" in error


def test_report_findings_go_through_the_given_cache(tmp_path):
    root = mimic_root(tmp_path)
    with FindingsCache(tmp_path / "cache.sqlite") as cache:
        first = mimic_cxr.prepare(root, KB, reports=ReportFindings(RULES, cache))
        assert len(cache) == 3
        again = mimic_cxr.prepare(root, KB, reports=ReportFindings(RULES, cache))
    assert first.splits == again.splits
    assert any("(new 0, cache hits 3)" in note for note in again.summary.notes)


# -- IU X-ray --------------------------------------------------------------------------------------------


def iu_root(tmp_path: Path, realdata: Path, xml: bool) -> Path:
    """The kit's reports (the CSV, or the 60 sample XMLs as ecgen-radiology/) and projection table, with
    tiny PNGs for the images (frontal and lateral) of reports CXR1-CXR5, named as Kaggle (CSV) or Open-i
    (XML) names them."""
    root = tmp_path / ("xml" if xml else "csv")
    root.mkdir()
    kit = realdata / IU
    shutil.copy(kit / "indiana_projections.csv", root)
    if xml:
        shutil.copytree(kit / "ecgen-radiology-sample", root / "ecgen-radiology")
        folder = root / "NLMCXR_png"
    else:
        shutil.copy(kit / "iu_reports_dev.csv", root)
        folder = root / "images/images_normalized"
    folder.mkdir(parents=True)
    for row in csv.DictReader((kit / "indiana_projections.csv").open()):
        if row["uid"] in {"1", "2", "3", "4", "5"}:
            key = iu_xray.image_key(row["filename"])
            name = row["filename"] if not xml else next(
                image for image in report_images(kit, row["uid"]) if iu_xray.image_key(image) == key) + ".png"
            Image.fromarray(np.full((16, 16), 50, np.uint8)).save(folder / name)
    return root


def report_images(kit: Path, uid: str) -> list[str]:
    rows = csv.DictReader((kit / "iu_reports_dev.csv").open())
    return next(row["images"].split(";") for row in rows if row["uId"] == f"CXR{uid}")


def test_iu_real_reports_without_images_are_counted_not_lost(realdata):
    prepared = iu_xray.prepare(realdata / IU, KB)
    summary = prepared.summary
    assert summary.rows == 1000 and summary.tables["reports"] == "iu_reports_dev.csv"
    assert all(not items for items in prepared.splits.values())
    # the kit has no images: every frontal image of a report with text is missing, laterals are skipped
    assert len(summary.missing_images) == 972 and "CXR1_1_IM-0001-4001" in summary.missing_images
    assert len(summary.skipped["lateral view; --views all keeps it"]) == 917
    assert len(summary.skipped["no images listed"]) == 21
    assert len(summary.skipped["no FINDINGS or IMPRESSION text"]) == 4


@pytest.mark.parametrize("xml", [False, True], ids=["csv", "xml"])
def test_iu_frontal_images_get_the_rules_findings_of_their_report(realdata, tmp_path, xml):
    root = iu_root(tmp_path, realdata, xml)
    prepared = iu_xray.prepare(root, KB)
    items = [item for items in prepared.splits.values() for item in items]
    assert sorted(item["study_id"] for item in items) == ["CXR1", "CXR2", "CXR3", "CXR4", "CXR5"]
    rows = {row["uId"]: row for row in csv.DictReader((realdata / IU / "iu_reports_dev.csv").open())}
    for item in items:
        text = compose_text(rows[item["study_id"]], ["findings", "impression"])
        assert item["report"] == text and item["findings"] == rules_findings(text)
        assert item["view"] == "Frontal" and item["patient_id"] == item["study_id"]
        assert Path(item["image"]).is_file()
    assert_patient_disjoint(prepared.splits)
    assert prepared.summary.tables["reports"] == ("ecgen-radiology/*.xml" if xml else "iu_reports_dev.csv")
    assert prepared.unmentioned_findings == "unknown"
    every = iu_xray.prepare(root, KB, views="all")
    views = sorted(item["view"] for items in every.splits.values() for item in items)
    assert views == ["Frontal"] * 5 + ["Lateral"] * 5 and "lateral view" not in str(every.summary.skipped)


def test_iu_cli_with_a_findings_file_from_extract_findings(realdata, tmp_path):
    root = iu_root(tmp_path, realdata, xml=True)
    findings = tmp_path / "findings.jsonl"
    assert extract_findings(["--input", str(root / "ecgen-radiology"), "--output", str(findings), "--no-progress"]) == 0
    by_id = read_findings_jsonl(findings, KB)
    assert "CXR1" in by_id
    output = tmp_path / "out/datalist.json"
    assert main(["--collection", "iu-xray", "--root", str(root), "--output", str(output), "--findings", str(findings),
                 "--quiet"]) == 0  # fmt: skip
    datalist = load_datalist(output)
    items = all_items(datalist)
    assert len(items) == 5 and all(item["findings"] == by_id[item["study_id"]] for item in items)
    (root / "indiana_projections.csv").unlink()
    assert main(["--collection", "iu-xray", "--root", str(root), "--output", str(output), "--overwrite"]) == 2
