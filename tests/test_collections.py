"""Collection adapters (bundle/data/collections, scripts/prepare_dataset.py) on the real tables in
../shared/realdata, and on small fixtures built here in each collection's exact layout where the kit
has no sample (SIIM images with masks, official ChestX-ray14 lists)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bundle.data import collections
from bundle.data.collections import chestxray14, covid_chestxray, siim_acr
from bundle.data.collections.common import (
    LabelMapper,
    SplitFractions,
    patient_split,
    summary_path,
    write_datalist,
)
from bundle.data.datalist import SPLITS, load_datalist
from bundle.knowledge.base import KnowledgeBaseError, default_knowledge_base
from bundle.transforms import LoadChestXRayd
from scripts.prepare_dataset import main
from tests.test_transforms_image import write_dicom

REPO = Path(__file__).resolve().parents[1]
KB = default_knowledge_base()
NIH = "nih-chestxray14"
COVID = "covid-chestxray-dataset"
SIIM = "siim-acr-pneumothorax"
SIIM_IMAGE = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819"


def patients_per_split(prepared) -> dict[str, set[str]]:
    return {split: {item["patient_id"] for item in items} for split, items in prepared.splits.items()}


def assert_patient_disjoint(prepared) -> None:
    groups = list(patients_per_split(prepared).values())
    for index, first in enumerate(groups):
        for second in groups[index + 1:]:
            assert not first & second


# -- registry and shared parts ---------------------------------------------------------------------------


def test_registry_names_all_eleven_and_unbuilt_ones_say_so(monkeypatch):
    assert list(collections.COLLECTIONS) == [
        "mimic-cxr", "chexpert", "chestx-ray14", "rsna-pneumonia", "siim-acr", "vindr-cxr", "covidx",
        "covid-chestxray", "iu-xray", "tbx11k", "padchest",
    ]  # fmt: skip
    assert collections.available() == list(collections.COLLECTIONS)
    assert all(callable(collections.adapter(name).prepare) for name in collections.COLLECTIONS)
    monkeypatch.setitem(collections.COLLECTIONS, "planned", collections.Collection("planned", None))
    with pytest.raises(collections.CollectionError, match="'planned' is not available yet"):
        collections.adapter("planned")
    with pytest.raises(collections.CollectionError, match="unknown collection 'nih'"):
        collections.adapter("nih")


def test_patient_split_is_stable_and_near_the_fractions(realdata):
    rows = chestxray14.read_csv(realdata / NIH / "Data_Entry_2017_v2020.csv.gz", chestxray14.COLUMNS)
    fractions = SplitFractions(0.1, 0.2)
    splits = Counter(patient_split(patient, fractions) for patient in {row["Patient ID"] for row in rows})
    assert sum(splits.values()) == 30805
    assert abs(splits["test"] / 30805 - 0.2) < 0.01 and abs(splits["validation"] / 30805 - 0.1) < 0.01
    # sha256, not the salted hash(): the same in every process
    assert patient_split("1", fractions) == patient_split("1", SplitFractions(0.1, 0.2))
    with pytest.raises(ValueError, match="leave some patients for training"):
        SplitFractions(0.5, 0.5)


def test_a_label_claimed_by_two_categories_is_refused():
    data = {"categories": {"a": type("C", (), {"id": "a", "extra": {"collection_labels": {"x": ["L"]}}})(),
                           "b": type("C", (), {"id": "b", "extra": {"collection_labels": {"x": ["l"]}}})()},
            "source": "kb.yaml"}  # fmt: skip
    with pytest.raises(KnowledgeBaseError, match="label 'l' of x is listed in the collection_labels of both 'a' and 'b'"):
        LabelMapper(type("KB", (), data)(), "x")


# -- ChestX-ray14 --------------------------------------------------------------------------------------------


def test_chestxray14_full_table_matches_the_published_counts(realdata):
    prepared = chestxray14.prepare(realdata / NIH, KB)
    summary = prepared.summary
    assert (summary.rows, summary.patients) == (112120, 30805)
    assert summary.label_counts["No Finding"] == 60361
    assert summary.label_counts["Infiltration"] == 19894
    assert summary.label_counts["Effusion"] == 13317
    assert summary.label_counts["Hernia"] == 227
    assert set(summary.label_counts) == {*chestxray14.LABELS, "No Finding"} and not summary.unmapped_labels
    # the 14 labels name their categories through the knowledge base, in the paper's order
    assert prepared.categories == [
        "atelectasis", "cardiomegaly", "pleural_effusion", "infiltrate", "mass", "nodule", "pneumonia", "pneumothorax",
        "consolidation", "pulmonary_edema", "emphysema", "fibrosis", "pleural_thickening", "hiatal_hernia",
    ]  # fmt: skip
    assert prepared.unmentioned_findings == "absent"
    # 9 images in the kit: the other rows are missing images, counted and listed, not a crash
    assert len(summary.missing_images) == 112120 - 9 and "00000001_001.png" in summary.missing_images
    items = {item["study_id"]: item for items in prepared.splits.values() for item in items}
    assert len(items) == 9
    assert [f["category"] for f in items["00000013_004"]["findings"]] == [
        "pleural_effusion", "emphysema", "infiltrate", "pneumothorax"]
    assert items["00000013_019"]["findings"] == []  # No Finding
    assert items["00000013_004"]["view"] == "AP" and items["00000013_004"]["patient_id"] == "13"
    assert_patient_disjoint(prepared)


def test_chestxray14_official_lists_archive_folders_and_boxes(realdata, tmp_path):
    """The NIH layout: images in images_0NN/images/, the official lists, BBox_List with a box for an image."""
    rows = (realdata / NIH / "labels_for_included_images.csv").read_text().splitlines()
    (tmp_path / "Data_Entry_2017.csv").write_text("\n".join(rows) + "\n")
    for index, name in enumerate(("00000001_000.png", "00000003_000.png", "00000013_004.png", "00000013_019.png")):
        folder = tmp_path / f"images_00{1 + index % 2}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(realdata / NIH / "images" / name, folder / name)
    (tmp_path / "train_val_list.txt").write_text("00000001_000.png\n00000003_000.png\n00000013_004.png\n")
    (tmp_path / "test_list.txt").write_text("00000013_019.png\n00000013_018.png\n00000032_015.png\n")
    with gzip.open(tmp_path / "BBox_List_2017.csv.gz", "wt") as handle:
        handle.write("Image Index,Finding Label,Bbox [x,y,w,h],,,\n00000013_004.png,Infiltrate,10.5,20,30,40\n"
                     "00000013_004.png,Lung Cyst,1,2,3,4\n")  # fmt: skip
    prepared = chestxray14.prepare(tmp_path, KB)
    by_id = {item["study_id"]: (split, item) for split, items in prepared.splits.items() for item in items}
    assert by_id["00000013_019"][0] == "test" and by_id["00000013_019"][1]["split"] == "test"
    assert {by_id[i][1]["split"] for i in ("00000001_000", "00000003_000", "00000013_004")} == {"train_val"}
    assert {by_id[i][0] for i in ("00000001_000", "00000003_000", "00000013_004")} <= {"training", "validation"}
    assert by_id["00000013_004"][1]["boxes"] == [
        {"category": "infiltrate", "label": "Infiltrate", "x": 10.5, "y": 20.0, "width": 30.0, "height": 40.0}]
    assert prepared.summary.unmapped_labels == {"Lung Cyst": 1}
    # in a list but without an image: counted; in no list: skipped with its reason
    assert sorted(prepared.summary.missing_images) == ["00000013_018.png", "00000032_015.png"]
    assert prepared.summary.skipped == {"not in the official split lists": [
        "00000013_035.png", "00000013_021.png", "00027426_000.png"]}
    (tmp_path / "test_list.txt").unlink()
    with pytest.raises(collections.CollectionError, match="not test_list.txt; the official split needs both lists"):
        chestxray14.prepare(tmp_path, KB)


def test_chestxray14_missing_table_or_column_is_one_clear_error(tmp_path):
    with pytest.raises(collections.CollectionError, match=r"no label table Data_Entry_2017\*\.csv under .*Download"):
        chestxray14.prepare(tmp_path, KB)
    (tmp_path / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels,Patient ID\nx.png,Hernia,1\n")
    with pytest.raises(collections.CollectionError, match=r"has no column\(s\) \['View Position', 'Follow-up #'\]"):
        chestxray14.prepare(tmp_path, KB)


# -- covid-chestxray ----------------------------------------------------------------------------------------------


def test_covid_chestxray_real_metadata(realdata):
    prepared = covid_chestxray.prepare(realdata / COVID, KB)
    summary = prepared.summary
    assert summary.rows == 97
    # the kit's README: COVID-19 59 + "COVID-19, ARDS" 3; one Legionella row repeats an image
    assert summary.label_counts == {"COVID-19": 62, "No Finding": 9, "Pneumocystis": 7, "Pneumonia": 6,
                                    "Streptococcus": 6, "ARDS": 4, "Klebsiella": 2, "Legionella": 2, "Influenza": 1}
    assert list(summary.skipped) == ["image already listed on an earlier row"]
    assert not summary.unmapped_labels and not summary.missing_images
    assert summary.positives == {"covid19": 62, "pneumonia": 24, "airspace_disease": 4}
    items = [item for items in prepared.splits.values() for item in items]
    assert len(items) == 96 and {item["view"] for item in items} == {"PA", "AP", "AP Supine"}
    assert sum("lung_mask" in item for item in items) == 62
    assert all(item["lung_mask"].parent.name == "v7labs_lungs" for item in items if "lung_mask" in item)
    assert prepared.unmentioned_findings == "unknown"
    assert_patient_disjoint(prepared)
    lungvae = covid_chestxray.prepare(realdata / COVID, KB, lung_masks="lungvae")
    masks = [item["lung_mask"] for items in lungvae.splits.values() for item in items if "lung_mask" in item]
    assert len(masks) == 50 and all(mask.name.endswith("_mask.png") and mask.is_file() for mask in masks)


def test_covid_chestxray_hierarchical_findings_and_bad_rows(tmp_path):
    (tmp_path / "images").mkdir()
    rows = [("1", "Pneumonia/Viral/COVID-19", "PA"), ("2", "Pneumonia/Bacterial/Streptococcus", "AP"),
            ("3", "Sarcoidosis", "PA"), ("4", "Unknown", "PA"), ("5", "COVID-19", "L"), ("6", "No Finding", "AP Supine"),
            ("7", "COVID-19, ARDS", "PA")]  # fmt: skip
    lines = ["patientid,finding,view,modality,folder,filename"]
    for patient, finding, view in rows:
        lines.append(f'{patient},"{finding}",{view},X-ray,images,p{patient}.png')
        if patient != "7":
            Image.new("L", (40, 40)).save(tmp_path / "images" / f"p{patient}.png")
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n")
    prepared = covid_chestxray.prepare(tmp_path, KB, lung_masks="none")
    findings = {item["patient_id"]: [f["category"] for f in item["findings"]]
                for items in prepared.splits.values() for item in items}  # fmt: skip
    assert findings == {"1": ["pneumonia", "covid19"], "2": ["pneumonia"], "6": []}
    assert prepared.summary.unmapped_labels == {"Sarcoidosis": 1}  # (Tuberculosis has a category since 0.7.0)
    assert prepared.summary.skipped == {
        "labels name no knowledge-base category": ["line 4 (p3.png): Sarcoidosis"],
        "no finding label": ["line 5 (p4.png)"],
        "not a frontal X-ray (modality X-ray, view PA/AP/AP Supine)": ["line 6 (p5.png): X-ray L"],
    }
    assert prepared.summary.missing_images == ["images/p7.png"]
    (tmp_path / "metadata.csv").write_text("patientid,finding\n1,COVID-19\n")
    with pytest.raises(collections.CollectionError, match=r"metadata.csv has no column\(s\) \['view'"):
        covid_chestxray.prepare(tmp_path, KB)


# -- SIIM-ACR ---------------------------------------------------------------------------------------------------------


def competition_mask2rle(img: np.ndarray, width: int, height: int) -> str:
    """The competition's mask_functions.mask2rle (0/255 image, relative starts), as published."""
    rle, last_color, current_pixel, run_start, run_length = [], 0, 0, -1, 0
    for x in range(width):
        for y in range(height):
            current_color = img[x][y]
            if current_color != last_color:
                if current_color == 255:
                    run_start, run_length = current_pixel, 1
                else:
                    rle.extend((str(run_start), str(run_length)))
                    run_start, run_length, current_pixel = -1, 0, 0
            elif run_start > -1:
                run_length += 1
            last_color = current_color
            current_pixel += 1
    return " ".join(rle)


