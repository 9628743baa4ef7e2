"""Pneumothorax on SIIM-ACR (configs/pneumothorax_siim.json): datalist from the competition layout, Dice on empty masks.

The kit in ../shared/realdata holds one real SIIM-ACR DICOM (a negative) and the full RLE table:
too little to train on, which the config must say. Training runs on a tiny SynthCXR set written
in the competition's layout (DICOM files, relative column-major RLE as the competition's
mask2rle encodes it), with the tiny ViT tower for two epochs.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bundle.data.datalist import load_datalist
from bundle.engines import UserInputError
from bundle_cli import describe, make_synthcxr, run_bundle
from test_collections import competition_mask2rle
from test_segmentation import TINY, TRAIN, at_bundle_root, parse  # noqa: F401 (autouse)
from test_transforms_image import write_dicom

SIIM = "configs/pneumothorax_siim.json"


def siim_layout(synthcxr: Path, root: Path) -> dict[str, np.ndarray]:
    """SynthCXR written as the SIIM-ACR download: its lesion masks as pneumothorax RLE rows ("-1" when empty)."""
    datalist = json.loads((synthcxr / "datalist.json").read_text())
    masks, rows = {}, []
    for index, item in enumerate(item for split in ("training", "validation", "test") for item in datalist[split]):
        image_id = f"1.2.276.0.{index}"
        pixels = np.asarray(Image.open(synthcxr / item["image"]).convert("L"))
        mask = (np.asarray(Image.open(synthcxr / item["lesion_mask"])) > 0).astype(np.uint8)
        folder = root / "dicom-images-train" / f"study{index}" / f"series{index}"
        folder.mkdir(parents=True)
        write_dicom(folder / f"{image_id}.dcm", pixels, PatientID=item["patient_id"], ViewPosition="PA")
        height, width = mask.shape
        rows.append((image_id, competition_mask2rle((mask * 255).T, width, height) if mask.any() else "-1"))
        masks[image_id] = mask
    (root / "train-rle.csv").write_text("ImageId, EncodedPixels\n" + "".join(f"{i}, {c}\n" for i, c in rows))
    return masks


@pytest.fixture(scope="module")
def siim_root(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    base = tmp_path_factory.mktemp("siim")
    root = base / "siim-acr"
    root.mkdir()
    return root, siim_layout(make_synthcxr(base / "synthcxr", 40), root)


def test_override_is_a_one_class_pneumothorax_task_that_scores_empty_masks():
    parser = parse(TRAIN, SIIM)
    assert parser["task"] == "siim_pneumothorax" and parser["mask_key"] == "lesion_mask"
    assert parser["class_names"] == ["pneumothorax"] and parser["seg_model_file"] == "segmentation_pneumothorax.pt"
    assert parser.get_parsed_content("image_size") == 512
    empty, spot = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    spot[..., 2:4, 2:4] = 1
    for section in ("validate", "test"):
        metrics = parser.get_parsed_content(f"{section}#key_metric")
        dice = next(iter(metrics.values())).metric_fn
        # the competition's rule: an empty prediction on an image without pneumothorax is a perfect score,
        # a false alarm on it scores 0; neither may be left out of the mean (MONAI's default ignore_empty)
        assert dice(empty, empty).item() == 1.0 and dice(spot, empty).item() == 0.0 and dice(spot, spot).item() == 1.0
    lungs = parse(TRAIN).get_parsed_content("validate#key_metric")["val_mean_dice"].metric_fn
    assert torch.isnan(lungs(empty, empty)).all(), "lung masks are never empty: the default leaves empty ones out"


def test_the_kits_single_negative_image_is_too_little_and_the_error_says_so(realdata, tmp_path):
    collection = realdata / "siim-acr-pneumothorax"
    before = sorted(str(p) for p in collection.rglob("*"))
    parser = parse(TRAIN, SIIM, dataset_dir=str(collection), output_dir=str(tmp_path / "eval"))
    with pytest.raises(RuntimeError) as caught:  # MONAI wraps what an expression raises
        parser.get_parsed_content("datalist_file")
    error = caught.value.__cause__
    assert isinstance(error, UserInputError)
    assert "too few images with a lesion_mask to train on" in str(error) and "Fix: pass --dataset_dir" in str(error)
    assert sorted(str(p) for p in collection.rglob("*")) == before, "wrote into the collection"
    assert len(list((tmp_path / "eval/siim_pneumothorax_masks").glob("*.png"))) == 1  # decoded into the run's folder


def test_prepared_datalist_keeps_the_negatives_with_their_decoded_masks(siim_root, tmp_path):
    root, masks = siim_root
    parser = parse(TRAIN, SIIM, dataset_dir=str(root), output_dir=str(tmp_path / "eval"))
    datalist = load_datalist(parser.get_parsed_content("datalist_file"))
    items = [item for split in ("training", "validation", "test") for item in datalist[split]]
    assert len(items) == len(masks)
    for item in items:
        decoded = np.asarray(Image.open(item["lesion_mask"]))
        assert np.array_equal(decoded, masks[item["study_id"]]), item["study_id"]
        assert item["findings"][0]["presence"] == ("present" if decoded.any() else "absent")
    assert any(not masks[item["study_id"]].any() for item in items) and any(masks[i].any() for i in masks)
    patients = {split: {item["patient_id"] for item in datalist[split]} for split in ("training", "validation", "test")}
    assert not (patients["training"] & patients["validation"] or patients["training"] & patients["test"])


def test_training_through_the_cli_writes_the_model_and_scores_every_test_image(siim_root, tmp_path):
    root, masks = siim_root
    result = run_bundle(tmp_path, root, "training", "--encoder_weights", "random", configs=(TRAIN, SIIM, TINY))
    assert result.returncode == 0, describe(result)
    assert (tmp_path / "models/segmentation_pneumothorax.pt").is_file()
    assert [p.name for p in (tmp_path / "models/segmentation_siim_pneumothorax").iterdir()]
    report = json.loads((tmp_path / "eval/segmentation_siim_pneumothorax_test.json").read_text())
    datalist = load_datalist(tmp_path / "eval/siim_pneumothorax_datalist.json")
    assert report["test"]["items"] == len(datalist["test"]) > 0
    assert 0.0 <= report["test"]["test_mean_dice"] <= 1.0
    # images without pneumothorax are scored too (1 for silence, 0 for a false alarm), never left out as NaN
    negatives = {str(Path(item["image"])) for item in datalist["test"] if not masks[item["study_id"]].any()}
    scored = {row["image"]: row["test_mean_dice"] for row in report["test"]["per_image"]}
    assert negatives and all(scored[image] in (0.0, 1.0) for image in negatives)
