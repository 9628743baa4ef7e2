"""Fine-tune from each pre-trained vision tower and from random initialisation at several label fractions, then tabulate.

    python scripts/compare_finetuning.py --dataset_dir data/synthcxr \\
        --pretrained medfilip=runs/compare/runs/medfilip_seed0/models/model.pt \\
        --pretrained clip_baseline=runs/compare/runs/clip_baseline_seed0/models/model.pt \\
        --fractions 0.01 0.1 1.0 --modes linear_probe full --output runs/finetune \\
        [--extra_config tests/configs/tiny_train.json] [--override max_epochs=5 ...] [--seeds 0 1] [--docs_dir docs]

Every (initialisation, mode, fraction, seed) is one ``python -m monai.bundle run training`` with
``configs/train.json`` + ``configs/finetune.json`` (then the ``--extra_config`` files: the tower
overrides the checkpoints were pre-trained with, the same for every run) in its own folder
``OUT/runs/<init>_<mode>_<fraction>_seed<k>/``, fresh (``--resume false``), with
``--pretrained_checkpoint``, ``--finetune_mode`` and ``--label_fraction`` set by this script. The
initialisation ``random`` (an empty ``pretrained_checkpoint``) is always included. Every run takes
the same number of optimiser steps: ``configs/finetune.json`` sizes an epoch by the whole training
split, whatever the label fraction (``steps_per_epoch``; an ``--override`` sets it for all runs).

The script can be stopped and started again: a run whose ``eval/finetune_metrics.json`` exists
and whose record has the same settings is skipped. ``OUT/results.json`` (one row per run) is
rewritten atomically after every run; ``OUT/results.md`` (test macro-AUC over the categories with a
labelled training positive, mean +- std over seeds) and ``OUT/results.png`` at the end.
``--docs_dir`` also writes ``finetuning.png`` there and replaces the results section of
``finetuning.md`` (between its markers; the rest of the file is left as it is).
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bundle.io import atomic_open, write_bytes_atomic, write_json_atomic  # noqa: E402
from bundle.metrics.finetune_report import METRICS_FILE  # noqa: E402
from compare_methods import (RESERVED_KEYS, Run, RunFailed, _repo_relative, cli_command, dataset_info,  # noqa: E402
                             finite_or_none, load_record, mean_std, override_pair, read_json, run_cli, run_settings)

BASE_CONFIGS = ("configs/train.json", "configs/finetune.json")
RANDOM_INIT = "random"
MODES = ("linear_probe", "full")
# set per run by this script, on top of compare_methods' own
OWN_KEYS = (*RESERVED_KEYS, "pretrained_checkpoint", "finetune_mode", "label_fraction")
DOCS_STEM = "finetuning"
SECTION_START = "<!-- compare_finetuning.py results: start -->"
SECTION_END = "<!-- compare_finetuning.py results: end -->"


@dataclass(frozen=True)
class FinetuneRun(Run):
    """One fine-tuning run; ``variant`` is the initialisation's name."""

    mode: str
    fraction: float
    pretrained: str

    @property
    def metrics(self) -> Path:
        return self.eval_dir / METRICS_FILE

    def overrides(self, common: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        return [*common, ("pretrained_checkpoint", self.pretrained), ("finetune_mode", self.mode),
                ("label_fraction", f"{self.fraction:g}")]


def fraction_name(fraction: float) -> str:
    return f"{100 * fraction:g} %"


def plan_runs(args: argparse.Namespace) -> list[FinetuneRun]:
    inits = [*args.pretrained, (RANDOM_INIT, "")]
    configs = (*BASE_CONFIGS, *args.extra_config)
    return [FinetuneRun(name, seed, args.output / "runs" / f"{name}_{mode}_{fraction:g}_seed{seed}", configs,
                        mode, fraction, path)
            for mode in args.modes for fraction in args.fractions for name, path in inits for seed in args.seeds]


def execute(run: FinetuneRun, settings: dict[str, Any], dataset_dir: Path, overrides: Sequence[tuple[str, str]],
            label: str) -> None:
    """Fine-tune (training ends with the test report) and record the run."""
    run.record.unlink(missing_ok=True)  # a record stands for a finished run only
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    command = cli_command(run, dataset_dir, overrides, evaluate=False)
    seconds = run_cli(command, run.folder / "finetune", f"{label} fine-tuning")
    write_json_atomic(run.record, {**settings, "train_seconds": round(seconds, 2), "train_command": shlex.join(command)})
    print(f"{label}: fine-tuned and evaluated in {seconds:.1f} s", flush=True)


def result_row(run: FinetuneRun) -> dict[str, Any]:
    """One row of results.json from a finished run's metrics JSON and record."""
    metrics = read_json(run.metrics)
    trained = metrics.get("trained", {})
    return {
        "init": run.variant,
        "mode": run.mode,
        "label_fraction": run.fraction,
        "seed": run.seed,
        "macro_auc": finite_or_none(trained["macro"]["auc"]) if trained else None,
        "per_category_auc": {c: finite_or_none(m["auc"]) for c, m in trained.items() if c != "macro"},
        "n_training_labelled": metrics["n_training_labelled"],
        "steps": metrics["steps_per_epoch"] * metrics["max_epochs"],
        "train_seconds": read_json(run.record).get("train_seconds"),
        "pretrained_checkpoint": run.pretrained or None,
        "metrics_file": str(run.metrics),
    }


def cell(rows: list[dict[str, Any]], init: str, mode: str, fraction: float) -> list[dict[str, Any]]:
    return [r for r in rows if (r["init"], r["mode"], r["label_fraction"]) == (init, mode, fraction)]


def summary_markdown(rows: list[dict[str, Any]], args: argparse.Namespace, dataset: dict[str, Any],
                     command: str, image: str) -> str:
    """One table per mode: initialisations by label fraction, test macro-AUC mean ± std over seeds."""
    inits = [name for name, _ in args.pretrained] + [RANDOM_INIT]
    unseen = ", ".join(dataset.get("unseen_categories", [])) or "none"
    lines = [
        f"Data set: `{dataset['path']}` ({dataset.get('name', 'unnamed')}, generator seed {dataset.get('seed', 'n/a')}, "
        f"{dataset['n_test']} test studies). Test macro-AUC over the categories with a labelled training positive; "
        f"the others (such as the data set's held-out categories: {unseen}) are reported apart in each run's metrics "
        "JSON. Thresholds play no part in AUC. Every run takes the same optimiser steps; values are mean ± sample standard deviation over "
        f"the seeds ({', '.join(map(str, args.seeds))}); the labelled subset is the same for every initialisation.",
        "",
        f"Made by:\n\n```\n{command}\n```",
    ]
    for mode in args.modes:
        lines += ["", f"**{mode.replace('_', ' ')}**", "",
                  "| initialisation | " + " | ".join(fraction_name(f) for f in args.fractions) + " |",
                  "|---|" + "---:|" * len(args.fractions)]
        for init in inits:
            cells = [mean_std([r["macro_auc"] for r in cell(rows, init, mode, f)]) for f in args.fractions]
            lines.append(f"| {init} | " + " | ".join(cells) + " |")
        labelled = [next((str(r["n_training_labelled"]) for r in rows if r["label_fraction"] == f), "–")
                    for f in args.fractions]
        steps = {r["steps"] for r in rows if r["mode"] == mode}
        lines.append("| *labelled training items* | " + " | ".join(labelled) + " |")
        lines += ["", f"Optimiser steps per run: {', '.join(map(str, sorted(steps))) or 'n/a'}."]
    lines += ["", f"![Test macro-AUC by initialisation and label fraction]({image})", ""]
    return "\n".join(lines)


def plot_auc(rows: list[dict[str, Any]], args: argparse.Namespace, path: Path) -> None:
    """Bars of test macro-AUC per label fraction and initialisation, one panel per mode (std error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inits = [name for name, _ in args.pretrained] + [RANDOM_INIT]
    fig, axes = plt.subplots(1, len(args.modes), figsize=(5.5 * len(args.modes), 4.0), squeeze=False)
    width = 0.8 / len(inits)
    for ax, mode in zip(axes[0], args.modes):
        for i, init in enumerate(inits):
            values = [[r["macro_auc"] for r in cell(rows, init, mode, f) if r["macro_auc"] is not None]
                      for f in args.fractions]
            means = [statistics.fmean(v) if v else math.nan for v in values]
            stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            offsets = [j + (i - (len(inits) - 1) / 2) * width for j in range(len(args.fractions))]
            ax.bar(offsets, means, width, yerr=stds, capsize=3, label=init)
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_xticks(range(len(args.fractions)), [f"{fraction_name(f)} labels" for f in args.fractions])
        ax.set(ylim=(0.0, 1.0), ylabel="test macro-AUC", title=mode.replace("_", " "))
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    with atomic_open(path, binary=True) as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def with_results_section(document: str | None, section: str) -> str:
    """``document`` with the text between the result markers replaced by ``section`` (appended if unmarked)."""
    block = f"{SECTION_START}\n{section}\n{SECTION_END}"
    if document is None:
        return f"# Fine-tuning\n\n{block}\n"
    start, end = document.find(SECTION_START), document.find(SECTION_END)
    if start < 0 or end < start:
        return document.rstrip("\n") + f"\n\n## Results\n\n{block}\n"
    return document[:start] + block + document[end + len(SECTION_END):]


def named_checkpoint(text: str) -> tuple[str, str]:
    """``NAME=CHECKPOINT`` of ``--pretrained``: a name and an existing file (absolute)."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or name.strip() == RANDOM_INIT:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=CHECKPOINT with a NAME other than '{RANDOM_INIT}' "
                                         "(always included)")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{name}: no such file {path!r}; pre-train one with `python -m monai.bundle run "
                                         "training --config_file configs/train.json ...` (its models/model.pt)")
    return name.strip(), str(Path(path).resolve())


