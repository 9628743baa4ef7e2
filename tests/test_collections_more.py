"""More collection adapters (bundle/data/collections): RSNA Pneumonia, CheXpert, PadChest, VinDr-CXR.

The real RSNA label and DICOM-header tables of ../shared/realdata are parsed in full; images (and the
other collections' tables, which the kit does not hold) are small fixtures written here in each
collection's exact layout: real DICOM files written with pydicom, JPGs and 16-bit PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bundle.data import collections
from bundle.data.collections import chexpert, padchest, rsna_pneumonia
from bundle.data.collections.common import write_datalist
from bundle.data.datalist import load_datalist
from bundle.transforms import LoadChestXRayd
from scripts.prepare_dataset import main
from tests.test_collections import KB, assert_patient_disjoint
from tests.test_transforms_image import write_dicom

RSNA = "rsna-pneumonia-labels"
RSNA_LABELS = "kaggle_stage_2_train_labels.csv.zip"
RSNA_HEADERS = "kaggle_stage_2_train_images_dicom_headers.csv.gz"
# Real ids of the labels table: two boxes (AP in the header table), and two negatives (PA, AP).
RSNA_POSITIVE = "00436515-870c-4b36-a041-de91049b9ab4"
RSNA_NEGATIVE = "0004cfab-14fd-4e49-80ba-63a80b6bddd6"
RSNA_NEGATIVE_AP = "00322d4d-1c29-4943-afc9-b6754be640eb"


def items_by_study(prepared) -> dict[str, dict]:
    return {item["study_id"]: item for items in prepared.splits.values() for item in items}


# -- RSNA Pneumonia -------------------------------------------------------------------------------------------


def rsna_root(tmp_path: Path, realdata: Path, headers: bool = True) -> Path:
    """The competition layout: the real tables (linked, not copied) and three DICOMs written here. The
    positive image's DICOM says view LL, against AP in the header table, to show which one is read."""
    root = tmp_path / "rsna"
    (root / rsna_pneumonia.IMAGE_FOLDER).mkdir(parents=True)
    for name in (RSNA_LABELS, RSNA_HEADERS) if headers else (RSNA_LABELS,):
        (root / name).symlink_to(realdata / RSNA / name)
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    for image_id, view in ((RSNA_POSITIVE, "LL"), (RSNA_NEGATIVE, "PA"), (RSNA_NEGATIVE_AP, "AP")):
        write_dicom(root / rsna_pneumonia.IMAGE_FOLDER / f"{image_id}.dcm", pixels, PatientID=f"dicom-{image_id[:8]}",
                    ViewPosition=view)  # fmt: skip
    return root


def test_rsna_full_real_table_matches_the_published_counts(realdata, tmp_path):
    prepared = rsna_pneumonia.prepare(rsna_root(tmp_path, realdata), KB)
    summary = prepared.summary
    # the challenge's stage-2 training set: 30,227 rows, 26,684 images, 6,012 with pneumonia (9,555 boxes)
    assert summary.rows == 30227 and summary.patients == 26684
    assert summary.label_counts == {"Pneumonia": 6012, "no Pneumonia": 20672}
    assert not summary.skipped and not summary.unmapped_labels
    assert len(summary.missing_images) == 26684 - 3
    assert summary.tables == {"labels": RSNA_LABELS, "dicom headers": RSNA_HEADERS}
    items = items_by_study(prepared)
    positive = items[RSNA_POSITIVE]
    assert positive["findings"] == [{"category": "pneumonia", "location": None, "severity": None,
                                     "presence": "present", "evidence": ""}]  # fmt: skip
    assert positive["boxes"] == [
        {"category": "pneumonia", "label": "Pneumonia", "x": 264.0, "y": 152.0, "width": 213.0, "height": 379.0},
        {"category": "pneumonia", "label": "Pneumonia", "x": 562.0, "y": 152.0, "width": 256.0, "height": 453.0},
    ]
    # the header table wins over the DICOM where it lists the image
    assert positive["view"] == "AP" and positive["patient_id"] == RSNA_POSITIVE
    negative = items[RSNA_NEGATIVE]
    assert negative["findings"][0]["presence"] == "absent" and "boxes" not in negative and negative["view"] == "PA"
    assert prepared.categories == ["pneumonia"] and prepared.unmentioned_findings == "absent"
    assert summary.notes == ["2 pneumonia boxes written"]
    assert_patient_disjoint(prepared)


