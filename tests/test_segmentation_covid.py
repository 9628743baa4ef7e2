"""Lungs on the COVID-19 image data collection (configs/lung_covid.json) and the encoder comparison script.

The collection is the real one in ../shared/realdata (read-only): the config prepares its own
datalist into the run's output folder. The CLI runs use the tiny ViT tower at 64 px for one epoch.
"""

import json
import subprocess
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from bundle.engines import UserInputError
from bundle.engines.segmentation_test import score_test_split
from bundle_cli import REPO, describe, make_synthcxr, run_bundle, run_script
from test_segmentation import TINY, TRAIN, at_bundle_root, parse, tiny_pretraining_checkpoint  # noqa: F401 (autouse)

COVID = "configs/lung_covid.json"
MASK_FOLDERS = {"v7labs": "masks/v7labs_lungs", "lungvae": "masks/lungVAE"}


@pytest.fixture(scope="module")
def collection(realdata) -> Path:
    return realdata / "covid-chestxray-dataset"


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_override_parses_into_a_lung_run_from_a_random_encoder(collection, tmp_path):
    parser = ConfigParser()  # not the helper `parse`, which sets encoder_weights itself
    parser.read_config([str(REPO / TRAIN), str(REPO / COVID)])
    parser.update({"dataset_dir": str(collection), "output_dir": str(tmp_path)})
    assert parser.get_parsed_content("encoder_weights") == "random"
    assert parser["task"] == "covid_lungs" and parser["mask_key"] == "lung_mask" and parser["lung_masks"] == "v7labs"
    assert parser["seg_model_file"] == "segmentation.pt" and parser["image_size"] == 128
    network = parser.get_parsed_content("network_def").eval()
    with torch.no_grad():
        assert network(torch.rand(1, 1, 128, 128)).shape == (1, 1, 128, 128)


@pytest.mark.parametrize("source", ["v7labs", "lungvae"])
def test_prepared_datalist_is_patient_disjoint_and_uses_the_chosen_masks(collection, tmp_path, source):
    before = listing(collection)
    parser = parse(TRAIN, COVID, dataset_dir=str(collection), output_dir=str(tmp_path / "eval"), lung_masks=source)
    datalist_file = Path(parser.get_parsed_content("datalist_file"))
    assert datalist_file.parent == tmp_path / "eval" and listing(collection) == before, "wrote into the collection"
    datalist = json.loads(datalist_file.read_text())
    patients = {split: {item["patient_id"] for item in datalist[split]} for split in ("training", "validation", "test")}
    assert all(patients.values())
    assert not (patients["training"] & patients["validation"] or patients["training"] & patients["test"]
                or patients["validation"] & patients["test"])
    items = [item for split in ("training", "validation", "test") for item in datalist[split]]
    assert all(Path(item["lung_mask"]).is_file() for item in items)
    assert {str(Path(item["lung_mask"]).parent.relative_to(collection.resolve())) for item in items} == {MASK_FOLDERS[source]}
    summary = json.loads(datalist_file.with_name(datalist_file.stem + ".summary.json").read_text())
    assert any("kept the images with a lung_mask" in note for note in summary["notes"])
    if source == "v7labs":  # the shared kit's 62 V7 masks, split by the hash of the patient id
        assert {split: len(datalist[split]) for split in patients} == {"training": 46, "validation": 9, "test": 7}


def test_a_folder_that_is_not_the_collection_names_itself_and_the_fix(tmp_path):
    parser = parse(TRAIN, COVID, dataset_dir=str(tmp_path), output_dir=str(tmp_path / "eval"))
    with pytest.raises(RuntimeError) as caught:  # MONAI wraps what an expression raises
        parser.get_parsed_content("datalist_file")
    error = caught.value.__cause__
    assert isinstance(error, UserInputError)
    assert str(tmp_path) in str(error) and "metadata.csv" in str(error) and "Fix: pass --dataset_dir" in str(error)