def config_file(text: str) -> str:
    """An ``--extra_config`` file, repository-relative where it lies in the repository."""
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such file {text!r}")
    return _repo_relative(Path(text))


def dataset_folder(text: str) -> Path:
    """A ``--dataset_dir`` with a datalist, absolute."""
    folder = Path(text).resolve()
    if not (folder / "datalist.json").is_file():
        raise argparse.ArgumentTypeError(f"no datalist.json in {folder}; make one with "
                                         f"`python scripts/make_demo_data.py --out {folder}`")
    return folder


def label_fraction(text: str) -> float:
    fraction = float(text)
    if not 0.0 < fraction <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: a label fraction is above 0 and at most 1, e.g. 0.01 0.1 1.0")
    return fraction


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--dataset_dir", type=dataset_folder, required=True, help="folder with datalist.json")
    parser.add_argument("--pretrained", action="append", default=[], type=named_checkpoint, metavar="NAME=CHECKPOINT",
                        help="a pre-training checkpoint to fine-tune from (repeatable), e.g. "
                             f"medfilip=models/model.pt; '{RANDOM_INIT}' is always added")
    parser.add_argument("--fractions", type=label_fraction, nargs="+", default=[0.01, 0.1, 1.0],
                        help="label fractions in (0, 1] (default: 0.01 0.1 1.0)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="fine-tuning modes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default: 0)")
    parser.add_argument("--output", type=lambda text: Path(text).resolve(), required=True,
                        help="folder for runs/ and results.{json,md,png}")
    parser.add_argument("--extra_config", action="append", default=[], type=config_file,
                        help="config layered on every run (repeatable): the tower overrides of the checkpoints")
    parser.add_argument("--override", action="append", default=[], type=override_pair(OWN_KEYS), metavar="KEY=VALUE",
                        help="config override for every run (repeatable), e.g. max_epochs=5")
    parser.add_argument("--docs_dir", type=Path, help=f"also write {DOCS_STEM}.png and the results of {DOCS_STEM}.md")
    args = parser.parse_args(argv)
    names = [name for name, _ in args.pretrained]
    for option, values in (("--pretrained names", names), ("--fractions", args.fractions), ("--modes", args.modes),
                           ("--seeds", args.seeds)):
        if len(set(values)) != len(values):
            parser.error(f"{option} must not repeat a value")
    return args


