"""End to end through the real CLI: generate SynthCXR, `monai.bundle run training`, resume, evaluate.

A tiny network and a small generated set keep this to well under a minute per CLI call; the
checks are on what a user would look at: checkpoints, MLflow runs, metrics files, logs.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bundle_cli import EVALUATE_CONFIGS, REPO, TINY, TRAIN_CONFIGS, bundle_env, describe, make_synthcxr, run_bundle


def bundle_cli(workdir: Path, data_dir: Path, *args: str, configs: tuple[str, ...] = TRAIN_CONFIGS,
               timeout: int = 300) -> subprocess.CompletedProcess:
    result = run_bundle(workdir, data_dir, *args, configs=configs, timeout=timeout)
    assert result.returncode == 0, describe(result)
    return result


@pytest.fixture(scope="module")
def synthcxr(tmp_path_factory) -> Path:
    return make_synthcxr(tmp_path_factory.mktemp("synthcxr"), n=120)


@pytest.fixture(scope="module")
def trained(synthcxr, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("run")
    return workdir, bundle_cli(workdir, synthcxr, "training")


def test_training_writes_checkpoints_and_validates(trained):
    workdir, result = trained
    assert (workdir / "models/model.pt").is_file(), "the best-model checkpoint is missing"
    assert sorted(p.name for p in (workdir / "models").glob("checkpoint_*.pt")) == ["checkpoint_checkpoint_epoch=2.pt"]
    log = result.stdout + result.stderr
    assert "val_macro_auc" in log and "Epoch[2]" in log


def test_mlflow_run_has_params_metrics_and_config_but_no_report_text(trained, synthcxr):
    workdir, _ = trained
    db = sqlite3.connect(workdir / "eval/mlruns.db")
    metrics = {row[0] for row in db.execute("select key from metrics")}
    params = dict(db.execute("select key, value from params"))
    assert {"train_epoch_loss", "val_macro_auc"} <= metrics
    assert params["learning_rate"] == "0.001" and params["batch_size"] == "8"
    artifacts = list((workdir / "eval/mlruns").rglob("train.json"))
    assert artifacts, "the training config was not logged as an MLflow artifact"
    report = json.loads((synthcxr / "datalist.json").read_text())["training"][0]["report"]
    sentence = max(report.split("."), key=len).strip()
    stored = b"".join(p.read_bytes() for p in (workdir / "eval").rglob("*") if p.is_file())
    assert sentence.encode() not in stored, "report text leaked into the MLflow store"


def test_resume_continues_from_the_last_checkpoint(trained, synthcxr):
    workdir, _ = trained
    result = bundle_cli(workdir, synthcxr, "training", "--max_epochs", "3")
    log = result.stdout + result.stderr
    assert "Epoch[3]" in log and "Epoch[1]" not in log, "training restarted instead of resuming"
    saved = sorted(p.name for p in (workdir / "models").glob("checkpoint_*.pt"))
    assert saved == ["checkpoint_checkpoint_epoch=3.pt"], "the checkpoint resumed from outlived n_saved=1"


def test_interrupted_training_resumes(synthcxr, tmp_path):
    command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
               f"['configs/train.json','{TINY}']", "--meta_file", "metadata.json", "--logging_file", "configs/logging.conf",
               "--dataset_dir", str(synthcxr), "--ckpt_dir", str(tmp_path / "models"),
               "--output_dir", str(tmp_path / "eval"), "--max_epochs", "40", "--track_mlflow", "false"]
    process = subprocess.Popen(command, cwd=REPO, env=bundle_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((tmp_path / "models").glob("checkpoint_*epoch=2.pt")):
        time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = sorted((tmp_path / "models").glob("checkpoint_*.pt"))
    assert saved, "no checkpoint was written before the kill"
    epoch = int(saved[-1].stem.split("=")[-1])
    result = bundle_cli(tmp_path, synthcxr, "training", "--max_epochs", str(epoch + 1), "--track_mlflow", "False")
    log = result.stdout + result.stderr
    assert f"Epoch[{epoch + 1}]" in log and "Epoch[1]" not in log
    assert not (tmp_path / "eval/mlruns.db").exists(), "--track_mlflow false did not switch MLflow off"


def test_evaluation_writes_metrics_with_validation_thresholds(trained, synthcxr):
    workdir, _ = trained
    bundle_cli(workdir, synthcxr, configs=EVALUATE_CONFIGS)
    metrics = json.loads((workdir / "eval/zero_shot_metrics.json").read_text())
    assert metrics["thresholds_from"] == "validation"
    datalist = json.loads((synthcxr / "datalist.json").read_text())
    assert metrics["n_test"] == len(datalist["test"])
    seen = [c for c in datalist["categories"] if c not in datalist["unseen_categories"]]
    # a category without a positive or a negative among the test studies is skipped and listed, not scored
    assert set(metrics["seen"]) | set(metrics["skipped"]) == set(seen) | {"macro"}
    assert not set(metrics["seen"]) & set(metrics["skipped"])
    assert 0.0 <= metrics["seen"]["macro"]["auc"] <= 1.0
    assert (workdir / "eval/zero_shot_roc.png").stat().st_size > 1000

    # the demo's last step turns the metrics into docs/results.md, without importing torch or MONAI
    page = workdir / "results.md"
    summarize = ("import runpy, sys; sys.argv = sys.argv[1:]; "
                 "runpy.run_path(sys.argv[0], run_name='__main__'); "
                 "print('heavy modules:', sorted({'torch', 'monai'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", summarize, str(REPO / "scripts/summarize_results.py"), "--metrics",
                             str(workdir / "eval/zero_shot_metrics.json"), "--output", str(page)],
                            cwd=REPO, env=bundle_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, describe(result)
    assert "heavy modules: []" in result.stdout
    text = page.read_text()
    assert "### Seen categories" in text and "### Retrieval (test split" in text
    macro = metrics["seen"]["macro"]
    assert f"| **macro** |  |  | {macro['auc']:.3f} | {macro['f1']:.3f} |" in text
    assert f"seen-category macro-AUC: {macro['auc']:.3f}" in result.stdout


def test_train_workflow_has_all_required_properties(synthcxr, tmp_path):
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(config_file=["configs/train.json", TINY], meta_file="metadata.json", logging_file=False,
                              workflow_type="train", bundle_root=str(REPO), dataset_dir=str(synthcxr),
                              ckpt_dir=str(tmp_path / "models"), output_dir=str(tmp_path / "eval"))
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        workflow.initialize()
        assert workflow.check_properties() == []
    finally:
        os.chdir(cwd)


def test_metadata_verifies_offline():
    result = subprocess.run([sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", "metadata.json",
                             "--filepath", "configs/metadata_schema.json"], cwd=REPO, env=bundle_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "metadata is verified with no error" in result.stdout + result.stderr


def test_metadata_verification_rejects_a_broken_file(tmp_path):
    metadata = json.loads((REPO / "metadata.json").read_text())
    del metadata["network_data_format"]["inputs"]["image"]["dtype"]
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(metadata))
    result = subprocess.run([sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(broken),
                             "--filepath", "configs/metadata_schema.json"], cwd=REPO, env=bundle_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "'dtype' is a required property" in result.stdout + result.stderr


def test_monai_tracking_flag_logs_to_mlflow(synthcxr, tmp_path):
    bundle_cli(tmp_path, synthcxr, "training", "--max_epochs", "1", "--tracking", "mlflow", "--track_mlflow", "False")
    db = sqlite3.connect(tmp_path / "eval/mlruns.db")
    assert {"train_loss", "val_macro_auc"} <= {row[0] for row in db.execute("select key from metrics")}
    assert list((tmp_path / "eval").glob("config_*.json")), "MONAI's tracking did not save the executed config"
