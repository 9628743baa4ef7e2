"""VinDr-CXR, COVIDx and TBX11K adapters (bundle/data/collections), and zero-shot evaluation presets on
real label sets (configs/zeroshot_*.json, bundle/metrics/zero_shot_report.py).

TBX11K runs on the kit's real sample (../shared/realdata/tbx11k-sample); the kit holds no VinDr-CXR
or COVIDx files, so those are small fixtures written here in the releases' exact layouts (real
DICOM files written with pydicom, PNGs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sklearn.metrics import roc_auc_score

from bundle.data import collections
from bundle.data.collections import covidx, tbx11k, vindr_cxr
from bundle.data.collections.chestxray14 import LABELS as CXR14_LABELS
from bundle.data.collections.common import summary_path, write_datalist
from bundle.data.datalist import SPLITS, load_datalist
from bundle.metrics import bootstrap_auc_intervals, preset_categories, zero_shot_report
from bundle.transforms import LoadChestXRayd
from bundle_cli import EVALUATE_CONFIGS, describe, run_bundle
from scripts.prepare_dataset import main
from tests.test_collections import KB, assert_patient_disjoint, run_cli
from tests.test_bundle_e2e import synthcxr, trained  # noqa: F401  (the tiny trained checkpoint, a fixture)
from tests.test_collections_more import findings_by_category, items_by_study
from tests.test_transforms_image import write_dicom

TBX = "tbx11k-sample"


def chestxray14_category(label: str) -> str | None:
    return collections.common.LabelMapper(KB, "chestx-ray14").lookup(label)

# -- VinDr-CXR --------------------------------------------------------------------------------------------------

# the release's 28 image-level labels, in its column order
VINDR_LABELS = ["Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture",
                "Consolidation", "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity",
                "Lung cavity", "Lung cyst", "Mediastinal shift", "Nodule/Mass", "Pleural effusion",
                "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis", "Rib fracture", "Other lesion", "COPD",
                "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "No finding"]  # fmt: skip


def vindr_labels_row(image_id: str, rad_id: str | None, *marked: str, value: str = "1") -> str:
    ids = [image_id] if rad_id is None else [image_id, rad_id]
    return ",".join(ids + [value if label in marked else "0" for label in VINDR_LABELS])


def vindr_root(tmp_path: Path) -> Path:
    """vindr-cxr/1.0.0 as PhysioNet publishes it: three radiologists per training image, one consensus
    row per test image, boxes, DICOM files named <image_id>.dicom."""
    root = tmp_path / "vindr-cxr" / "1.0.0"
    (root / "annotations").mkdir(parents=True)
    header = ",".join(["image_id", "rad_id", *VINDR_LABELS])
    train = [
        # img-a: cardiomegaly 2 of 3 (present), effusion 1 of 3 (uncertain), Nodule/Mass 3 of 3, clavicle
        # fracture 1 and rib fracture 2 of 3 (one category: the stronger wins), Other lesion (no category)
        vindr_labels_row("img-a", "R1", "Cardiomegaly", "Pleural effusion", "Nodule/Mass", "Clavicle fracture"),
        vindr_labels_row("img-a", "R2", "Cardiomegaly", "Nodule/Mass", "Rib fracture", "Other lesion"),
        vindr_labels_row("img-a", "R3", "Nodule/Mass", "Rib fracture"),
        *(vindr_labels_row("img-b", rad, "No finding") for rad in ("R4", "R5", "R6")),
        vindr_labels_row("img-c", "R1", "Cardiomegaly", value="2"),  # not 0/1: skipped
        *(vindr_labels_row("img-d", rad, "Lung tumor") for rad in ("R1", "R2", "R3")),  # its DICOM is missing
    ]
    (root / "annotations" / "image_labels_train.csv").write_text("\n".join([header, *train]) + "\n")
    test_header = ",".join(["image_id", *VINDR_LABELS])
    test = [vindr_labels_row("img-t", None, "Tuberculosis", "Pleural effusion", "Enlarged PA")]
    (root / "annotations" / "image_labels_test.csv").write_text("\n".join([test_header, *test]) + "\n")
    (root / "annotations" / "annotations_train.csv").write_text(
        "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n"
        "img-a,R1,Cardiomegaly,10,20,50,40\nimg-a,R2,Other lesion,1,1,2,2\nimg-a,R3,Nodule/Mass,5,5,,9\n"
        "img-b,R4,No finding,,,,\n"
    )
    (root / "annotations" / "annotations_test.csv").write_text(
        "image_id,class_name,x_min,y_min,x_max,y_max\nimg-t,Pleural effusion,30.5,40,60,70\n"
    )
    pixels = np.arange(48 * 48, dtype=np.uint16).reshape(48, 48)
    for split, image_id in (("train", "img-a"), ("train", "img-b"), ("train", "img-c"), ("test", "img-t")):
        (root / split).mkdir(exist_ok=True)
        write_dicom(root / split / f"{image_id}.dicom", pixels)
    return root


def test_vindr_consensus_labels_boxes_and_splits(tmp_path):
    prepared = vindr_cxr.prepare(vindr_root(tmp_path), KB)
    items = items_by_study(prepared)
    assert set(items) == {"img-a", "img-b", "img-t"}
    first = items["img-a"]
    # more than half of the readers: present; some but not more than half: uncertain
    assert findings_by_category(first) == {"cardiomegaly": "present", "pleural_effusion": "uncertain",
                                           "lung_lesion": "present", "fracture": "present"}  # fmt: skip
    assert {f["category"]: f["evidence"] for f in first["findings"]}["fracture"] == "Rib fracture"
    assert first["readers"] == 3 and first["split"] == "train" and first["patient_id"] == "img-a"
    assert first["boxes"] == [{"category": "cardiomegaly", "label": "Cardiomegaly", "x": 10.0, "y": 20.0,
                               "width": 40.0, "height": 20.0, "rad_id": "R1"}]  # fmt: skip
    assert items["img-b"]["findings"] == [] and "boxes" not in items["img-b"]
    test_item = items["img-t"]
    assert findings_by_category(test_item) == {"tuberculosis": "present", "pleural_effusion": "present"}
    assert test_item["readers"] == 1 and test_item["split"] == "test"
    assert test_item["boxes"] == [{"category": "pleural_effusion", "label": "Pleural effusion", "x": 30.5, "y": 40.0,
                                   "width": 29.5, "height": 30.0}]  # fmt: skip
    assert [item["study_id"] for item in prepared.splits["test"]] == ["img-t"]
    assert {item["study_id"] for split in ("training", "validation") for item in prepared.splits[split]} == {"img-a", "img-b"}
    summary = prepared.summary
    assert summary.skipped == {
        "bad label value": ["image_labels_train.csv img-c: Cardiomegaly = '2' (rad_id R1), not 0 or 1"],
        "box that is not four numbers": ["annotations_train.csv line 4 (img-a, Nodule/Mass)"],
    }
    assert summary.missing_images == ["train/img-d.dicom"]
    # labels without a category are listed, with the images that carry them (even none)
    assert summary.unmapped_labels == {"Enlarged PA": 1, "Lung cyst": 0, "Other lesion": 1, "Other diseases": 0,
                                       "Other lesion (box)": 1}  # fmt: skip
    assert summary.label_counts["Cardiomegaly present"] == 1 and summary.label_counts["Clavicle fracture uncertain"] == 1
    assert summary.tables == {"train labels": "image_labels_train.csv", "train boxes": "annotations_train.csv",
                              "test labels": "image_labels_test.csv", "test boxes": "annotations_test.csv"}  # fmt: skip
    # every image is labelled for every label: silence is a negative over the mapped categories
    assert prepared.unmentioned_findings == "absent"
    assert prepared.categories[:4] == ["aortic_aneurysm", "atelectasis", "calcification", "cardiomegaly"]
    assert {"tuberculosis", "lung_lesion", "mass", "cavity", "fracture"} <= set(prepared.categories)
    assert len(prepared.categories) == len(set(prepared.categories)) == 22
    assert_patient_disjoint(prepared)


def test_vindr_missing_tables_are_one_clear_error(tmp_path, capsys):
    root = vindr_root(tmp_path)
    (root / "annotations" / "image_labels_test.csv").unlink()
    with pytest.raises(collections.CollectionError, match="no annotations/image_labels_test.csv under .*PhysioNet"):
        vindr_cxr.prepare(root, KB)
    (root / "annotations" / "image_labels_train.csv").write_text("rad_id,Cardiomegaly\nR1,1\n")
    argv = ["--collection", "vindr-cxr", "--root", str(root), "--output", str(tmp_path / "out.json")]
    assert main(argv) == 2
    assert "has no column(s) ['image_id']" in capsys.readouterr().err


def test_vindr_datalist_loads_and_its_dicom_reads_through_the_image_transforms(tmp_path):
    output = tmp_path / "out" / "datalist.json"
    assert main(["--collection", "vindr-cxr", "--root", str(vindr_root(tmp_path)), "--output", str(output), "--quiet"]) == 0
    datalist = load_datalist(output)
    loaded = LoadChestXRayd(keys="image")(datalist["test"][0])
    assert tuple(loaded["image"].shape) == (1, 48, 48) and float(loaded["image"].max()) == 1.0


# -- COVIDx -----------------------------------------------------------------------------------------------------


def write_png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)).save(path)


def covidx_root(tmp_path: Path, release: str = "v9") -> Path:
    """COVIDx CXR: split files and one image folder per split; v9 (positive/negative, train/val/test) or an
    older three-class release (train_COVIDx5.txt / test_COVIDx5.txt, no val, source column sometimes absent)."""
    root = tmp_path / f"covidx-{release}"
    if release == "v9":
        tables = {
            "train.txt": ["p1 a.png positive cohen", "p2 b.png negative rsna", "p2 c.png negative rsna",
                          "p3 missing.png positive bimcv", "p4 bad-line", "p5 a.png negative rsna"],
            "val.txt": ["p6 d.png positive ricord"],
            "test.txt": ["p7 e.png negative rsna", "p8 f.png positive bimcv"],
        }
    else:
        tables = {
            "train_COVIDx5.txt": ["p1 a.png COVID-19 cohen", "p2 b.png pneumonia rsna", "p3 c.png normal rsna",
                                  "p4 d.png COVID-19"],
            "test_COVIDx5.txt": ["p9 e.png normal rsna"],
        }
    root.mkdir(parents=True)
    for name, lines in tables.items():
        (root / name).write_text("\n".join(lines) + "\n")
        split = name.split(".")[0].split("_")[0]
        for line in lines:
            fields = line.split()
            if len(fields) >= 3 and fields[1] != "missing.png":
                write_png(root / split / fields[1])
    return root


def test_covidx_v9_positive_negative_official_splits_and_bad_lines(tmp_path):
    prepared = covidx.prepare(covidx_root(tmp_path), KB)
    items = items_by_study(prepared)
    assert findings_by_category(items["a"]) == {"covid19": "present"}
    assert items["a"]["findings"][0]["evidence"] == "positive"
    assert findings_by_category(items["b"]) == {"covid19": "absent"}
    assert (items["a"]["patient_id"], items["a"]["split"], items["a"]["data_source"]) == ("p1", "train", "cohen")
    assert [item["study_id"] for item in prepared.splits["validation"]] == ["d"]
    assert sorted(item["study_id"] for item in prepared.splits["test"]) == ["e", "f"]
    assert sorted(item["study_id"] for item in prepared.splits["training"]) == ["a", "b", "c"]
    summary = prepared.summary
    assert summary.missing_images == ["train/missing.png"]
    assert summary.skipped["unreadable line"] == [
        "train.txt line 5: 'p4 bad-line' is not 'patient_id filename class [data_source]' with class one of "
        "positive, negative, COVID-19, pneumonia, normal"]  # fmt: skip
    assert summary.skipped["image already listed on an earlier line"] == [
        "train.txt line 6 (a.png), first at train.txt line 1"]
    assert summary.label_counts == {"positive": 4, "negative": 3} and not summary.unmapped_labels
    assert prepared.categories == ["covid19"] and prepared.unmentioned_findings == "absent"
    assert_patient_disjoint(prepared)


def test_covidx_older_three_class_release(tmp_path):
    prepared = covidx.prepare(covidx_root(tmp_path, "v5"), KB)
    items = items_by_study(prepared)
    # COVID-19 leaves pneumonia unstated (it is one); pneumonia is not COVID-19; normal is neither
    assert findings_by_category(items["a"]) == {"covid19": "present"}
    assert findings_by_category(items["b"]) == {"covid19": "absent", "pneumonia": "present"}
    assert findings_by_category(items["c"]) == {"covid19": "absent", "pneumonia": "absent"}
    assert findings_by_category(items["d"]) == {"covid19": "present"} and "data_source" not in items["d"]
    assert [item["study_id"] for item in prepared.splits["test"]] == ["e"]
    assert prepared.categories == ["covid19", "pneumonia"] and prepared.unmentioned_findings == "unknown"
    assert prepared.summary.notes == ["no val.txt: validation is a patient-level share of train"]
    assert prepared.summary.tables == {"train": "train_COVIDx5.txt", "test": "test_COVIDx5.txt"}
    assert_patient_disjoint(prepared)
    with pytest.raises(collections.CollectionError, match=r"no train.txt or test.txt \(nor an older release's"):
        covidx.prepare(tmp_path, KB)


# -- TBX11K ------------------------------------------------------------------------------------------------------


def test_tbx11k_real_sample_classes_boxes_and_the_tuberculosis_category(realdata):
    prepared = tbx11k.prepare(realdata / TBX, KB)
    items = items_by_study(prepared)
    assert set(items) == {"tb0005", "tb0007", "h0001"}
    assert findings_by_category(items["tb0005"]) == {"tuberculosis": "present"}
    assert findings_by_category(items["h0001"]) == {"tuberculosis": "absent"} and "boxes" not in items["h0001"]
    assert items["tb0005"]["boxes"] == [{"category": "tuberculosis", "label": "ActiveTuberculosis", "x": 381.8337097167969,
                                         "y": 126.8733901977539, "width": 40.236907958984375,
                                         "height": 44.565773010253906}]  # fmt: skip
    assert [box["label"] for box in items["tb0007"]["boxes"]] == ["ObsoletePulmonaryTuberculosis"] * 2
    summary = prepared.summary
    assert summary.label_counts == {"tb (tuberculosis)": 2, "health (no tuberculosis)": 1}
    assert summary.notes[0] == "3 tuberculosis boxes written" and not summary.unmapped_labels
    assert prepared.categories == ["tuberculosis"] and prepared.unmentioned_findings == "absent"
    assert {item["split"] for item in items.values()} == {"train"}
    # the new category: named by the collection's box classes and by report text
    assert {KB.category_for(text) for text in ("tuberculosis", "TB", "pulmonary tuberculosis")} == {"tuberculosis"}
    assert set(KB.categories["tuberculosis"].extra["collection_labels"]["tbx11k"]) == {
        "ActiveTuberculosis", "ObsoletePulmonaryTuberculosis", "PulmonaryTuberculosis"}


def tbx11k_root(tmp_path: Path, realdata: Path) -> Path:
    """The real sample as train, plus a val file (the official test stand-in) with a sick image, an image whose
    class contradicts its box, a box that is not four numbers and a missing image."""
    root = tmp_path / "TBX11K"
    shutil.copytree(realdata / TBX, root)
    write_png(root / "imgs" / "sick" / "s0001.png")
    write_png(root / "imgs" / "health" / "h0002.png")
    val = {
        "categories": [{"id": 1, "name": "ActiveTuberculosis"}, {"id": 9, "name": "LatentTuberculosis"}],
        "images": [{"id": 1, "file_name": "sick/s0001.png"}, {"id": 2, "file_name": "health/h0002.png"},
                   {"id": 3, "file_name": "tb/tb0099.png"}],
        "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4]},
                        {"id": 2, "image_id": 3, "category_id": 9, "bbox": [1, 2, 3, 4]},
                        {"id": 3, "image_id": 3, "category_id": 1, "bbox": [1, 2]}],
    }  # fmt: skip
    (root / "annotations" / "json" / "TBX11K_val.json").write_text(json.dumps(val))
    return root


def test_tbx11k_val_as_test_contradictions_and_bad_annotations(realdata, tmp_path):
    prepared = tbx11k.prepare(tbx11k_root(tmp_path, realdata), KB)
    assert [item["study_id"] for item in prepared.splits["test"]] == ["s0001"]
    assert findings_by_category(prepared.splits["test"][0]) == {"tuberculosis": "absent"}
    assert {item["split"] for split in ("training", "validation") for item in prepared.splits[split]} == {"train"}
    summary = prepared.summary
    assert summary.skipped == {
        "annotation without a four-number bbox": ["TBX11K_val.json annotation 3"],
        "boxes on an image of a class without tuberculosis": ["TBX11K_val.json health/h0002.png"],
    }
    assert summary.missing_images == ["imgs/tb/tb0099.png"]
    assert summary.unmapped_labels == {"LatentTuberculosis": 1}
    assert summary.notes[1].startswith("test: the official val set")


def test_tbx11k_cli_end_to_end_and_bad_json(realdata, tmp_path):
    output = tmp_path / "tbx" / "datalist.json"
    result = run_cli("--collection", "tbx11k", "--root", str(realdata / TBX), "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "positive findings written: tuberculosis 2" in result.stdout
    datalist = load_datalist(output)
    assert sum(len(datalist[split]) for split in SPLITS) == 3 and datalist["categories"] == ["tuberculosis"]
    assert json.loads(summary_path(output).read_text())["rows"] == 3
    item = next(item for split in SPLITS for item in datalist[split])
    assert tuple(LoadChestXRayd(keys="image")(item)["image"].shape) == (1, 512, 512)
    broken = tmp_path / "broken"
    (broken / "annotations" / "json").mkdir(parents=True)
    (broken / "annotations" / "json" / "TBX11K_train.json").write_text('{"images": []}')
    with pytest.raises(collections.CollectionError, match="has no annotations, categories list"):
        tbx11k.prepare(broken, KB)
    with pytest.raises(collections.CollectionError, match="no annotations/json/TBX11K_train.json under"):
        tbx11k.prepare(tmp_path, KB)


# -- zero-shot presets: bootstrap intervals, skipped classes, the ChestX-ray14 preset end to end ------------------


def test_bootstrap_intervals_equal_resampling_by_hand_and_skip_single_class_columns():
    rng = np.random.default_rng(5)
    labels = np.stack([rng.random(60) < 0.3, np.zeros(60, bool), rng.random(60) < 0.5], axis=1).astype(float)
    scores = np.round(labels * 0.3 + rng.random((60, 3)), 1)  # rounded: many ties
    intervals = bootstrap_auc_intervals(scores, labels, resamples=200, seed=11)
    # by hand: the same seeded draws as explicit resampled test sets, each scored by scikit-learn
    draws = np.random.default_rng(11).multinomial(60, np.full(60, 1 / 60), size=200)
    for column in (0, 2):
        aucs = []
        for counts in draws:
            index = np.repeat(np.arange(60), counts)
            if 0 < labels[index, column].sum() < len(index):
                aucs.append(roc_auc_score(labels[index, column], scores[index, column]))
        np.testing.assert_allclose(intervals[column], np.percentile(aucs, [2.5, 97.5]), rtol=1e-12)
        point = roc_auc_score(labels[:, column], scores[:, column])
        assert 0 <= intervals[column, 0] <= point <= intervals[column, 1] <= 1
    assert np.isnan(intervals[1]).all()  # no positive: no interval
    np.testing.assert_array_equal(intervals, bootstrap_auc_intervals(scores, labels, resamples=200, seed=11))
    wider = bootstrap_auc_intervals(scores[:20], labels[:20], resamples=200, seed=11)
    assert wider[0, 1] - wider[0, 0] > intervals[0, 1] - intervals[0, 0]
    with pytest.raises(ValueError, match="at least 1"):
        bootstrap_auc_intervals(scores, labels, resamples=0)


def test_report_lists_single_class_categories_and_keeps_nan_out_of_every_mean(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 4)) < 0.4).astype(float)
    labels[:, 1] = 0.0  # no positive
    labels[:, 2] = 1.0  # no negative
    labels[:3, 3], labels[3:, 3] = 1.0, 0.0  # the rarest scored category
    scores = rng.random((40, 4))
    outputs = [(list(scores), list(labels))]
    names = ["a", "b", "c", "d"]
    report = zero_shot_report(outputs, outputs, names, ["d"], tmp_path, bootstrap_resamples=50, rarest={"rare1": 1})
    assert report["skipped"] == {"b": "no positive in test", "c": "no negative in test"}
    assert set(report["seen"]) == {"a", "macro"} and set(report["unseen"]) == {"d", "macro"}
    assert list(report["rare1"]) == ["d", "macro"] and report["rare1"]["d"]["positives"] == 3
    for group in ("seen", "unseen", "rare1"):
        assert all(not np.isnan(value) for value in report[group]["macro"].values())
    saved = json.loads((tmp_path / "zero_shot_metrics.json").read_text())
    assert saved["bootstrap"]["resamples"] == 50 and saved["skipped"] == report["skipped"]
    low, high = saved["seen"]["a"]["auc_ci95"]
    assert low <= saved["seen"]["a"]["auc"] <= high
    assert "Skipped (no AUC on the test split): b (no positive in test), c (no negative in test)" in report["table"]
    assert "| auc 95% CI |" in report["table"]


def test_preset_class_lists_live_in_the_knowledge_base():
    assert KB.ids_in_list("chexpert5") == ["cardiomegaly", "pleural_effusion", "atelectasis", "consolidation",
                                           "pulmonary_edema"]  # fmt: skip
    assert len(KB.ids_in_list("chestx-ray14")) == 14
    assert set(KB.ids_in_list("chestx-ray14")) == {chestxray14_category(label) for label in CXR14_LABELS}
    assert KB.ids_in_list("covid") == ["covid19"]
    assert preset_categories(KB, "covid", {"categories": ["covid19"]}) == ["covid19"]
    with pytest.raises(ValueError, match="names none of the chexpert5 categories .*--dataset_dir"):
        preset_categories(KB, "chexpert5", {"name": "tbx11k", "categories": ["tuberculosis"]})
    with pytest.raises(ValueError, match="no category in the list 'padchest20'"):
        preset_categories(KB, "padchest20", {"categories": []})


def chestxray14_official_root(tmp_path: Path, realdata: Path) -> Path:
    """The real ChestX-ray14 table and the kit's 9 real images, with official lists written here (the kit has
    none): patient 13's five images are the test list, the other four images train_val."""
    root = tmp_path / "nih"
    (root / "images").mkdir(parents=True)
    (root / "Data_Entry_2017_v2020.csv.gz").symlink_to(realdata / "nih-chestxray14" / "Data_Entry_2017_v2020.csv.gz")
    names = sorted(path.name for path in (realdata / "nih-chestxray14" / "images").glob("*.png"))
    for name in names:
        (root / "images" / name).symlink_to(realdata / "nih-chestxray14" / "images" / name)
    (root / "test_list.txt").write_text("\n".join(n for n in names if n.startswith("00000013_")) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(n for n in names if not n.startswith("00000013_")) + "\n")
    return root