def test_rsna_without_the_header_table_reads_view_and_patient_from_each_dicom(realdata, tmp_path):
    prepared = rsna_pneumonia.prepare(rsna_root(tmp_path, realdata, headers=False), KB)
    items = items_by_study(prepared)
    assert items[RSNA_POSITIVE]["view"] == "LL" and items[RSNA_POSITIVE]["patient_id"] == "dicom-00436515"
    assert prepared.summary.patients == 3 and prepared.summary.tables == {"labels": RSNA_LABELS}


def test_rsna_bad_rows_and_unreadable_dicoms_are_skipped_with_their_reason(tmp_path):
    images = tmp_path / rsna_pneumonia.IMAGE_FOLDER
    images.mkdir()
    (tmp_path / "stage_2_train_labels.csv").write_text(
        "patientId,x,y,width,height,Target\n"
        "good,1,2,3,4,1\nmixed,1,2,3,4,1\nmixed,,,,,0\nodd,,,,,2\nnobox,,,,,1\nbroken,,,,,0\n"
    )
    for image_id in ("good", "mixed", "odd", "nobox"):
        write_dicom(images / f"{image_id}.dcm", np.full((40, 40), 7, np.uint8), PatientID=image_id, ViewPosition="PA")
    (images / "broken.dcm").write_bytes(b"not a dicom file")
    prepared = rsna_pneumonia.prepare(tmp_path, KB)
    assert set(items_by_study(prepared)) == {"good"}
    skipped = prepared.summary.skipped
    assert skipped["bad label rows"] == [
        "mixed: Target ['0', '1'] (expected one of 0 or 1 on all its rows)",
        "odd: Target ['2'] (expected one of 0 or 1 on all its rows)",
        "nobox: Target 1 with box ['', '', '', ''], not four numbers",
    ]
    [unreadable] = skipped["unreadable DICOM header"]
    assert "broken.dcm (InvalidDicomError" in unreadable
    (tmp_path / "stage_2_train_labels.csv").write_text("patientId,Target\nx,0\n")
    with pytest.raises(collections.CollectionError, match=r"has no column\(s\) \['x', 'y', 'width', 'height'\]"):
        rsna_pneumonia.prepare(tmp_path, KB)
    (tmp_path / "stage_2_train_labels.csv").unlink()
    with pytest.raises(collections.CollectionError, match="no label table stage_2_train_labels.csv under .*Download"):
        rsna_pneumonia.prepare(tmp_path, KB)


def test_rsna_datalist_loads_and_its_dicom_reads_through_the_image_transforms(realdata, tmp_path):
    prepared = rsna_pneumonia.prepare(rsna_root(tmp_path, realdata), KB)
    output = write_datalist(prepared, tmp_path / "rsna" / "datalist.json")
    raw = json.loads(output.read_text())
    item = next(item for split in ("training", "validation", "test") for item in raw[split])
    assert item["image"].startswith("stage_2_train_images/")  # under the datalist's folder: relative
    datalist = load_datalist(output)
    loaded = LoadChestXRayd(keys="image")(next(i for s in ("training", "validation", "test") for i in datalist[s]))
    assert tuple(loaded["image"].shape) == (1, 64, 64) and float(loaded["image"].max()) == 1.0


# -- CheXpert ---------------------------------------------------------------------------------------------------

CHEXPERT_HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", *chexpert.LABELS]


def chexpert_row(path: str, view: str, projection: str, **labels: str) -> str:
    """One train.csv/valid.csv row; ``labels`` by column name with spaces as underscores."""
    values = {"Path": path, "Sex": "Female", "Age": "68", "Frontal/Lateral": view, "AP/PA": projection}
    values.update({name.replace("_", " "): value for name, value in labels.items()})
    return ",".join(values.get(column, "") for column in CHEXPERT_HEADER)


