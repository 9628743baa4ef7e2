"""MONAI Label serving the bundle's segmentation network (bundle/apps/monailabel) through its REST API.

A real MONAI Label server, in its own environment (``scripts/setup_monailabel.sh``; the first
build takes minutes), runs on 127.0.0.1 over a bundle folder of the test's own: the repository's
configs and metadata, and a tiny lung model (the ViT of tests/configs/tiny_segmentation.json)
trained for the test through the bundle CLI on 64-pixel SynthCXR. A real radiograph of the
COVID-19 image collection is uploaded and segmented, real lung masks are saved as labels and
the server trains on them.
"""

import copy
import hashlib
import io
import shutil
import time
from pathlib import Path

import httpx2
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from bundle_cli import REPO, describe, make_synthcxr, run_bundle
from monailabel_server import running_monailabel_server

TRAIN = "configs/train_segmentation.json"
TINY = "tests/configs/tiny_segmentation.json"
MODEL = "segmentation_lungs"
# portrait (1398 x 1703 pixels), so that a transposed label map cannot pass; lungs cover 19 % of it
PORTRAIT = "16708_1_1"
SECOND = "16674_1_1"


def lung_mask(realdata: Path, stem: str) -> np.ndarray:
    """The collection's lungVAE mask of ``stem`` as booleans [H, W]."""
    return np.asarray(Image.open(realdata / f"covid-chestxray-dataset/masks/lungVAE/{stem}_mask.png").convert("L")) > 127


@pytest.fixture(scope="module")
def bundle_root(tmp_path_factory) -> Path:
    """A bundle folder with the repository's configs and metadata, and a tiny lung model trained on SynthCXR."""
    root = tmp_path_factory.mktemp("bundle")
    shutil.copytree(REPO / "configs", root / "configs")
    shutil.copy(REPO / "metadata.json", root / "metadata.json")
    synthcxr = make_synthcxr(tmp_path_factory.mktemp("synthcxr"), n=48)
    trained = run_bundle(root, synthcxr, "--encoder_weights", "random", "--max_epochs", "6", "--track_mlflow", "false",
                         configs=(TRAIN, TINY))
    assert trained.returncode == 0 and (root / "models/segmentation.pt").is_file(), describe(trained)
    return root


@pytest.fixture(scope="module")
def server(bundle_root, tmp_path_factory):
    with running_monailabel_server(bundle_root, tmp_path_factory.mktemp("studies"), tmp_path_factory.mktemp("logs"),
                                   configs=[str(REPO / TINY)]) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx2.Client(base_url=server.base_url, trust_env=False, timeout=300.0) as session:
        yield session


def upload(client: httpx2.Client, realdata: Path, stem: str) -> None:
    path = realdata / f"covid-chestxray-dataset/images/{stem}.jpg"
    reply = client.put("/datastore/image", params={"image": stem}, files={"file": (path.name, path.read_bytes())},
                       data={"params": "{}"})
    assert reply.status_code == 200, reply.text


def segment(client: httpx2.Client, server, stem: str) -> np.ndarray:
    reply = client.post(f"/infer/{MODEL}", params={"image": stem, "output": "image"}, data={"params": "{}"})
    assert reply.status_code == 200, f"{reply.text}\n{server.log_tail()}"
    assert reply.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(reply.content)))


def test_the_app_offers_one_2d_lung_model_and_its_trainer(client):
    info = client.get("/info/").json()
    model = info["models"][MODEL]
    assert model["type"] == "segmentation" and model["dimension"] == 2
    assert model["labels"] == {"lungs": 1}
    assert model["config"]["model_filename"] == ["segmentation.pt"]  # never the pre-training checkpoint
    assert MODEL in info["trainers"]


def test_inference_on_an_uploaded_radiograph_overlaps_its_lungs(client, server, realdata):
    upload(client, realdata, PORTRAIT)
    mask = segment(client, server, PORTRAIT)
    lungs = lung_mask(realdata, PORTRAIT)
    assert mask.shape == lungs.shape == (1703, 1398)
    assert set(np.unique(mask)) <= {0, 1}
    predicted = mask > 0
    overlap = (predicted & lungs).sum()
    dice = 2 * overlap / (predicted.sum() + lungs.sum())
    precision = overlap / max(predicted.sum(), 1)
    # A mask of the whole image scores Dice 2f / (1 + f) = 0.31 here (f = 0.19, the lungs' share), and a
    # central blob about as much; 0.5 takes a mask on the lungs. The tiny model scored 0.75 (0.53 to 0.88
    # over the collection's 50 lungVAE masks), trained only on synthetic images.
    assert dice > 0.5, f"Dice {dice:.3f} with the lung mask"
    assert precision > 2 * lungs.mean(), f"{precision:.2f} of the mask is lung, {lungs.mean():.2f} of the image"


def test_training_on_saved_labels_replaces_the_served_model(client, server, bundle_root, realdata):
    for stem in (PORTRAIT, SECOND):
        upload(client, realdata, stem)
        label = io.BytesIO()
        Image.fromarray(lung_mask(realdata, stem).astype(np.uint8)).save(label, format="PNG")  # 0/1, as clients save
        reply = client.put("/datastore/label", params={"image": stem, "tag": "final"},
                           files={"label": (f"{stem}.png", label.getvalue())}, data={"params": "{}"})
        assert reply.status_code == 200, reply.text
    model_file = bundle_root / "models/segmentation.pt"
    before = hashlib.sha256(model_file.read_bytes()).hexdigest()
    command_line_run = {path: path.read_bytes() for path in (bundle_root / f"models/{MODEL}").iterdir()}

    reply = client.post(f"/train/{MODEL}", json={"max_epochs": 1, "val_split": 0.5})
    assert reply.status_code == 200, reply.text
    deadline = time.monotonic() + 600
    while (task := client.get("/train/").json())["status"] in ("SUBMITTED", "RUNNING") and time.monotonic() < deadline:
        time.sleep(2)
    details = "\n".join(task.get("details", []))
    assert task["status"] == "DONE", f"{task}\n{server.log_tail()}"
    assert f"Restored all variables from {model_file}" in details  # fine-tuned from the served model
    assert "val_mean_dice" in details
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() != before, "the best model was not saved"
    assert (bundle_root / f"models/{MODEL}_monailabel").is_dir()
    assert {path: path.read_bytes() for path in (bundle_root / f"models/{MODEL}").iterdir()} == command_line_run, \
        "the command-line run's checkpoints (which the fixture's training wrote) were touched"
    assert segment(client, server, PORTRAIT).shape == (1703, 1398)  # the new model serves


def test_a_copied_segmentation_network_reads_its_own_features(monkeypatch):
    """MONAI Label deep-copies the network for each device; the copy's hooks used to fill the original's
    feature store, so the copy failed with KeyError: 'transformer.resblocks.0'."""
    monkeypatch.chdir(REPO)
    parser = ConfigParser()
    parser.read_config([TRAIN, TINY])
    parser["encoder_weights"] = "random"
    network = parser.get_parsed_content("network_def").eval()
    image = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(copy.deepcopy(network)(image), network(image))