def test_chestxray14_preset_on_the_real_table_with_a_tiny_trained_checkpoint(trained, realdata, tmp_path):
    workdir, _ = trained
    data = tmp_path / "cxr14"
    # --val-fraction 0.5 puts three of the four train_val patients in validation (thresholds need some)
    assert main(["--collection", "chestx-ray14", "--root", str(chestxray14_official_root(tmp_path, realdata)),
                 "--output", str(data / "datalist.json"), "--val-fraction", "0.5", "--quiet"]) == 0  # fmt: skip
    result = run_bundle(workdir, data, configs=(*EVALUATE_CONFIGS, "configs/zeroshot_chestxray14.json"))
    assert result.returncode == 0, describe(result)
    metrics = json.loads((workdir / "eval" / "zero_shot_metrics.json").read_text())
    assert metrics["n_test"] == 5 and metrics["bootstrap"] == {
        "resamples": 1000, "seed": 0, "confidence": 0.95, "method": metrics["bootstrap"]["method"]}
    # the five test images have positives and negatives of five labels only: the other nine are listed
    assert metrics["skipped"] == {category: "no positive in test" for category in (
        "cardiomegaly", "consolidation", "pneumonia", "pulmonary_edema", "nodule", "mass", "hiatal_hernia",
        "pleural_thickening", "fibrosis")}  # fmt: skip
    scored = {c: row for c, row in metrics["seen"].items() if c != "macro"}
    assert set(scored) == {"pleural_effusion", "pneumothorax", "atelectasis", "emphysema", "infiltrate"}
    assert {c: row["positives"] for c, row in scored.items()} == {
        "pleural_effusion": 3, "pneumothorax": 3, "atelectasis": 1, "emphysema": 1, "infiltrate": 2}
    assert all(value is not None and np.isfinite(value) for value in metrics["seen"]["macro"].values())
    for row in scored.values():
        low, high = row["auc_ci95"]
        assert 0.0 <= low <= row["auc"] <= high <= 1.0
    log = result.stdout + result.stderr
    assert "Skipped (no AUC on the test split): cardiomegaly (no positive in test)" in log