def known_mask(size: int = 64) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[5:20, 40:47] = 1  # a tall block near the top right: column-major order matters
    mask[30:31, 2:60] = 1
    mask[50:58, 10:12] = 1
    return mask


def test_rle_decodes_the_competition_encoding_by_value():
    mask = known_mask()
    # the kernels encode the transposed image: the code runs down columns
    encoded = competition_mask2rle((mask * 255).T, 64, 64)
    assert np.array_equal(siim_acr.decode_rle(encoded, 64, 64), mask)
    assert not np.array_equal(siim_acr.decode_rle(competition_mask2rle(mask * 255, 64, 64), 64, 64), mask)
    with pytest.raises(ValueError, match="not pairs"):
        siim_acr.decode_rle("5 3 2", 64, 64)
    with pytest.raises(ValueError, match="reach pixel 4097"):
        siim_acr.decode_rle("4000 97", 64, 64)


def test_rle_of_real_rows_has_the_pixels_its_runs_say(realdata):
    rows = siim_acr.read_csv(realdata / SIIM / "siim-pneumothorax-train-rle.csv.gz", siim_acr.COLUMNS)
    assert len(rows) == 12954 and rows[0]["EncodedPixels"] == "-1"
    positives = [row["EncodedPixels"] for row in rows if row["EncodedPixels"] != "-1"]
    for encoded in positives[:50]:
        lengths = [int(value) for value in encoded.split()[1::2]]
        assert int(siim_acr.decode_rle(encoded).sum()) == sum(lengths)