def run_grid(
    runs: Sequence[Run],
    args: argparse.Namespace,
    describe: Callable[[Any], str],
    execute_run: Callable[..., None],
    row_of: Callable[[Any], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Run (or skip, when finished with the same settings) every run; results.json grows after each.

    ``describe`` names a run in the progress lines, ``execute_run`` trains and evaluates it (as
    ``execute``), ``row_of`` reads its result row (as ``result_row``): compare_segmentation.py
    drives its own runs through the same loop.
    """
    rows: list[dict[str, Any]] = []
    for index, run in enumerate(runs, start=1):
        label = f"[{index}/{len(runs)}] {describe(run)}"
        overrides = run.overrides(args.override)
        settings = run_settings(run, args.dataset_dir, overrides)
        if run.metrics.is_file() and load_record(run, settings) is not None:
            print(f"{label}: done earlier ({run.metrics} exists), skipped", flush=True)
        else:
            execute_run(run, settings, args.dataset_dir, overrides, label)
        rows.append(row_of(run))
        write_json_atomic(args.output / "results.json", rows)
    return rows


def describe_run(run: FinetuneRun) -> str:
    return f"{run.variant} {run.mode} {fraction_name(run.fraction)} seed {run.seed}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "scripts/compare_finetuning.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        rows = run_grid(plan_runs(args), args, describe_run, execute, result_row)
    except RunFailed as failure:
        print(f"compare_finetuning.py: {failure}", file=sys.stderr, flush=True)
        return 1

    dataset = dataset_info(args.dataset_dir)
    plot_auc(rows, args, args.output / "results.png")
    note = "This file and results.png are written by `scripts/compare_finetuning.py`."
    with atomic_open(args.output / "results.md") as handle:
        handle.write(f"# Fine-tuning comparison\n\n{note}\n\n{summary_markdown(rows, args, dataset, command, 'results.png')}")
    written = [args.output / "results.json", args.output / "results.md", args.output / "results.png"]
    if args.docs_dir is not None:
        document = args.docs_dir / f"{DOCS_STEM}.md"
        section = ("Regenerated by `scripts/compare_finetuning.py --docs_dir`; do not edit between the markers.\n\n"
                   + summary_markdown(rows, args, dataset, command, f"{DOCS_STEM}.png"))
        existing = document.read_text(encoding="utf-8") if document.is_file() else None
        with atomic_open(document) as handle:
            handle.write(with_results_section(existing, section))
        write_bytes_atomic(args.docs_dir / f"{DOCS_STEM}.png", (args.output / "results.png").read_bytes())
        written += [document, args.docs_dir / f"{DOCS_STEM}.png"]
    print((args.output / "results.md").read_text(encoding="utf-8"))
    print("wrote " + ", ".join(map(str, written)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
