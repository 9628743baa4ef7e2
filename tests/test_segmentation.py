"""The segmentation network on the vision tower, its configs, and inference through the bundle CLI.

Networks are built from the configs as a user's run builds them; the CLI tests train a tiny
ViT tower on a tiny generated SynthCXR set and segment real files from ../shared/realdata.
"""

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.bundle import ConfigParser
from monai.metrics import DiceMetric
from PIL import Image

from bundle.engines import UserInputError
from bundle.engines.segmentation import image_files
from bundle.networks import MedFILIP
from bundle.transforms.segmentation import label_map, output_stem
from bundle_cli import REPO, bundle_env, describe, make_synthcxr, run_bundle

TRAIN = "configs/train_segmentation.json"
INFERENCE = "configs/inference_segmentation.json"
TINY = "tests/configs/tiny_segmentation.json"
CNN_SIZES = [(64, 64), (50, 70), (33, 97), (128, 96)]


@pytest.fixture(autouse=True)
def at_bundle_root(monkeypatch):
    monkeypatch.chdir(REPO)  # the configs' macros name files relative to the bundle root, as every command runs


def parse(*files: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(REPO / f) for f in files])
    parser.read_meta(str(REPO / "metadata.json"))
    parser.update({"encoder_weights": "random", **overrides})
    return parser


def tiny_pretraining_checkpoint(path: Path) -> MedFILIP:
    """What a pre-training run with the tiny tower writes as models/model.pt: the MedFILIP state dict."""
    torch.manual_seed(7)
    network = MedFILIP(parse(TRAIN, TINY).get_parsed_content("clip_def"), itm_head=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return network


@pytest.mark.parametrize("configs", [(TRAIN,), (TRAIN, TINY)], ids=["resnet10t", "tiny_vit"])
def test_logits_have_the_input_size_for_any_size(configs):
    parser = parse(*configs)
    network = parser.get_parsed_content("network_def").eval()
    with torch.no_grad():
        for height, width in CNN_SIZES:
            logits = network(torch.rand(2, 1, height, width))
            assert logits.shape == (2, 1, height, width) and logits.dtype == torch.float32


def test_several_classes_give_one_logit_map_each():
    network = parse(TRAIN, class_names=["right_lung", "left_lung", "heart"]).get_parsed_content("network_def")
    with torch.no_grad():
        assert network.eval()(torch.rand(1, 1, 45, 61)).shape == (1, 3, 45, 61)


def test_encoder_starts_from_the_pretraining_checkpoint(tmp_path):
    pretrained = tiny_pretraining_checkpoint(tmp_path / "models/model.pt").clip.visual.state_dict()
    parser = parse(TRAIN, TINY, ckpt_dir=str(tmp_path / "models"))
    parser["encoder_weights"] = "$@ckpt_dir + '/model.pt'"  # the config's default
    loaded = parser.get_parsed_content("network_def").encoder.visual.state_dict()
    assert loaded.keys() == pretrained.keys()
    assert all(torch.equal(loaded[key], pretrained[key]) for key in pretrained)
    random = parse(TRAIN, TINY).get_parsed_content("network_def").encoder.visual.state_dict()
    assert not torch.equal(random["conv1.weight"], pretrained["conv1.weight"])


def test_encoder_reads_a_periodic_checkpoint_and_a_segmentation_network(tmp_path):
    pretrained = tiny_pretraining_checkpoint(tmp_path / "model.pt")
    torch.save({"model": pretrained.state_dict(), "optimizer": {}}, tmp_path / "checkpoint_epoch=3.pt")
    from_periodic = parse(TRAIN, TINY, encoder_weights=str(tmp_path / "checkpoint_epoch=3.pt"))
    network = from_periodic.get_parsed_content("network_def")
    torch.save(network.state_dict(), tmp_path / "segmentation.pt")
    reseeded = parse(TRAIN, TINY, encoder_weights=str(tmp_path / "segmentation.pt")).get_parsed_content("network_def")
    expected = pretrained.clip.visual.state_dict()["conv1.weight"]
    assert torch.equal(network.encoder.visual.conv1.weight, expected)
    assert torch.equal(reseeded.encoder.visual.conv1.weight, expected)


def test_encoder_weights_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(RuntimeError) as caught:  # MONAI wraps what a component raises
        parse(TRAIN, TINY, encoder_weights=str(tmp_path / "model.pt")).get_parsed_content("network_def")
    assert re.search(r"model\.pt': the file does not exist.*--encoder_weights random", str(caught.value.__cause__))
    tiny_pretraining_checkpoint(tmp_path / "model.pt")
    with pytest.raises(RuntimeError) as caught:  # MONAI wraps what a component raises
        parse(TRAIN, encoder_weights=str(tmp_path / "model.pt")).get_parsed_content("network_def")
    assert isinstance(caught.value.__cause__, UserInputError)
    assert "does not fit the configured network" in str(caught.value.__cause__)
    assert "after configs/train_segmentation.json" in str(caught.value.__cause__)


def one_training_step(network: torch.nn.Module) -> None:
    parser = parse(TRAIN)
    loss = parser.get_parsed_content("loss")
    network.train()
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=0.01)
    optimizer.zero_grad()
    loss(network(torch.rand(2, 1, 64, 64)), (torch.rand(2, 1, 64, 64) > 0.5).float()).backward()
    optimizer.step()