def chexpert_root(tmp_path: Path, test_table: str | None = "test_labels.csv") -> Path:
    """CheXpert-v1.0-small as it unpacks: train/valid CSVs with the release's folder prefix, tiny JPGs,
    and the radiologist test labels in one of the two published forms."""
    root = tmp_path / "CheXpert-v1.0-small"
    prefix = "CheXpert-v1.0-small/"
    train = [
        chexpert_row(prefix + "train/patient00001/study1/view1_frontal.jpg", "Frontal", "AP", No_Finding="1.0",
                     Support_Devices="1.0", Pneumothorax="0.0"),
        chexpert_row(prefix + "train/patient00001/study1/view2_lateral.jpg", "Lateral", "", No_Finding="1.0"),
        chexpert_row(prefix + "train/patient00002/study2/view1_frontal.jpg", "Frontal", "PA", Edema="-1.0",
                     Lung_Lesion="1.0", Pleural_Other="1.0", Lung_Opacity="1.0"),
        chexpert_row(prefix + "train/patient00003/study1/view1_frontal.jpg", "Frontal", "AP", Cardiomegaly="2.0"),
        chexpert_row(prefix + "train/patient00004/study1/view1_frontal.jpg", "Frontal", "AP", Fracture="1.0"),
    ]  # fmt: skip
    every_label = {label.replace(" ", "_"): "1.0" if label == "Atelectasis" else "0.0" for label in chexpert.LABELS}
    valid = [chexpert_row(prefix + "valid/patient64541/study1/view1_frontal.jpg", "Frontal", "AP", **every_label)]
    root.mkdir(parents=True)
    for name, rows in (("train.csv", train), ("valid.csv", valid)):
        (root / name).write_text("\n".join([",".join(CHEXPERT_HEADER), *rows]) + "\n")
    images = ["train/patient00001/study1/view1_frontal.jpg", "train/patient00001/study1/view2_lateral.jpg",
              "train/patient00002/study2/view1_frontal.jpg", "train/patient00003/study1/view1_frontal.jpg",
              "valid/patient64541/study1/view1_frontal.jpg", "test/patient64741/study1/view1_frontal.jpg",
              "test/patient64741/study1/view2_lateral.jpg"]  # patient00004's image is missing  # fmt: skip
    for image in images:
        (root / image).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.arange(40 * 40, dtype=np.uint8).reshape(40, 40)).save(root / image)
    labels = ",".join(["No Finding", *chexpert.LABELS])
    positive = ",".join(["0", "0", "1", *["0"] * 11])  # Cardiomegaly
    if test_table == "test_labels.csv":
        (root / test_table).write_text(f"Path,{labels}\ntest/patient64741/study1/view1_frontal.jpg,{positive}\n"
                                       f"test/patient64741/study1/view2_lateral.jpg,{positive}\n")  # fmt: skip
    elif test_table == "groundtruth.csv":
        (root / test_table).write_text(f"Study,{labels}\nCheXpert-v1.0/test/patient64741/study1,{positive}\n"
                                       f"CheXpert-v1.0/test/patient64742/study1,{positive}\n")  # fmt: skip
    return root


def findings_by_category(item: dict) -> dict[str, str]:
    return {finding["category"]: finding["presence"] for finding in item["findings"]}


def test_chexpert_labels_name_categories_through_the_knowledge_base_chexpert_field():
    categories = chexpert.label_categories(KB)
    # where several categories roll up to one label (Lung Lesion: nodule, mass, lung_lesion), the label names one
    assert categories == {
        "Enlarged Cardiomediastinum": "enlarged_cardiomediastinum", "Cardiomegaly": "cardiomegaly",
        "Lung Opacity": "opacity", "Lung Lesion": "lung_lesion", "Edema": "pulmonary_edema",
        "Consolidation": "consolidation", "Pneumonia": "pneumonia", "Atelectasis": "atelectasis",
        "Pneumothorax": "pneumothorax", "Pleural Effusion": "pleural_effusion", "Pleural Other": "pleural_other",
        "Fracture": "fracture", "Support Devices": "support_devices",
    }  # fmt: skip
    assert all(KB.categories[category].chexpert == label for label, category in categories.items())


