"""Training never succeeds at nothing, and its failures end with what is wrong and how to fix it.

Each case runs the real CLI (``python -m monai.bundle run``) on generated SynthCXR and checks
what a user sees: the exit status, the last lines of stderr, the files in ``ckpt_dir`` and
the MLflow store. The bundle pieces behind them are checked directly where that is quicker.
"""

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.engines import SupervisedTrainer

from bundle.engines import SkipUnreadableCompose, UnreadableImage, UserInputError, collate_readable, require_iterations
from bundle.engines.errors import user_error_message
from bundle.transforms import ChestXRayReadError, LoadChestXRayd
from bundle_cli import EVALUATE_CONFIGS, describe, last_lines, make_synthcxr, run_bundle

CHECKPOINT = "checkpoint_checkpoint_epoch=1.pt"


@pytest.fixture(scope="module")
def synthcxr(tmp_path_factory) -> Path:
    return make_synthcxr(tmp_path_factory.mktemp("synthcxr"), n=40)  # 26 training, 5 validation, 9 test items


@pytest.fixture(scope="module")
def finished_run(synthcxr, tmp_path_factory) -> Path:
    """``ckpt_dir`` of a run that trained its one epoch."""
    workdir = tmp_path_factory.mktemp("finished")
    result = run_bundle(workdir, synthcxr, "training", "--max_epochs", "1", "--track_mlflow", "false")
    assert result.returncode == 0, describe(result)
    return workdir / "models"


@pytest.fixture
def leftover(finished_run, tmp_path) -> Path:
    """A work folder whose ``models/`` holds the finished run's checkpoints."""
    shutil.copytree(finished_run, tmp_path / "models")
    return tmp_path