def test_frozen_encoder_stays_unchanged_after_a_training_step():
    network = parse(TRAIN, freeze_encoder=True).get_parsed_content("network_def")
    before = {k: v.clone() for k, v in network.encoder.state_dict().items()}
    decoder_before = network.head[0].weight.clone()
    one_training_step(network)
    after = network.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights or batch-norm statistics moved"
    assert not torch.equal(decoder_before, network.head[0].weight), "the decoder did not train"
    trainable = parse(TRAIN).get_parsed_content("network_def")
    first = trainable.encoder.visual.trunk.layer1[0].conv1.weight.clone()
    one_training_step(trainable)
    assert not torch.equal(first, trainable.encoder.visual.trunk.layer1[0].conv1.weight)


def test_validation_dice_on_hand_made_masks():
    """The config's post-processing (sigmoid, threshold) and MONAI's Dice on masks worked out by hand."""
    postprocessing = parse(TRAIN).get_parsed_content("validate#postprocessing")
    logits = torch.full((1, 4, 4), -5.0)
    logits[0, 0, :] = 5.0  # the prediction: the top row, 4 pixels
    label = torch.zeros(1, 4, 4)
    label[0, :2, :2] = 1  # the truth: the top-left 2 x 2 square, 2 of them in the top row
    pred = postprocessing({"pred": logits})["pred"]
    assert pred.sum() == 4
    metric = DiceMetric(include_background=True)
    metric(y_pred=[pred], y=[label])
    assert metric.aggregate().item() == pytest.approx(2 * 2 / (4 + 4))


def test_mask_encoding_and_output_names():
    probabilities = torch.tensor([[[0.9, 0.2], [0.5, 0.1]]])
    assert label_map(probabilities).tolist() == [[255, 0], [255, 0]]
    two_classes = torch.stack([probabilities[0], torch.tensor([[0.95, 0.6], [0.1, 0.3]])])
    assert label_map(two_classes).tolist() == [[2, 2], [1, 0]]
    assert output_stem("/d/x.nii.gz") == "x" and output_stem("a/b.PNG") == "b"
    assert output_stem("1.2.840.113619.2.55.3.12345") == "1.2.840.113619.2.55.3.12345"


def test_image_folder_problems_are_user_errors(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        image_files(tmp_path / "missing")
    with pytest.raises(UserInputError, match="holds no file"):
        image_files(tmp_path)
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "a.dcm").write_bytes(b"")
    with pytest.raises(UserInputError, match="a.dcm and a.png would write the same output files"):
        image_files(tmp_path)