def test_no_test_split_writes_no_score(tmp_path):
    assert score_test_split(evaluator=None, items=[], output_file=tmp_path / "report.json") is None
    assert not (tmp_path / "report.json").exists()


def test_one_epoch_on_the_real_collection_through_the_cli(collection, tmp_path):
    result = run_bundle(tmp_path, collection, "training", "--max_epochs", "1", "--track_mlflow", "false",
                        configs=(TRAIN, COVID, TINY), timeout=600)
    assert result.returncode == 0, describe(result)
    assert (tmp_path / "models/segmentation.pt").is_file()
    datalist = json.loads((tmp_path / "eval/covid_lungs_datalist.json").read_text())
    report = json.loads((tmp_path / "eval/segmentation_covid_lungs_test.json").read_text())
    test = report["test"]
    assert test["items"] == len(datalist["test"]) == len(test["per_image"])
    assert 0.0 <= test["min_test_mean_dice"] <= test["test_mean_dice"] <= 1.0
    assert [entry["image"] for entry in test["per_image"]] == [item["image"] for item in datalist["test"]]
    assert report["training"]["epochs"] == 1 and 0.0 <= report["validation"]["best_val_mean_dice"] <= 1.0


# ---- scripts/compare_segmentation.py -----------------------------------------------------------------------------

def compare(dataset: Path, output: Path, checkpoint: Path) -> subprocess.CompletedProcess:
    result = run_script("scripts/compare_segmentation.py", "--dataset_dir", str(dataset), "--encoder",
                        f"medfilip={checkpoint}", "--tasks", "lungs", "lesions", "--output", str(output),
                        "--extra_config", TINY, "--override", "max_epochs=1", "--override", "track_mlflow=false",
                        "--docs_dir", str(output / "docs"), timeout=900)
    assert result.returncode == 0, describe(result)
    return result


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    data = make_synthcxr(tmp_path_factory.mktemp("synthcxr"), 24)
    output = tmp_path_factory.mktemp("compare_segmentation")
    checkpoint = output / "pretraining/model.pt"
    tiny_pretraining_checkpoint(checkpoint)
    return output, compare(data, output, checkpoint)


def test_comparison_trains_each_encoder_per_task_and_tabulates_dice(compared):
    output, _ = compared
    rows = json.loads((output / "results.json").read_text())
    assert [(r["task"], r["encoder"]) for r in rows] == [("lungs", "medfilip"), ("lungs", "random"),
                                                          ("lesions", "medfilip"), ("lesions", "random")]
    for row in rows:
        assert row["epochs"] == 1 and Path(row["metrics_file"]).is_file()
        assert row["task"] == "lesions" or 0.0 <= row["test_dice"] <= 1.0, row
        command = json.loads((Path(row["metrics_file"]).parents[1] / "run.json").read_text())["train_command"]
        assert f"--encoder_weights {row['encoder_weights'] or 'random'}" in command
    trained = {row["encoder"]: torch.load(Path(row["metrics_file"]).parents[1] / "models/segmentation.pt",
                                          weights_only=True) for row in rows if row["task"] == "lungs"}
    conv = "encoder.visual.conv1.weight"  # same seed and data: only the starting weights tell the runs apart
    assert not torch.equal(trained["medfilip"][conv], trained["random"][conv])
    table = (output / "docs/segmentation_comparison.md").read_text()
    assert "do not edit it by hand" in table and "| lungs test Dice |" in table and "| lesions worst image |" in table
    assert "| medfilip |" in table and "| random |" in table and "scripts/compare_segmentation.py" in table


def test_comparison_skips_finished_runs(compared, tmp_path):
    output, _ = compared
    checkpoint = output / "pretraining/model.pt"
    dataset = Path(json.loads((output / "runs/lungs_random_seed0/run.json").read_text())["dataset_dir"])
    again = compare(dataset, output, checkpoint)
    assert again.stdout.count("skipped") == 4 and "trained" not in again.stdout
