"""Fine-tuning from the pre-trained vision tower: loading, modes, label fractions, the report, the CLI and the comparison.

The pieces are checked directly with tiny towers; the workflow runs through the real CLI
(``python -m monai.bundle run training`` with ``configs/finetune.json``) from a tiny MedFILIP
pre-training checkpoint trained by the end-to-end fixtures, on their generated SynthCXR set.
"""

import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle.engines import CheckpointError, UserInputError
from bundle.engines.label_fraction import label_fraction_subset, patient_of, positive_counts
from bundle.engines.pretrained import load_pretrained_tower
from bundle.metrics.finetune_report import finetune_report
from bundle.networks import ChestXRayCLIP, build_open_clip
from bundle.networks.classifier import ChestXRayClassifier, freezes_tower
from bundle.transforms import FindingsToLabelsd
from bundle_cli import REPO, TINY, bundle_env, describe, last_lines, run_bundle
from test_bundle_e2e import synthcxr, trained  # noqa: F401  (module fixtures: tiny SynthCXR, tiny pre-training run)

FINETUNE = ("configs/train.json", "configs/finetune.json", TINY)
TOWER_PREFIX = "clip.visual."


def tiny_vit_clip(width: int = 64, seed: int = 0):
    torch.manual_seed(seed)
    return build_open_clip(embed_dim=32, vision_cfg={"image_size": 32, "patch_size": 16, "width": width, "layers": 1,
                                                     "head_width": 32},
                           text_cfg={"context_length": 8, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1})


def resnet_tower():
    clip = build_open_clip(embed_dim=16, vision_cfg={"image_size": 32, "timm_model_name": "resnet10t",
                                                     "timm_model_pretrained": False, "timm_pool": "avg",
                                                     "timm_proj": "linear"},
                           text_cfg={"context_length": 8, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1})
    return clip.visual


def state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