@pytest.fixture(scope="module")
def corrupt_synthcxr(synthcxr, tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the data whose first training and first test images are truncated, and the training one."""
    data = tmp_path_factory.mktemp("corrupt")
    shutil.copytree(synthcxr, data, dirs_exist_ok=True)
    datalist = json.loads((data / "datalist.json").read_text())
    images = [data / datalist[split][0]["image"] for split in ("training", "test")]
    for image in images:
        image.write_bytes(image.read_bytes()[:200])
    return data, images[0]


def assert_fails_with(result: subprocess.CompletedProcess, *phrases: str) -> str:
    """The run failed with exit code 1 and its last stderr lines say each phrase."""
    ending = last_lines(result.stderr)
    assert result.returncode == 1, describe(result)
    for phrase in phrases:
        assert phrase in ending, f"{phrase!r} is not in the last lines of stderr:\n{ending}"
    return ending


# 1. training never succeeds at nothing

def test_fewer_items_than_a_batch_stop_with_the_fix(synthcxr, tmp_path):
    result = run_bundle(tmp_path, synthcxr, "training", "--max_train_items", "4", "--track_mlflow", "false")
    assert_fails_with(result, "UserInputError: the training split has 4 item(s) for batches of batch_size=8",
                      "drop_last", "Fix: pass --batch_size 4 or less")
    assert not list((tmp_path / "models").glob("*.pt"))


def test_max_epochs_below_one_stops_before_training():
    network = torch.nn.Linear(2, 1)
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=0, train_data_loader=DataLoader([0] * 4),
                                network=network, optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
                                loss_function=torch.nn.MSELoss())
    with pytest.raises(UserInputError, match="max_epochs is 0, so no epoch would run. Fix: pass --max_epochs 1"):
        require_iterations(trainer)


def test_rerunning_a_finished_run_stops_naming_the_checkpoint(leftover, synthcxr):
    model = (leftover / "models/model.pt").read_bytes()
    result = run_bundle(leftover, synthcxr, "training", "--max_epochs", "1", "--track_mlflow", "false")
    assert_fails_with(result, f"cannot resume from checkpoint '{leftover / 'models' / CHECKPOINT}'",
                      "it has trained 1 epochs and max_epochs is 1", "--max_epochs above 1", "--resume false",
                      "a fresh --ckpt_dir", "--finished_run keep")
    assert (leftover / "models/model.pt").read_bytes() == model


def test_a_finished_run_is_kept_as_it_is_when_asked(leftover, synthcxr):
    """What ``scripts/demo.sh`` does when it is run again after a complete run."""
    files = {path.name: path.read_bytes() for path in (leftover / "models").iterdir()}
    result = run_bundle(leftover, synthcxr, "training", "--max_epochs", "1", "--track_mlflow", "false",
                        "--finished_run", "keep")
    assert result.returncode == 0, describe(result)
    assert "nothing is left to train, the run ends as it is" in result.stdout + result.stderr
    assert {path.name: path.read_bytes() for path in (leftover / "models").iterdir()} == files


def test_a_truncated_checkpoint_is_named_with_the_fix(leftover, synthcxr):
    checkpoint = leftover / "models" / CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    result = run_bundle(leftover, synthcxr, "training", "--max_epochs", "2", "--track_mlflow", "false")
    assert_fails_with(result, f"CheckpointError: cannot resume from checkpoint '{checkpoint}'", "it is truncated",
                      "Fix: delete it", "--resume false")


def test_a_checkpoint_of_another_network_is_named_with_the_fix(leftover, synthcxr):
    result = run_bundle(leftover, synthcxr, "training", "--max_epochs", "2", "--embed_dim", "16",
                        "--track_mlflow", "false")
    assert_fails_with(result, f"'{leftover / 'models' / CHECKPOINT}'", "does not fit", "size mismatch",
                      "--resume false")


def test_a_checkpoint_of_another_variant_is_not_continued(leftover, synthcxr):
    result = run_bundle(leftover, synthcxr, "training", "--max_epochs", "2", "--variant", "no_iki", "--iki", "false",
                        "--track_mlflow", "false")
    assert_fails_with(result, f"'{leftover / 'models' / CHECKPOINT}'", "--resume false",
                      "it belongs to another run (variant: 'medfilip' in the checkpoint, 'no_iki' now)")


def test_resume_false_trains_afresh_and_replaces_the_old_checkpoints(leftover, synthcxr):
    stale = leftover / "models/checkpoint_checkpoint_epoch=7.pt"  # the newest by step, as a longer earlier run leaves
    shutil.copy(leftover / "models" / CHECKPOINT, stale)
    result = run_bundle(leftover, synthcxr, "training", "--max_epochs", "1", "--resume", "false",
                        "--track_mlflow", "false")
    assert result.returncode == 0, describe(result)
    assert "Epoch[1] Complete" in result.stdout
    assert sorted(p.name for p in (leftover / "models").glob("checkpoint_*.pt")) == [CHECKPOINT]


def test_evaluating_without_a_trained_model_names_the_file(synthcxr, tmp_path):
    result = run_bundle(tmp_path, synthcxr, configs=EVALUATE_CONFIGS)
    assert_fails_with(result, f"cannot load checkpoint '{tmp_path / 'models/model.pt'}': the file does not exist",
                      "train one first")


# 2. unreadable images

def test_an_unreadable_image_names_the_file_and_the_switch(corrupt_synthcxr, tmp_path):
    data, image = corrupt_synthcxr
    result = run_bundle(tmp_path, data, "training", "--max_epochs", "1", "--track_mlflow", "false")
    assert_fails_with(result, f"ChestXRayReadError: cannot load chest X-ray file '{image}'", "--skip_unreadable_images")


def test_an_unreadable_image_read_in_a_loader_worker_names_the_file(corrupt_synthcxr, tmp_path):
    data, image = corrupt_synthcxr
    result = run_bundle(tmp_path, data, "training", "--max_epochs", "1", "--track_mlflow", "false",
                        "--cache_rate", "0", "--num_workers", "1")
    assert_fails_with(result, f"ChestXRayReadError: cannot load chest X-ray file '{image}'", "--skip_unreadable_images")


def test_skipping_unreadable_images_trains_and_counts_them(corrupt_synthcxr, tmp_path):
    data, image = corrupt_synthcxr
    # 24 items fill three batches of 8, so the broken one is in a trained batch in every epoch
    result = run_bundle(tmp_path, data, "training", "--max_epochs", "2", "--max_train_items", "24",
                        "--skip_unreadable_images", "true")
    assert result.returncode == 0, describe(result)
    assert result.stdout.count(f"skipped 1 unreadable image(s) (train_skipped_images):\n  {image}: ") == 2
    assert (tmp_path / "models/checkpoint_checkpoint_epoch=2.pt").is_file()
    db = sqlite3.connect(tmp_path / "eval/mlruns.db")
    counts = dict(db.execute("select step, value from metrics where key = 'train_skipped_images'"))
    assert counts == {1: 1.0, 2: 1.0}
    assert dict(db.execute("select key, value from params"))["skip_unreadable_images"] == "true"


def test_skipping_unreadable_images_read_in_loader_workers(corrupt_synthcxr, tmp_path):
    data, image = corrupt_synthcxr
    result = run_bundle(tmp_path, data, "training", "--max_epochs", "1", "--max_train_items", "24",
                        "--skip_unreadable_images", "true", "--cache_rate", "0", "--num_workers", "1",
                        "--track_mlflow", "false")
    assert result.returncode == 0, describe(result)
    assert f"skipped 1 unreadable image(s) (train_skipped_images):\n  {image}: " in result.stdout
    assert "train_skipped_images: 1.0000" in result.stdout


def test_evaluation_skips_unreadable_test_images_when_asked(corrupt_synthcxr, finished_run, tmp_path):
    data, _ = corrupt_synthcxr
    shutil.copytree(finished_run, tmp_path / "models")
    result = run_bundle(tmp_path, data, "--skip_unreadable_images", "true", configs=EVALUATE_CONFIGS)
    assert result.returncode == 0, describe(result)
    assert "skipped 1 unreadable image(s) (test_skipped_images)" in result.stdout
    test_items = len(json.loads((data / "datalist.json").read_text())["test"])
    assert json.loads((tmp_path / "eval/zero_shot_metrics.json").read_text())["n_test"] == test_items - 1


def test_skipping_works_with_and_without_a_cache(corrupt_synthcxr):
    data, image = corrupt_synthcxr
    items = [{"image": str(image)}, {"image": str(next(p for p in (data / "images").glob("*.png") if p != image))}]
    transform = SkipUnreadableCompose([LoadChestXRayd(keys="image")], skip_unreadable=True)
    for dataset in (Dataset(items, transform), CacheDataset(items, transform, progress=False)):
        marker, readable = dataset[0], dataset[1]
        assert isinstance(marker, UnreadableImage) and marker.filename == str(image)
        assert readable["image"].shape[0] == 1
        batch = collate_readable([marker, readable])
        assert batch["image"].shape[0] == 1 and batch["unreadable_images"] == [marker]


def test_a_batch_of_unreadable_images_stops_the_run():
    markers = [UnreadableImage(f"/data/{i}.png", "truncated") for i in range(2)]
    with pytest.raises(UserInputError, match=r"all 2 images of a batch are unreadable:\n  /data/0.png: truncated"):
        collate_readable(markers)


# 3. errors inside config expressions end with the cause

def test_a_missing_dataset_ends_with_the_datalist_error(tmp_path):
    result = run_bundle(tmp_path, tmp_path / "nowhere", "training", "--track_mlflow", "false")
    ending = assert_fails_with(result, f"DatalistError: datalist '{tmp_path}/nowhere/datalist.json' does not exist",
                               "make_demo_data.py")
    assert "Failed to evaluate" not in ending


@pytest.mark.parametrize("args, phrases", [
    (("--iki", "maybe"), ("UserInputError: iki must be an on/off value, got 'maybe'", "--iki true or --iki false")),
    (("--contrastive_form", "soft_infonc"), ("The cause: ValueError: form must be one of", "got 'soft_infonc'")),
], ids=["typo-in-a-switch", "typo-in-a-method-choice"])
def test_config_typos_end_with_what_is_wrong(synthcxr, tmp_path, args, phrases):
    result = run_bundle(tmp_path, synthcxr, "training", "--track_mlflow", "false", *args)
    ending = assert_fails_with(result, *phrases)
    assert "Failed to evaluate" not in ending and "Failed to instantiate" not in ending


@pytest.mark.parametrize("error", [UserInputError, ChestXRayReadError], ids=["one-argument", "three-arguments"])
def test_a_user_error_raised_in_a_loader_worker_is_found_in_its_text(error):
    def fail(items):
        if error is UserInputError:
            raise UserInputError("item 3 is broken. Fix: drop it")
        raise ChestXRayReadError("/data/3.png", "item 3 is broken", "drop it")

    with pytest.raises(Exception) as caught:  # torch re-raises it with the worker's traceback as its message
        next(iter(torch.utils.data.DataLoader([0], collate_fn=fail, num_workers=1)))
    assert "Original Traceback" in str(caught.value)
    expected = ("UserInputError: item 3 is broken. Fix: drop it" if error is UserInputError else
                "ChestXRayReadError: cannot load chest X-ray file '/data/3.png': item 3 is broken. Fix: drop it")
    assert user_error_message(caught.value) == expected