def test_splits_are_patient_disjoint_and_lesions_read_lesion_masks(synthcxr):
    parser = parse(TRAIN, TINY, "configs/seg_lesions.json", dataset_dir=str(synthcxr))
    datalist = parser.get_parsed_content("datalist")
    patients = {split: {item["patient_id"] for item in datalist[split]} for split in ("training", "validation")}
    assert patients["training"] and patients["validation"] and not patients["training"] & patients["validation"]
    item = next(i for i in datalist["validation"] if np.asarray(Image.open(i["lesion_mask"])).any())
    sample = parser.get_parsed_content("validate#preprocessing")(item)
    lesions = (np.asarray(Image.open(item["lesion_mask"])) > 0).astype(np.float32)  # 64 px: no resize
    assert np.array_equal(sample["label"][0].numpy(), lesions)
    assert parser["seg_model_file"] == "segmentation_lesions.pt"


def test_metadata_describes_the_segmentation_network_and_keeps_the_clip_pair():
    parser = parse(TRAIN)
    data_format = parser["_meta_#network_data_format"]
    assert data_format["inputs"]["image"]["spatial_shape"] == [parser.get_parsed_content("image_size")] * 2
    assert data_format["outputs"]["pred"]["num_channels"] == len(parser["class_names"])
    assert list(data_format["outputs"]["pred"]["channel_def"].values()) == parser["class_names"]
    assert set(parser["_meta_#clip_data_format#inputs"]) == {"image", "text"}


# ---- through the bundle CLI --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthcxr(tmp_path_factory) -> Path:
    return make_synthcxr(tmp_path_factory.mktemp("synthcxr"), n=24)


def seg_cli(workdir: Path, data_dir: Path, *args: str, configs=(TRAIN, TINY)) -> subprocess.CompletedProcess:
    result = run_bundle(workdir, data_dir, *args, configs=configs)
    assert result.returncode == 0, describe(result)
    return result