def test_chexpert_fixture_values_views_splits_and_bad_rows(tmp_path):
    prepared = chexpert.prepare(chexpert_root(tmp_path), KB)
    items = {item["image"].relative_to(tmp_path / "CheXpert-v1.0-small").as_posix(): (split, item)
             for split, items in prepared.splits.items() for item in items}  # fmt: skip
    assert set(items) == {"train/patient00001/study1/view1_frontal.jpg", "train/patient00002/study2/view1_frontal.jpg",
                          "valid/patient64541/study1/view1_frontal.jpg", "test/patient64741/study1/view1_frontal.jpg"}
    split, first = items["train/patient00001/study1/view1_frontal.jpg"]
    # 1 / 0 / -1 / blank -> present / absent / uncertain / nothing; No Finding names no category
    assert findings_by_category(first) == {"pneumothorax": "absent", "support_devices": "present"}
    assert first["findings"][1]["evidence"] == "Support Devices"
    assert (first["patient_id"], first["study_id"]) == ("patient00001", "patient00001/study1")
    assert (first["view"], first["split"]) == ("AP", "train")
    assert split in ("training", "validation")
    assert findings_by_category(items["train/patient00002/study2/view1_frontal.jpg"][1]) == {
        "opacity": "present", "lung_lesion": "present", "pulmonary_edema": "uncertain",
        "pleural_other": "present"}  # fmt: skip
    # with the official test labels present, valid joins validation and test is the test set
    assert items["valid/patient64541/study1/view1_frontal.jpg"][0] == "validation"
    assert len(findings_by_category(items["valid/patient64541/study1/view1_frontal.jpg"][1])) == 13
    test_split, test_item = items["test/patient64741/study1/view1_frontal.jpg"]
    assert test_split == "test" and test_item["split"] == "test" and test_item["view"] == "Frontal"
    assert findings_by_category(test_item)["cardiomegaly"] == "present"
    summary = prepared.summary
    assert summary.skipped == {
        "lateral view (--views all keeps it)": ["train/patient00001/study1/view2_lateral.jpg",
                                                "test/patient64741/study1/view2_lateral.jpg"],
        "bad label value": ["train.csv line 5 (CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg): "
                            "Cardiomegaly = '2.0', not 1, 0, -1 or blank"],
    }  # fmt: skip
    assert summary.missing_images == ["train/patient00004/study1/view1_frontal.jpg"]
    assert summary.label_counts["No Finding present"] == 2 and summary.label_counts["Edema uncertain"] == 1
    assert summary.rows == 5 + 1 + 2
    assert summary.tables == {"train": "train.csv", "valid": "valid.csv", "test": "test_labels.csv"}
    assert prepared.unmentioned_findings == "unknown"
    assert prepared.categories[:2] == ["enlarged_cardiomediastinum", "cardiomegaly"]
    assert_patient_disjoint(prepared)
    everything = chexpert.prepare(chexpert_root(tmp_path / "all"), KB, views="all")
    assert sum(map(len, everything.splits.values())) == 6
    assert "lateral view (--views all keeps it)" not in everything.summary.skipped


def test_chexpert_groundtruth_study_labels_and_valid_as_test_without_test_labels(tmp_path):
    prepared = chexpert.prepare(chexpert_root(tmp_path, "groundtruth.csv"), KB)
    test = prepared.splits["test"]
    # groundtruth.csv labels studies: every frontal image of the study folder gets them
    assert [item["image"].name for item in test] == ["view1_frontal.jpg"] and test[0]["patient_id"] == "patient64741"
    assert prepared.summary.missing_images[-1] == "test/patient64742/study1/view*.jpg"
    without = chexpert.prepare(chexpert_root(tmp_path / "no-test", None), KB)
    assert [item["split"] for item in without.splits["test"]] == ["valid"]
    assert without.summary.notes == ["test: valid.csv (no test_labels.csv or groundtruth.csv under the root)"]
    (tmp_path / "CheXpert-v1.0-small" / "test_labels.csv").write_text("Path\n")
    with pytest.raises(collections.CollectionError, match="holds both test_labels.csv and groundtruth.csv"):
        chexpert.prepare(tmp_path / "CheXpert-v1.0-small", KB)
    with pytest.raises(collections.CollectionError, match="no train.csv under .*CheXpert-v1.0\\(-small\\) folder"):
        chexpert.prepare(tmp_path, KB)


