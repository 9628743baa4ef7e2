"""scripts/compare_methods.py end to end: every variant config through the real CLI on a tiny SynthCXR set.

This is also the tiny end-to-end run of each variant config (`python -m monai.bundle run training`,
then the evaluation). One epoch of the tiny network and no MLflow keep it to a few minutes on 2
cores, most of it the start-up of the 12 CLI processes.
"""

import json
import math
import subprocess
from pathlib import Path

import pytest

from tests.bundle_cli import describe, make_synthcxr, run_script

VARIANTS = ["clip_baseline", "medfilip", "no_iki", "no_field_masking", "no_ssm", "no_itm", "no_patch_matching"]
WITH_ITM_HEAD = {"medfilip", "no_iki", "no_field_masking", "no_ssm", "no_patch_matching"}
RECALLS = [f"{direction}_recall@{k}" for direction in ("image_to_text", "text_to_image") for k in (1, 5, 10)]


def compare(dataset: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    result = run_script("scripts/compare_methods.py", "--dataset_dir", str(dataset), "--variants", ",".join(VARIANTS),
                        "--seeds", "0", "--output", str(output), "--extra_config", "tests/configs/tiny_train.json",
                        "--override", "max_epochs=1", "--override", "track_mlflow=false", *extra, timeout=900)
    assert result.returncode == 0, describe(result)
    return result


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    data = tmp_path_factory.mktemp("synthcxr")
    make_synthcxr(data, 80, "--unseen", "mass,bulla")
    output = tmp_path_factory.mktemp("compare")
    return data, output, compare(data, output, "--docs_dir", str(output / "docs"))


def test_every_variant_has_a_row_with_finite_auc_and_retrieval(compared):
    _, output, _ = compared
    rows = json.loads((output / "results.json").read_text())
    assert [(r["variant"], r["seed"]) for r in rows] == [(v, 0) for v in VARIANTS]
    for row in rows:
        assert math.isfinite(row["seen_macro_auc"]) and 0.0 <= row["seen_macro_auc"] <= 1.0, row
        assert set(row["unseen_per_category"]) == {"mass", "bulla"}
        assert 0.0 <= row["seen_macro_auc_abnormal_studies"] <= 1.0, row
        # too few test positives per category in a tiny set for five folds: null, never NaN
        assert all(row[f"{group}_macro_auc_linear_probe"] is None or 0.0 <= row[f"{group}_macro_auc_linear_probe"] <= 1.0
                   for group in ("seen", "unseen")), row
        assert all(0.0 <= row[key] <= 1.0 for key in RECALLS), row
        itm_keys = {k for k in row if k.startswith("itm_")}
        expected = {f"itm_image_to_text_recall@{k}" for k in (1, 5, 10)} if row["variant"] in WITH_ITM_HEAD else set()
        assert itm_keys == expected, row["variant"]
        assert Path(row["checkpoint"]).is_file() and row["train_seconds"] > 0
        assert row["config_files"][0] == "configs/train.json" and row["config_files"][-1] == "tests/configs/tiny_train.json"


def test_summary_table_plot_and_docs_copies(compared):
    _, output, _ = compared
    table = (output / "results.md").read_text()
    assert all(f"| {variant} | 1 |" in table for variant in VARIANTS)
    assert ("| seen macro-AUC | unseen macro-AUC | seen, abnormal studies | unseen, abnormal studies "
            "| seen, linear probe | unseen, linear probe |") in table
    assert "generator seed 3" in table and "mass, bulla" in table and "scripts/compare_methods.py" in table
    assert (output / "results.png").stat().st_size > 5000
    docs = (output / "docs/method_comparison.md").read_text()
    assert "do not edit them by hand" in docs and "](method_comparison.png)" in docs
    assert (output / "docs/method_comparison.png").read_bytes() == (output / "results.png").read_bytes()


def test_rerun_skips_finished_runs(compared):
    data, output, _ = compared
    before = (output / "results.json").read_text()
    result = compare(data, output)
    assert result.stdout.count("skipped") == len(VARIANTS)
    assert "trained in" not in result.stdout
    assert json.loads((output / "results.json").read_text()) == json.loads(before)


def test_a_failed_run_stops_with_the_stderr_tail_and_the_command(compared, tmp_path):
    data, _, _ = compared
    result = run_script("scripts/compare_methods.py", "--dataset_dir", str(data), "--variants", "medfilip", "--output",
                        str(tmp_path), "--override", "image_size=not_a_size", "--override", "track_mlflow=false")
    assert result.returncode == 1
    assert "medfilip seed 0 training failed" in result.stderr and "Rerun this step with:" in result.stderr
    assert "monai.bundle run training" in result.stderr
    assert "Error" in result.stderr.split("Last lines of its stderr", 1)[1], "the CLI's own error is not shown"
    assert not (tmp_path / "runs/medfilip_seed0/run.json").exists()


REFUSED_OVERRIDES = [("scripts/compare_methods.py", "max_epochs", "seed"),
                     ("scripts/compare_finetuning.py", "label_fraction=1", "label_fraction"),
                     ("scripts/compare_segmentation.py", "encoder_weights=x", "encoder_weights")]


@pytest.mark.parametrize(("script", "override", "own_key"), REFUSED_OVERRIDES)
def test_a_bad_override_or_one_of_a_key_the_script_sets_is_refused_before_any_run(script, override, own_key, tmp_path):
    # first on the command line: argparse reports the first bad argument it converts
    result = run_script(script, "--override", override, "--dataset_dir", str(tmp_path),
                        "--output", str(tmp_path / "out"))
    assert result.returncode == 2, describe(result)
    assert f"argument --override: '{override}': expected KEY=VALUE with a key this script does not set (" in \
        result.stderr and own_key in result.stderr.rsplit("(", 1)[1], result.stderr
    assert not (tmp_path / "out").exists()