def siim_fixture(root: Path) -> dict[str, np.ndarray]:
    """Four images in the competition's layout: one with two regions, one -1, one bad row, one without DICOM."""
    masks = {"img.pos": known_mask(), "img.neg": np.zeros((64, 64), np.uint8), "img.bad": None, "img.gone": None}
    first, second = known_mask(), known_mask()
    first[30:, :], second[:30, :] = 0, 0  # the positive image's two regions, one row each
    rows = [("img.pos", competition_mask2rle((first * 255).T, 64, 64)),
            ("img.pos", competition_mask2rle((second * 255).T, 64, 64)),
            ("img.neg", "-1"), ("img.bad", "10 x"), ("img.gone", "-1")]  # fmt: skip
    (root / "train-rle.csv").write_text("ImageId, EncodedPixels\n" + "".join(f"{i}, {c}\n" for i, c in rows))
    for index, image_id in enumerate(("img.pos", "img.neg", "img.bad")):
        folder = root / "dicom-images-train" / f"1.2.{index}" / f"1.3.{index}"
        folder.mkdir(parents=True)
        write_dicom(folder / f"{image_id}.dcm", np.full((64, 64), 100, np.uint8), PatientID=f"patient-{index}",
                    ViewPosition="PA")  # fmt: skip
    return masks