def test_cli_prepares_chexpert_with_views_and_refuses_views_elsewhere(tmp_path, capsys):
    root = chexpert_root(tmp_path)
    output = tmp_path / "out" / "datalist.json"
    assert main(["--collection", "chexpert", "--root", str(root), "--output", str(output), "--views", "all"]) == 0
    assert "labels: " in capsys.readouterr().out
    datalist = load_datalist(output)
    assert sum(len(datalist[split]) for split in ("training", "validation", "test")) == 6
    loaded = LoadChestXRayd(keys="image")(datalist["test"][0])
    assert tuple(loaded["image"].shape) == (1, 40, 40)
    with pytest.raises(SystemExit):
        main(["--collection", "rsna-pneumonia", "--root", str(root), "--output", str(output), "--views", "all"])
    assert "--views does not apply to rsna-pneumonia" in capsys.readouterr().err


# -- PadChest ---------------------------------------------------------------------------------------------------

PADCHEST_COLUMNS = ["ImageID", "ImageDir", "StudyDate_DICOM", "StudyID", "PatientID", "PatientBirth", "Projection",
                    "MethodLabel", "Labels", "Localizations"]  # the release's columns the adapter reads, and a few more
PADCHEST_UNREADABLE = "216840111366964012989926673512011083134050913_00-168-009.png"