@pytest.fixture
def pretraining_checkpoint(tmp_path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A ``model.pt`` as pre-training's best-model saver writes it (the dual encoder's plain state dict)."""
    network = ChestXRayCLIP(tiny_vit_clip(seed=1))
    path = tmp_path / "model.pt"
    torch.save(network.state_dict(), path)
    return path, network.state_dict()


# 1. loading the tower

def test_the_loaded_tower_holds_the_checkpoint_tensors_by_value(pretraining_checkpoint):
    path, saved = pretraining_checkpoint
    tower = tiny_vit_clip(seed=2).visual
    assert any(not torch.equal(v, saved[TOWER_PREFIX + k]) for k, v in tower.state_dict().items()), "same init"
    loaded = load_pretrained_tower(tower, str(path))
    assert loaded is tower
    for key, value in tower.state_dict().items():
        assert torch.equal(value, saved[TOWER_PREFIX + key]), key


def test_a_trainer_checkpoint_is_read_through_its_model_entry(pretraining_checkpoint, tmp_path):
    _, saved = pretraining_checkpoint
    path = tmp_path / "checkpoint_checkpoint_epoch=3.pt"
    torch.save({"model": saved, "trainer": {"epoch": 3}}, path)
    tower = load_pretrained_tower(tiny_vit_clip(seed=2).visual, path)
    assert torch.equal(tower.proj, saved[TOWER_PREFIX + "proj"])


def test_a_tower_of_another_size_names_the_file_and_the_fix(pretraining_checkpoint):
    path, _ = pretraining_checkpoint
    with pytest.raises(CheckpointError) as error:
        load_pretrained_tower(tiny_vit_clip(width=32).visual, path)
    message = str(error.value)
    assert f"cannot load the pretrained vision tower from '{path}'" in message
    assert "does not fit the configured network" in message and "of other shape (class_embedding (64,)" in message
    assert "Fix: layer the tower overrides that pre-trained the checkpoint" in message


@pytest.mark.parametrize("content, problem", [
    (None, "the file does not exist"),
    (b"not a checkpoint", "it cannot be read: it is truncated or not a checkpoint"),
    ({"weight": torch.zeros(2)}, "it holds no vision tower: no entry starts with 'clip.visual.' or 'visual.' or 'encoder.visual.'"),
])
def test_a_missing_damaged_or_foreign_file_names_the_file_and_the_fix(tmp_path, content, problem):
    path = tmp_path / "model.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError) as error:
        load_pretrained_tower(tiny_vit_clip().visual, path)
    assert f"from '{path}': {problem}" in str(error.value)
    assert "Fix: pass --pretrained_checkpoint the models/model.pt of a pre-training run" in str(error.value)
    assert "--pretrained_checkpoint '' to start from a random initialisation" in str(error.value)


@pytest.mark.parametrize("empty", ["", None])
def test_no_checkpoint_keeps_the_random_initialisation_and_says_so(empty, caplog):
    tower = tiny_vit_clip(seed=3).visual
    before = state_copy(tower)
    with caplog.at_level("INFO"):
        load_pretrained_tower(tower, empty)
    assert all(torch.equal(before[k], v) for k, v in tower.state_dict().items())
    assert "the vision tower starts from a random initialisation" in caplog.text


# 2. modes

def train_one_step(network: ChestXRayClassifier) -> None:
    network.train()
    optimizer = torch.optim.SGD([p for p in network.parameters() if p.requires_grad], lr=0.5)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(network(torch.rand(4, 1, 32, 32)), torch.ones(4, 3))
    loss.backward()
    optimizer.step()


def test_a_linear_probe_trains_the_head_only_with_the_tower_in_eval_mode():
    torch.manual_seed(0)
    network = ChestXRayClassifier(resnet_tower(), feature_dim=16, num_classes=3, freeze_visual=freezes_tower("linear_probe"))
    tower_before, head_before = state_copy(network.visual), state_copy(network.head)
    train_one_step(network)
    assert network.training and not network.visual.training, "train() must leave the frozen tower in eval mode"
    assert not any(p.requires_grad for p in network.visual.parameters())
    for key, value in network.visual.state_dict().items():  # weights and batch-norm running statistics
        assert torch.equal(value, tower_before[key]), key
    assert not torch.equal(network.head.weight, head_before["weight"])


def test_full_fine_tuning_trains_the_tower_and_its_batch_norm_statistics():
    torch.manual_seed(0)
    network = ChestXRayClassifier(resnet_tower(), feature_dim=16, num_classes=3, freeze_visual=freezes_tower("full"))
    before = state_copy(network.visual)
    train_one_step(network)
    assert network.visual.training
    changed = {k for k, v in network.visual.state_dict().items() if not torch.equal(v, before[k])}
    assert "trunk.bn1.running_mean" in changed and "trunk.conv1.0.weight" in changed


def test_an_unknown_mode_names_the_values():
    with pytest.raises(UserInputError, match="finetune_mode must be one of linear_probe, full, got 'probe'. Fix: pass "
                                             "--finetune_mode linear_probe"):
        freezes_tower("probe")


# 3. label fractions

CATEGORIES = ["nodule", "cavity", "mass"]


def item(patient: int, study: int, positives: tuple[str, ...] = ()) -> dict:
    return {"image": f"p{patient}_s{study}.png", "patient_id": f"p{patient}", "study_id": f"p{patient}_s{study}",
            "findings": [{"category": c, "presence": "present"} for c in positives]}


@pytest.fixture
def split() -> list[dict]:
    """100 patients of 1 or 2 studies; one patient has the only cavity, no patient has a mass."""
    items = [item(p, s, ("nodule",) if p % 4 == 0 else ()) for p in range(100) for s in range(1 + p % 2)]
    items[-1]["findings"] = [{"category": "cavity", "presence": "present"}]
    return items


LABELLER = FindingsToLabelsd(keys="findings", categories=CATEGORIES)


def test_a_label_fraction_keeps_whole_patients_deterministically_and_a_positive_per_category(split, caplog):
    with caplog.at_level("INFO"):
        subset = label_fraction_subset(split, 0.1, LABELLER, CATEGORIES, seed=0)
    patients = {patient_of(i) for i in subset}
    assert [i for i in split if patient_of(i) in patients] == subset, "whole patients, in datalist order"
    assert len(subset) >= math.ceil(0.1 * len(split)) and len(subset) < 0.2 * len(split)
    counts = positive_counts(subset, LABELLER)
    assert counts[0] > 0 and counts[1] == 1 and counts[2] == 0, "the only cavity patient is added; no mass exists"
    assert "added so that every category with a training positive has one (cavity)" in caplog.text
    assert "No training item is positive for mass" in caplog.text
    assert label_fraction_subset(list(reversed(split)), 0.1, LABELLER, CATEGORIES, seed=0) == list(reversed(subset))
    other_seed = label_fraction_subset(split, 0.1, LABELLER, CATEGORIES, seed=1)
    assert {patient_of(i) for i in other_seed} != patients
    larger = {patient_of(i) for i in label_fraction_subset(split, 0.3, LABELLER, CATEGORIES, seed=0)}
    assert patients <= larger, "one patient order for every fraction"
    assert label_fraction_subset(split, 1.0, LABELLER, CATEGORIES) == split


@pytest.mark.parametrize("fraction", [0, 1.5, "a tenth"])
def test_a_label_fraction_outside_the_range_names_the_fix(split, fraction):
    with pytest.raises(UserInputError, match="label_fraction must be above 0 and at most 1.*Fix: pass --label_fraction"):
        label_fraction_subset(split, fraction, LABELLER, CATEGORIES)


# 4. the report

def outputs(scores: np.ndarray, labels: np.ndarray) -> list:
    return [(list(torch.as_tensor(scores)), list(torch.as_tensor(labels)))]


def test_the_report_keeps_untrained_categories_out_of_the_macro_and_thresholds_come_from_validation(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 3)) < 0.5).astype(np.float32)
    scores = np.clip(labels * 0.6 + rng.random((40, 3)) * 0.5, 0, 1).astype(np.float32)
    scores[:, 2] = rng.random(40)  # the untrained category scores at random
    report = finetune_report(outputs(scores[:20], labels[:20]), outputs(scores[20:], labels[20:]), CATEGORIES,
                             [5, 3, 0], tmp_path, settings={"finetune_mode": "full"})
    written = json.loads((tmp_path / "finetune_metrics.json").read_text())
    assert written["finetune_mode"] == "full" and written["thresholds_from"] == "validation"
    assert set(written["trained"]) == {"nodule", "cavity", "macro"} and set(written["untrained"]) == {"mass", "macro"}
    assert written["trained"]["macro"]["auc"] == pytest.approx(np.mean([written["trained"][c]["auc"]
                                                                        for c in ("nodule", "cavity")]))
    assert written["training_positives"] == {"nodule": 5, "cavity": 3, "mass": 0}
    assert written["n_validation"] == 20 and written["n_test"] == 20 and "table" in report
    assert (tmp_path / "finetune_roc.png").stat().st_size > 1000


# 5. the workflow through the CLI

def finetune_cli(workdir: Path, data: Path, pretrained: Path | str, *args: str, configs=FINETUNE,
                 ok: bool = True) -> subprocess.CompletedProcess:
    result = run_bundle(workdir, data, "training", "--pretrained_checkpoint", str(pretrained), *args, configs=configs)
    if ok:
        assert result.returncode == 0, describe(result)
    return result


def tower_of(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


@pytest.fixture(scope="module")
def pretrained(trained) -> Path:  # noqa: F811
    workdir, _ = trained
    return workdir / "models/model.pt"


@pytest.fixture(scope="module")
def linear_probe(synthcxr, pretrained, tmp_path_factory):  # noqa: F811
    workdir = tmp_path_factory.mktemp("linear_probe")
    configs = (*FINETUNE, "configs/finetune_linear_probe.json", "configs/finetune_10pct.json")
    return workdir, finetune_cli(workdir, synthcxr, pretrained, "--track_mlflow", "false", configs=configs)


@pytest.fixture(scope="module")
def full(synthcxr, pretrained, tmp_path_factory):  # noqa: F811
    workdir = tmp_path_factory.mktemp("full")
    return workdir, finetune_cli(workdir, synthcxr, pretrained)


def test_a_linear_probe_leaves_the_pretrained_tower_unchanged(linear_probe, pretrained):
    workdir, result = linear_probe
    tuned = torch.load(workdir / "models/finetune_model.pt", weights_only=True)
    original = tower_of(torch.load(pretrained, weights_only=True), TOWER_PREFIX)
    tower = tower_of(tuned, "visual.")
    assert tower.keys() == original.keys()
    assert all(torch.equal(tower[k], original[k]) for k in tower), "the frozen tower changed"
    assert f"Loaded the pretrained vision tower from {pretrained}" in result.stdout


def test_a_label_fraction_trains_on_its_patient_subset(linear_probe, synthcxr):  # noqa: F811
    workdir, result = linear_probe
    metrics = json.loads((workdir / "eval/finetune_metrics.json").read_text())
    datalist = json.loads((synthcxr / "datalist.json").read_text())
    n_train = len(datalist["training"])
    assert metrics["n_training_split"] == n_train and metrics["label_fraction"] == 0.1
    assert math.ceil(0.1 * n_train) <= metrics["n_training_labelled"] < n_train
    assert f"{metrics['n_training_labelled']} of {n_train} training items labelled" in result.stdout
    assert metrics["finetune_mode"] == "linear_probe" and metrics["pretrained_checkpoint"].endswith("models/model.pt")


def test_full_fine_tuning_trains_the_tower_and_writes_per_category_auc(full, pretrained, synthcxr):  # noqa: F811
    workdir, _ = full
    tuned = tower_of(torch.load(workdir / "models/finetune_model.pt", weights_only=True), "visual.")
    original = tower_of(torch.load(pretrained, weights_only=True), TOWER_PREFIX)
    assert any(not torch.equal(tuned[k], original[k]) for k in tuned), "full fine-tuning left the tower unchanged"
    metrics = json.loads((workdir / "eval/finetune_metrics.json").read_text())
    datalist = json.loads((synthcxr / "datalist.json").read_text())
    assert metrics["n_training_labelled"] == len(datalist["training"]) and metrics["n_test"] == len(datalist["test"])
    trained_categories = [c for c, n in metrics["training_positives"].items() if n > 0]
    assert set(metrics["trained"]) == set(trained_categories) | {"macro"}
    assert set(metrics.get("untrained", {})) <= set(datalist["unseen_categories"]) | {"macro"}
    assert 0.0 <= metrics["trained"]["macro"]["auc"] <= 1.0
    assert all(0.0 <= metrics["trained"][c]["threshold"] <= 1.0 for c in trained_categories)
    assert (workdir / "eval/finetune_roc.png").stat().st_size > 1000


def test_fine_tuning_is_tracked_in_its_own_mlflow_experiment(full):
    workdir, _ = full
    db = sqlite3.connect(workdir / "eval/mlruns.db")
    assert [row[0] for row in db.execute("select name from experiments where name like '%finetune%'")] == \
        ["medfilip_cxr_finetune"]
    assert {"train_epoch_loss", "val_macro_auc"} <= {row[0] for row in db.execute("select key from metrics")}
    assert dict(db.execute("select key, value from params"))["finetune_mode"] == "full"


def test_fine_tuning_resumes_its_own_run_and_refuses_another(full, synthcxr, pretrained):  # noqa: F811
    workdir, _ = full
    result = finetune_cli(workdir, synthcxr, pretrained, "--max_epochs", "3", "--track_mlflow", "false")
    log = result.stdout + result.stderr  # the report's evaluators log their own Epoch[1]: look at the trainer's lines
    assert "SupervisedTrainer - INFO - Epoch[3]" in log and "SupervisedTrainer - INFO - Epoch[1]" not in log, \
        "fine-tuning restarted instead of resuming"
    other = finetune_cli(workdir, synthcxr, pretrained, "--max_epochs", "4", "--label_fraction", "0.1",
                         "--track_mlflow", "false", ok=False)
    assert other.returncode == 1, describe(other)
    assert "belongs to another run (label_fraction: 1.0 in the checkpoint, 0.1 now)" in last_lines(other.stderr)


def test_a_missing_pretrained_checkpoint_ends_with_the_file_and_the_fix(synthcxr, tmp_path):  # noqa: F811
    missing = tmp_path / "nowhere/model.pt"
    result = finetune_cli(tmp_path, synthcxr, missing, "--track_mlflow", "false", ok=False)
    assert result.returncode == 1, describe(result)
    ending = last_lines(result.stderr)
    assert f"CheckpointError: cannot load the pretrained vision tower from '{missing}': the file does not exist" in ending
    assert "--pretrained_checkpoint '' to start from a random initialisation" in ending


# 6. the comparison script

def test_compare_finetuning_tabulates_every_initialisation(synthcxr, pretrained, tmp_path):  # noqa: F811
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "finetuning.md").write_text("# Fine-tuning\n\nHow to run.\n\n## Results\n\n"
                                        "<!-- compare_finetuning.py results: start -->\nSTALE RESULTS\n"
                                        "<!-- compare_finetuning.py results: end -->\n\nAfter.\n")
    command = [sys.executable, "scripts/compare_finetuning.py", "--dataset_dir", str(synthcxr),
               "--pretrained", f"medfilip={pretrained}", "--fractions", "0.1", "--modes", "linear_probe",
               "--output", str(tmp_path / "out"), "--extra_config", "tests/configs/tiny_train.json",
               "--override", "max_epochs=1", "--override", "steps_per_epoch=1", "--override", "track_mlflow=false",
               "--docs_dir", str(docs)]
    result = subprocess.run(command, cwd=REPO, env=bundle_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"STDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-5000:]}"
    rows = json.loads((tmp_path / "out/results.json").read_text())
    assert [(r["init"], r["mode"], r["label_fraction"]) for r in rows] == [("medfilip", "linear_probe", 0.1),
                                                                            ("random", "linear_probe", 0.1)]
    assert all(0.0 <= r["macro_auc"] <= 1.0 and r["steps"] == 1 for r in rows)
    assert rows[0]["n_training_labelled"] == rows[1]["n_training_labelled"], "the same labelled subset"
    table = (tmp_path / "out/results.md").read_text()
    assert "| medfilip | " in table and "| random | " in table and "10 %" in table
    document = (docs / "finetuning.md").read_text()
    assert document.startswith("# Fine-tuning\n\nHow to run.") and document.endswith("\n\nAfter.\n")
    assert "STALE RESULTS" not in document and "| medfilip | " in document and "](finetuning.png)" in document
    assert (docs / "finetuning.png").read_bytes() == (tmp_path / "out/results.png").read_bytes()
    rerun = subprocess.run(command, cwd=REPO, env=bundle_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and rerun.stdout.count("skipped") == 2, rerun.stderr[-3000:]