def test_siim_fixture_masks_findings_and_bad_rows(tmp_path):
    root = tmp_path / "siim"
    root.mkdir()
    expected = siim_fixture(root)
    prepared = siim_acr.prepare(root, KB, masks_dir=tmp_path / "out" / "masks")
    items = {item["study_id"]: item for items in prepared.splits.values() for item in items}
    assert set(items) == {"img.pos", "img.neg"}
    for image_id in items:
        written = np.asarray(Image.open(items[image_id]["lesion_mask"]))
        assert np.array_equal(written, expected[image_id])
    assert items["img.pos"]["findings"][0]["presence"] == "present"
    assert items["img.neg"]["findings"][0]["presence"] == "absent"
    assert items["img.pos"]["patient_id"] == "patient-0" and items["img.pos"]["view"] == "PA"
    assert prepared.summary.missing_images == ["img.gone.dcm"]
    assert list(prepared.summary.skipped) == ["bad RLE row"]
    assert prepared.categories == ["pneumothorax"] and prepared.unmentioned_findings == "absent"


# -- writing and the CLI ----------------------------------------------------------------------------------------------


def test_written_datalist_loads_and_an_item_reads_through_the_image_transforms(realdata, tmp_path):
    prepared = siim_acr.prepare(realdata / SIIM, KB, masks_dir=tmp_path / "masks")
    output = write_datalist(prepared, tmp_path / "datalist.json")
    raw = json.loads(output.read_text())
    item = raw["training"][0]
    assert item["lesion_mask"] == f"masks/{SIIM_IMAGE}.png"  # under the datalist's folder: relative
    assert Path(item["image"]).is_absolute()  # elsewhere: absolute
    datalist = load_datalist(output)
    loaded = LoadChestXRayd(keys="image", mask_keys="lesion_mask")(datalist["training"][0])
    assert tuple(loaded["image"].shape) == (1, 1024, 1024) and int(loaded["lesion_mask"].sum()) == 0
    with pytest.raises(collections.CollectionError, match="exists; pass --overwrite"):
        write_datalist(prepared, output)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "prepare_dataset.py"), *args], capture_output=True,
                          text=True, cwd=REPO, timeout=300)  # fmt: skip