@pytest.fixture(scope="module")
def trained(synthcxr, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("seg")
    tiny_pretraining_checkpoint(workdir / "models/model.pt")  # the default encoder_weights
    return workdir, seg_cli(workdir, synthcxr)


def test_training_validates_and_keeps_the_best_model(trained):
    workdir, result = trained
    log = result.stdout + result.stderr
    assert (workdir / "models/segmentation.pt").is_file()
    assert [p.name for p in (workdir / "models/segmentation_lungs").iterdir()] == ["checkpoint_checkpoint_epoch=2.pt"]
    assert "val_mean_dice" in log and "val_hd95" in log and "Epoch[2]" in log
    db = sqlite3.connect(workdir / "eval/mlruns.db")
    assert {"train_epoch_loss", "val_mean_dice", "val_hd95"} <= {row[0] for row in db.execute("select key from metrics")}
    params = dict(db.execute("select key, value from params"))
    assert params["task"] == "lungs" and params["encoder_weights"].endswith("models/model.pt")


def test_training_resumes_from_its_own_checkpoint(trained, synthcxr):
    workdir, _ = trained
    result = seg_cli(workdir, synthcxr, "--max_epochs", "3", "--track_mlflow", "false")
    log = result.stdout + result.stderr
    assert "Epoch[3]" in log and "Epoch[1]" not in log, "training restarted instead of resuming"
    assert (workdir / "models/model.pt").is_file(), "the pre-training checkpoint was touched"


def test_export_and_shape_check_through_monai(trained, tmp_path):
    workdir, _ = trained
    configs = f"['{INFERENCE}','{TINY}']"
    verify = subprocess.run([sys.executable, "-m", "monai.bundle", "verify_net_in_out", "network_def", "--meta_file",
                             "metadata.json", "--config_file", configs, "--device", "cpu"],
                            cwd=REPO, env=bundle_env(), capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0 and "verified with no error" in verify.stdout + verify.stderr, describe(verify)
    exported = tmp_path / "segmentation.ts"
    export = subprocess.run([sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath",
                             str(exported), "--ckpt_file", str(workdir / "models/segmentation.pt"), "--meta_file",
                             "metadata.json", "--config_file", configs, "--use_trace", "True"],
                            cwd=REPO, env=bundle_env(), capture_output=True, text=True, timeout=300)
    assert export.returncode == 0 and exported.is_file(), describe(export)
    extra = {"metadata.json": "", "inference_segmentation.json": ""}
    scripted = torch.jit.load(str(exported), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["network_data_format"]["outputs"]["pred"]["format"] == "segmentation"
    network = parse(INFERENCE, TINY).get_parsed_content("network_def").eval()
    network.load_state_dict(torch.load(workdir / "models/segmentation.pt", weights_only=True))
    image = torch.rand(1, 1, 128, 128)
    with torch.no_grad():
        assert torch.allclose(scripted(image), network(image), atol=1e-5)


def image_size(path: Path) -> tuple[int, int]:
    if path.suffix == ".dcm":
        header = pydicom.dcmread(path, stop_before_pixels=True)
        return int(header.Rows), int(header.Columns)
    if path.name.endswith(".nii.gz"):
        return tuple(nib.load(path).shape[:2])
    with Image.open(path) as image:
        return image.height, image.width


@pytest.fixture(scope="module")
def segmented(trained, synthcxr, realdata, tmp_path_factory):
    """Inference on every real image, a 16-bit PNG, a NIfTI file, a SynthCXR image and one broken file."""
    workdir, _ = trained
    images = tmp_path_factory.mktemp("images")
    real = [p for p in realdata.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm")
            and "masks" not in p.parts]
    for path in real:
        (images / path.name).symlink_to(path)
    ramp = np.linspace(0, 4095, 48 * 40, dtype=np.uint16).reshape(48, 40)
    Image.fromarray(ramp).save(images / "sixteen_bit.png")
    nib.save(nib.Nifti1Image(ramp.astype(np.float32), np.eye(4)), images / "volume_slice.nii.gz")
    (images / "synth.png").symlink_to(synthcxr / json.loads((synthcxr / "datalist.json").read_text())["test"][0]["image"])
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = workdir / "segmented"
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", f"['{INFERENCE}','{TINY}']", "--meta_file",
         "metadata.json", "--logging_file", "configs/logging.conf", "--dataset_dir", str(images), "--output_dir",
         str(out), "--ckpt_path", str(workdir / "models/segmentation.pt")],
        cwd=REPO, env=bundle_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, describe(result)
    return images, out, result, real


def test_inference_writes_a_mask_and_an_overlay_per_real_image(segmented):
    images, out, _, real = segmented
    assert len(real) >= 100 and any(p.suffix == ".dcm" and "MONOCHROME1" in p.name for p in real)
    for path in sorted(images.iterdir()):
        if path.name == "broken.jpg":
            continue
        stem = output_stem(path)
        with Image.open(out / f"{stem}_seg.png") as mask:
            assert mask.mode == "L" and (mask.height, mask.width) == image_size(path.resolve()), path.name
            assert set(np.unique(np.asarray(mask))) <= {0, 255}
        with Image.open(out / f"{stem}_overlay.png") as overlay:
            assert overlay.mode == "RGB" and max(overlay.size) <= max(1024, *image_size(path.resolve()))


def test_inference_names_and_counts_the_unreadable_file(segmented):
    images, out, result, _ = segmented
    log = result.stdout + result.stderr
    total = len(list(images.iterdir()))
    assert f"segmented {total - 1} of {total} file(s); 1 could not be read" in log
    assert "broken.jpg: it is not a readable JPG file" in log
    assert not list(out.glob("broken*"))
    assert len(list(out.glob("*_seg.png"))) == total - 1


def test_inference_without_a_checkpoint_says_how_to_get_one(synthcxr, tmp_path):
    result = run_bundle(tmp_path, synthcxr / "images", configs=(INFERENCE, TINY))
    assert result.returncode == 1
    assert "segmentation.pt" in result.stderr and "does not exist" in result.stderr
    message = next(line for line in result.stderr.splitlines() if "cannot load checkpoint" in line)
    assert "Fix: pass --ckpt_path" in message and "--ckpt_dir" not in message  # inference's option, not evaluation's