def write_png16(path: Path, offset: int = 1000) -> np.ndarray:
    """A 16-bit grey PNG whose 4,096 values all lie above 8 bits (PadChest stores 12-bit data in 16 bits)."""
    pixels = (np.arange(64 * 64, dtype=np.uint16) + offset).reshape(64, 64)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def padchest_root(tmp_path: Path, flat: bool = False) -> Path:
    """The release's table and 16-bit PNGs, in the archives' numbered folders (or one flat images/ folder)."""
    root = tmp_path / "padchest"
    rows = [  # ImageID, ImageDir, PatientID, Projection, MethodLabel, Labels
        ("img1.png", "0", "p1", "PA", "Physician", "['pleural effusion', 'COPD signs']"),
        ("img2.png", "1", "p2", "AP_horizontal", "RNN_model", "['normal']"),
        ("img3.png", "0", "p1", "L", "Physician", "['cardiomegaly']"),
        ("img4.png", "0", "p3", "PA", "Physician", "['exclude']"),
        ("img5.png", "0", "p4", "PA", "RNN_model", "['chronic changes', ' pseudonodule']"),
        ("img6.png", "1", "p5", "PA", "Physician", "['suboptimal study', 'pneumonia', 'chronic changes']"),
        ("img7.png", "1", "p6", "PA", "Physician", "__import__('os').getcwd()"),
        (PADCHEST_UNREADABLE, "46", "p7", "PA", "Physician", "['normal']"),
        ("img9.png", "1", "p8", "PA", "Physician", "['normal']"),
        ("img10.png", "1", "p9", "PA", "Physician", "['normal']"),
        ("img11.png", "1", "p10", "PA", "Physician", ""),
    ]
    lines = [",".join(PADCHEST_COLUMNS)]
    for image_id, folder, patient, projection, method, labels in rows:
        values = {"ImageID": image_id, "ImageDir": folder, "StudyID": f"s-{image_id[:-4]}", "PatientID": patient,
                  "Projection": projection, "MethodLabel": method, "Labels": labels, "PatientBirth": "1950.0"}
        lines.append(",".join(f'"{values.get(column, "")}"' for column in PADCHEST_COLUMNS))
    root.mkdir(parents=True)
    (root / padchest.TABLE).write_text("\n".join(lines) + "\n")
    for image_id, folder, *_ in rows:
        if image_id not in ("img9.png", "img10.png"):
            write_png16(root / ("images" if flat else folder) / image_id)
    (root / ("images" if flat else "1") / "img9.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def test_padchest_fixture_labels_views_bad_rows_and_unmapped_labels(tmp_path):
    prepared = padchest.prepare(padchest_root(tmp_path), KB)
    items = items_by_study(prepared)
    assert set(items) == {"s-img1", "s-img2", "s-img6"}
    assert findings_by_category(items["s-img1"]) == {"pleural_effusion": "present", "copd": "present"}
    assert items["s-img1"]["findings"][1]["evidence"] == "COPD signs"
    assert items["s-img2"]["findings"] == [] and items["s-img2"]["view"] == "AP Supine"  # normal; supine AP
    assert findings_by_category(items["s-img6"]) == {"pneumonia": "present"}  # a remark names nothing
    assert [items[s]["label_method"] for s in ("s-img1", "s-img2")] == ["Physician", "RNN_model"]
    summary = prepared.summary
    assert summary.unmapped_labels == {"chronic changes": 2, "pseudonodule": 1}
    skipped = {reason: len(what) for reason, what in summary.skipped.items()}
    assert skipped == {
        "not a frontal projection (PA, AP, AP_horizontal; --views all keeps it)": 1,
        "labelled exclude by the annotators": 1, "labels name no knowledge-base category": 1,
        "unreadable Labels": 1, "known unreadable file of the release": 1, "image does not open": 1, "no labels": 1,
    }  # fmt: skip
    assert summary.skipped["unreadable Labels"] == [
        "line 8 (img7.png): Labels \"__import__('os').getcwd()\" is not a Python list literal"]
    assert summary.missing_images == ["1/img10.png"]
    assert prepared.unmentioned_findings == "unknown" and prepared.categories == ["pleural_effusion", "copd", "pneumonia"]
    assert_patient_disjoint(prepared)
    physicians = padchest.prepare(padchest_root(tmp_path / "flat", flat=True), KB, views="all", physician_only=True)
    assert set(items_by_study(physicians)) == {"s-img1", "s-img3", "s-img6"}  # a flat folder works as well
    assert len(physicians.summary.skipped["labelled by the model, not a physician (--physician-only)"]) == 2


def test_padchest_16_bit_png_keeps_its_range_through_the_image_loader(tmp_path):
    """A PadChest-like 16-bit PNG, all values above 255: scaled by its own range, never cut to 8 bits
    (an 8-bit cut would leave one grey value, or 256 levels at most)."""
    prepared = padchest.prepare(padchest_root(tmp_path), KB)
    output = write_datalist(prepared, tmp_path / "padchest" / "datalist.json")
    item = next(item for split in ("training", "validation", "test") for item in load_datalist(output)[split]
                if item["study_id"] == "s-img1")  # fmt: skip
    loaded = LoadChestXRayd(keys="image")(item)["image"][0]
    assert len(torch.unique(loaded)) > 3000
    # the stored order survives: the gradient rises along rows; the robust percentiles clip only the tails
    assert bool((loaded.flatten()[1:] >= loaded.flatten()[:-1]).all())
    assert float(loaded[0, 0]) == 0.0 and float(loaded[-1, -1]) == 1.0 and 0.45 < float(loaded[32, 0]) < 0.55


def test_padchest_table_missing_or_wrong_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(collections.CollectionError, match="no label table PADCHEST_chest_x_ray.*Download"):
        padchest.prepare(tmp_path, KB)
    (tmp_path / padchest.TABLE).write_text("ImageID,Labels\nx.png,['normal']\n")
    with pytest.raises(collections.CollectionError, match=r"has no column\(s\) \['ImageDir', 'StudyID', 'PatientID'"):
        padchest.prepare(tmp_path, KB)
    root = padchest_root(tmp_path / "cli")
    output = tmp_path / "out.json"
    assert main(["--collection", "padchest", "--root", str(root), "--output", str(output), "--physician-only"]) == 0
    printed = capsys.readouterr().out
    assert "left out of the findings; add them to a category's collection_labels): chronic changes 1" in printed
    assert {i["label_method"] for s in ("training", "validation", "test") for i in load_datalist(output)[s]} == {"Physician"}