def test_cli_end_to_end_on_the_real_covid_collection(realdata, tmp_path):
    output = tmp_path / "covid" / "datalist.json"
    result = run_cli("--collection", "covid-chestxray", "--root", str(realdata / COVID), "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "labels: COVID-19 62" in result.stdout and "skipped, image already listed on an earlier row (1)" in result.stdout
    datalist = load_datalist(output)
    assert sum(len(datalist[split]) for split in SPLITS) == 96
    assert set(datalist["categories"]) == {"covid19", "pneumonia", "airspace_disease"}
    assert json.loads(summary_path(output).read_text())["rows"] == 97


@pytest.mark.parametrize(
    "args, message",
    [(["--collection", "mimic-cxr"], "no metadata table mimic-cxr-2.0.0-metadata.csv"),
     (["--collection", "chestx-ray14", "--lung-masks", "v7labs"], None),
     (["--collection", "chestx-ray14"], "no label table Data_Entry_2017"),
     (["--collection", "chestx-ray14", "--root", "/nonexistent"], "is not a folder")],
)  # fmt: skip
def test_cli_errors_exit_2_with_the_fix(args, message, tmp_path, capsys):
    argv = ["--root", str(tmp_path), "--output", str(tmp_path / "out.json"), *args]
    if message is None:  # an option of another collection: argparse's exit 2
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and "--lung-masks does not apply to chestx-ray14" in capsys.readouterr().err
        return
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_cli_refuses_an_existing_output_before_any_work(realdata, tmp_path, capsys):
    output = tmp_path / "datalist.json"
    output.write_text("{}")
    argv = ["--collection", "covid-chestxray", "--root", str(realdata / COVID), "--output", str(output)]
    assert main(argv) == 2 and "exists; pass --overwrite" in capsys.readouterr().err
    assert output.read_text() == "{}"
    assert main([*argv, "--overwrite", "--quiet"]) == 0
    assert json.loads(output.read_text())["unmentioned_findings"] == "unknown"
