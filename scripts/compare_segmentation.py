"""Train the segmentation network from each pre-trained encoder and from random initialisation, then tabulate Dice.

    python scripts/compare_segmentation.py --dataset_dir data/synthcxr \\
        --encoder medfilip=runs/compare/runs/medfilip_seed0/models/model.pt \\
        --encoder clip=runs/compare/runs/clip_baseline_seed0/models/model.pt \\
        --tasks lungs lesions --output runs/compare_segmentation \\
        [--extra_config tests/configs/tiny_segmentation.json] [--override max_epochs=10 ...] [--seeds 0 1] \\
        [--docs_dir docs]

Every (task, encoder, seed) is one ``python -m monai.bundle run training`` with
``configs/train_segmentation.json`` (lesions: + ``configs/seg_lesions.json``), then the
``--extra_config`` files (the tower overrides the checkpoints were pre-trained with, the same for
every run), in its own folder ``OUT/runs/<task>_<encoder>_seed<k>/``, fresh (``--resume false``),
with ``--encoder_weights`` set by this script (``random`` for random initialisation, always
included). Every run has the same settings and so the same optimiser steps; the run ends by
scoring the best model (by validation Dice) once on the test split,
``eval/segmentation_<task>_test.json``, which gives the table its test Dice (mean and worst image).

The script can be stopped and started again: a run whose test report exists and whose record has
the same settings is skipped. ``OUT/results.json`` (one row per run) is rewritten atomically after
every run; ``OUT/results.md`` at the end; ``--docs_dir`` also writes ``segmentation_comparison.md``
there.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bundle.io import atomic_open, write_json_atomic  # noqa: E402
from compare_finetuning import config_file, dataset_folder, named_checkpoint, run_grid  # noqa: E402
from compare_methods import (RESERVED_KEYS, Run, RunFailed, cli_command, dataset_info, mean_std,  # noqa: E402
                             override_pair, read_json, run_cli)

BASE_CONFIG = "configs/train_segmentation.json"
# each task: its config overrides and the file its best model is saved to (see those configs)
TASKS = {"lungs": ((), "segmentation.pt"), "lesions": (("configs/seg_lesions.json",), "segmentation_lesions.pt")}
RANDOM_INIT = "random"
OWN_KEYS = (*RESERVED_KEYS, "encoder_weights")
DOCS_STEM = "segmentation_comparison"


@dataclass(frozen=True)
class SegmentationRun(Run):
    """One segmentation training run; ``variant`` is the encoder's name."""

    task: str
    weights: str

    @property
    def metrics(self) -> Path:
        return self.eval_dir / f"segmentation_{self.task}_test.json"

    @property
    def checkpoint(self) -> Path:
        return self.models / TASKS[self.task][1]

    def overrides(self, common: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        return [*common, ("encoder_weights", self.weights)]


def plan_runs(args: argparse.Namespace) -> list[SegmentationRun]:
    encoders = [*args.encoder, (RANDOM_INIT, RANDOM_INIT)]
    return [SegmentationRun(name, seed, args.output / "runs" / f"{task}_{name}_seed{seed}",
                            (BASE_CONFIG, *TASKS[task][0], *args.extra_config), task, weights)
            for task in args.tasks for name, weights in encoders for seed in args.seeds]


def execute(run: SegmentationRun, settings: dict[str, Any], dataset_dir: Path, overrides: Sequence[tuple[str, str]],
            label: str) -> None:
    """Train (the run ends with its test report) and record the run."""
    run.record.unlink(missing_ok=True)  # a record stands for a finished run only
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    command = cli_command(run, dataset_dir, overrides, evaluate=False)
    seconds = run_cli(command, run.folder / "training", f"{label} training")
    record = {**settings, "train_seconds": round(seconds, 2), "train_command": shlex.join(command)}
    write_json_atomic(run.record, record)
    print(f"{label}: trained and tested in {seconds:.1f} s", flush=True)


def result_row(run: SegmentationRun) -> dict[str, Any]:
    """One row of results.json from a finished run's test report and record."""
    report = read_json(run.metrics)
    test, validation = report["test"], report.get("validation", {})
    return {
        "task": run.task,
        "encoder": run.variant,
        "seed": run.seed,
        "test_dice": test.get("test_mean_dice"),
        "test_min_dice": test.get("min_test_mean_dice"),
        "test_hd95": test.get("test_hd95"),
        "test_items": test["items"],
        "val_best_dice": validation.get("best_val_mean_dice"),
        "epochs": report.get("training", {}).get("epochs"),
        "train_seconds": read_json(run.record).get("train_seconds"),
        "encoder_weights": None if run.weights == RANDOM_INIT else run.weights,
        "metrics_file": str(run.metrics),
    }


def summary_markdown(rows: list[dict[str, Any]], args: argparse.Namespace, dataset: dict[str, Any],
                     command: str) -> str:
    """One table: encoders by task, test Dice (mean over images) and worst image, mean ± std over seeds."""
    encoders = [name for name, _ in args.encoder] + [RANDOM_INIT]
    header, rule = ["encoder"], ["---"]
    for task in args.tasks:
        header += [f"{task} test Dice", f"{task} worst image", f"{task} validation Dice"]
        rule += ["---:"] * 3
    lines = [
        f"Data set: `{dataset['path']}` ({dataset.get('name', 'unnamed')}, generator seed "
        f"{dataset.get('seed', 'n/a')}, {dataset['n_test']} test studies). Test Dice is the mean over the test "
        "images of MONAI's Dice of the best model by validation Dice (images without foreground in the truth are "
        "left out, unless the runs set `ignore_empty_masks` false); 'worst image' is the lowest image's Dice. "
        "Every run of a task has the same settings and optimiser steps; values are mean ± sample standard "
        "deviation over the seeds "
        f"({', '.join(map(str, args.seeds))}).",
        "",
        f"Made by:\n\n```\n{command}\n```",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(rule) + "|",
    ]
    for encoder in encoders:
        cells = [encoder]
        for task in args.tasks:
            mine = [r for r in rows if (r["encoder"], r["task"]) == (encoder, task)]
            cells += [mean_std([r[key] for r in mine]) for key in ("test_dice", "test_min_dice", "val_best_dice")]
        lines.append("| " + " | ".join(cells) + " |")
    epochs = sorted({r["epochs"] for r in rows if r["epochs"] is not None})
    seconds = [r["train_seconds"] for r in rows if r["train_seconds"] is not None]
    lines += ["", f"Epochs per run: {', '.join(map(str, epochs)) or 'n/a'}; training and test time per run: "
                  f"{mean_std(seconds, digits=0)} s.", ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--dataset_dir", type=dataset_folder, required=True,
                        help="folder with datalist.json and masks (SynthCXR: lung_mask, lesion_mask)")
    parser.add_argument("--encoder", action="append", default=[], type=named_checkpoint, metavar="NAME=CHECKPOINT",
                        help="a pre-training checkpoint to start the encoder from (repeatable), e.g. "
                             f"medfilip=models/model.pt; '{RANDOM_INIT}' is always added")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS), help="segmentation tasks")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default: 0)")
    parser.add_argument("--output", type=lambda text: Path(text).resolve(), required=True,
                        help="folder for runs/ and results.{json,md}")
    parser.add_argument("--extra_config", action="append", default=[], type=config_file,
                        help="config layered on every run (repeatable): the tower overrides of the checkpoints")
    parser.add_argument("--override", action="append", default=[], type=override_pair(OWN_KEYS), metavar="KEY=VALUE",
                        help="config override for every run (repeatable), e.g. max_epochs=10")
    parser.add_argument("--docs_dir", type=Path, help=f"also write {DOCS_STEM}.md there")
    args = parser.parse_args(argv)
    for option, values in (("--encoder names", [name for name, _ in args.encoder]), ("--tasks", args.tasks),
                           ("--seeds", args.seeds)):
        if len(set(values)) != len(values):
            parser.error(f"{option} must not repeat a value")
    return args


def describe_run(run: SegmentationRun) -> str:
    return f"{run.task} {run.variant} seed {run.seed}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "scripts/compare_segmentation.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        rows = run_grid(plan_runs(args), args, describe_run, execute, result_row)
    except RunFailed as failure:
        print(f"compare_segmentation.py: {failure}", file=sys.stderr, flush=True)
        return 1
    section = summary_markdown(rows, args, dataset_info(args.dataset_dir), command)
    outputs = [(args.output / "results.md", "This file is written by `scripts/compare_segmentation.py`.")]
    if args.docs_dir is not None:
        outputs.append((args.docs_dir / f"{DOCS_STEM}.md", "This file is regenerated by "
                        "`scripts/compare_segmentation.py --docs_dir`; do not edit it by hand."))
    for path, note in outputs:
        with atomic_open(path) as handle:
            handle.write(f"# Segmentation: encoder initialisations compared\n\n{note}\n\n{section}")
    print(outputs[0][0].read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in [args.output / "results.json", *(path for path, _ in outputs)]),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
