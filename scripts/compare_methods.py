"""Train and evaluate method variants on one data set with the same settings, then tabulate and plot them.

    python scripts/compare_methods.py --dataset_dir data/synthcxr \\
        --variants clip_baseline,medfilip,no_iki,no_field_masking,no_ssm,no_itm --seeds 0 1 \\
        --output runs/compare [--extra_config tests/configs/tiny_train.json] [--override max_epochs=3 ...] \\
        [--docs_dir docs]

A variant name X is a config layered on the full method: ``medfilip`` is ``configs/train.json``
alone, any other X is ``configs/train.json`` + ``configs/X.json`` (then the ``--extra_config``
files, the same for every variant). Each (variant, seed) run goes through the real CLI in its
own folder ``OUT/runs/<variant>_seed<k>/``: ``python -m monai.bundle run training`` (fresh, with
``--resume false``; checkpoints in ``models/``, MLflow store and logs in ``eval/``), then
``python -m monai.bundle run`` with ``configs/evaluate.json`` (zero-shot classification and
retrieval on the test split, ``eval/zero_shot_metrics.json``). ``--override KEY=VALUE`` options
reach both commands of every run as ``--KEY VALUE``.

The script can be stopped and started again: a run whose metrics JSON exists is skipped, and one
whose training finished is only evaluated. ``OUT/results.json`` (one row per run) is rewritten
atomically after every run; ``OUT/results.md`` (mean +- std over seeds) and ``OUT/results.png``
(seen/unseen macro-AUC) at the end. ``--docs_dir`` also writes ``method_comparison.md`` and
``method_comparison.png`` there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundle.io import atomic_open, write_bytes_atomic, write_json_atomic  # noqa: E402
from bundle.tables import ABNORMAL_AUC, LINEAR_PROBE_AUC  # noqa: E402

FULL_METHOD = "medfilip"
BASE_CONFIG = "configs/train.json"
EVALUATE_CONFIG = "configs/evaluate.json"
METRICS_FILE = "zero_shot_metrics.json"
RECORD_FILE = "run.json"
# the script owns these per-run settings; an --override of them would break the run layout or the fresh start
RESERVED_KEYS = ("dataset_dir", "ckpt_dir", "output_dir", "seed", "resume", "config_file", "meta_file", "logging_file")
STDERR_TAIL_LINES = 40
RETRIEVAL_DIRECTIONS = ("image_to_text", "text_to_image")


class RunFailed(RuntimeError):
    """A CLI command of one run exited with an error; the message has its stderr tail and the command."""


@dataclass(frozen=True)
class Run:
    """One (variant, seed) training + evaluation, in its own folder under ``OUT/runs``."""

    variant: str
    seed: int
    folder: Path
    config_files: tuple[str, ...]

    @property
    def models(self) -> Path:
        return self.folder / "models"

    @property
    def eval_dir(self) -> Path:
        return self.folder / "eval"

    @property
    def metrics(self) -> Path:
        return self.eval_dir / METRICS_FILE

    @property
    def record(self) -> Path:
        return self.folder / RECORD_FILE

    @property
    def checkpoint(self) -> Path:
        return self.models / "model.pt"


def variant_configs(variant: str, extra_configs: Sequence[str]) -> tuple[str, ...]:
    """Config files of a variant, repository-relative where they are in the repository."""
    own = [] if variant == FULL_METHOD else [f"configs/{variant}.json"]
    return (BASE_CONFIG, *own, *extra_configs)


def known_variants() -> list[str]:
    """``medfilip`` and every ``configs/*.json`` that names a ``variant``."""
    names = [FULL_METHOD]
    for path in sorted((REPO / "configs").glob("*.json")):
        if path.name != Path(BASE_CONFIG).name and '"variant"' in path.read_text(encoding="utf-8"):
            names.append(path.stem)
    return names


def override_pair(own_keys: Sequence[str]) -> Callable[[str], tuple[str, str]]:
    """The argparse type of ``--override KEY=VALUE``: a key the script does not set itself."""

    def parse(text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or key.strip() in own_keys:
            raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE with a key this script does not set "
                                             f"({', '.join(own_keys)})")
        return key.strip(), value

    return parse


def cli_command(run: Run, dataset_dir: Path, overrides: Sequence[tuple[str, str]], evaluate: bool) -> list[str]:
    """The ``python -m monai.bundle run`` command line of one stage of a run."""
    files = (*run.config_files, EVALUATE_CONFIG) if evaluate else run.config_files
    command = [sys.executable, "-m", "monai.bundle", "run", *([] if evaluate else ["training"]),
               "--config_file", "[" + ",".join(f"'{f}'" for f in files) + "]",
               "--meta_file", "metadata.json", "--logging_file", "configs/logging.conf",
               "--dataset_dir", str(dataset_dir), "--ckpt_dir", str(run.models), "--output_dir", str(run.eval_dir),
               "--seed", str(run.seed)]
    if not evaluate:
        command += ["--resume", "false"]
    for key, value in overrides:
        command += [f"--{key}", value]
    return command


def bundle_env() -> dict[str, str]:
    """The environment of the CLI: the repository importable, no downloads, no telemetry."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("MLFLOW_DISABLE_TELEMETRY", "true"),
                       ("DO_NOT_TRACK", "true")):
        env.setdefault(key, value)
    return env


def run_cli(command: list[str], log_stem: Path, what: str) -> float:
    """Run one CLI command from the repository root, logging to ``<log_stem>.{stdout,stderr}.log``; returns its seconds."""
    stdout_log, stderr_log = log_stem.with_suffix(".stdout.log"), log_stem.with_suffix(".stderr.log")
    start = time.perf_counter()
    with open(stdout_log, "w", encoding="utf-8") as out, open(stderr_log, "w", encoding="utf-8") as err:
        code = subprocess.run(command, cwd=REPO, env=bundle_env(), stdout=out, stderr=err).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        tail = "\n".join(stderr_log.read_text(encoding="utf-8", errors="replace").splitlines()[-STDERR_TAIL_LINES:])
        raise RunFailed(
            f"{what} failed (exit code {code}) after {seconds:.0f} s. Last lines of its stderr ({stderr_log}):\n"
            f"{tail}\n\nFull output: {stdout_log}\nRerun this step with:\n"
            f"  cd {shlex.quote(str(REPO))} && {shlex.join(command)}"
        )
    return seconds


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def run_settings(run: Run, dataset_dir: Path, overrides: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """What makes two runs comparable; stored in the run record and checked before a run is reused."""
    return {"config_files": list(run.config_files), "overrides": [f"{k}={v}" for k, v in overrides],
            "dataset_dir": str(dataset_dir)}


def load_record(run: Run, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The run's record (None before its training finished); refuses a folder made with other settings."""
    if not run.record.is_file():
        return None
    record = read_json(run.record)
    recorded = {k: record.get(k) for k in settings}
    if recorded != settings:
        raise RunFailed(f"{run.folder} holds a run made with other settings ({recorded}, now {settings}); "
                        "give another --output or delete that folder")
    return record


def execute(run: Run, settings: dict[str, Any], dataset_dir: Path, overrides: Sequence[tuple[str, str]],
            label: str) -> None:
    """Train (unless a finished training with the same settings is recorded) and evaluate one run."""
    record = load_record(run, settings)
    if record is None or not run.checkpoint.is_file():
        run.record.unlink(missing_ok=True)  # a record stands for a finished training only
        run.eval_dir.mkdir(parents=True, exist_ok=True)
        command = cli_command(run, dataset_dir, overrides, evaluate=False)
        train_seconds = run_cli(command, run.folder / "training", f"{label} training")
        record = {**settings, "train_seconds": round(train_seconds, 2), "train_command": shlex.join(command)}
        write_json_atomic(run.record, record)
        print(f"{label}: trained in {train_seconds:.1f} s", flush=True)
    else:
        print(f"{label}: training finished in an earlier call ({run.record}); evaluating only", flush=True)
    command = cli_command(run, dataset_dir, overrides, evaluate=True)
    eval_seconds = run_cli(command, run.folder / "evaluate", f"{label} evaluation")
    write_json_atomic(run.record, {**record, "eval_seconds": round(eval_seconds, 2), "eval_command": shlex.join(command)})
    print(f"{label}: evaluated in {eval_seconds:.1f} s", flush=True)


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: an undefined AUC (a category without positives) is written as null."""
    return None if value is None or math.isnan(value) else float(value)


def result_row(run: Run) -> dict[str, Any]:
    """One row of results.json from a finished run's metrics JSON and run record."""
    metrics = read_json(run.metrics)
    record = read_json(run.record) if run.record.is_file() else {}
    unseen = metrics.get("unseen", {})
    row: dict[str, Any] = {
        "variant": run.variant,
        "seed": run.seed,
        "seen_macro_auc": finite_or_none(metrics["seen"]["macro"]["auc"]),
        "unseen_macro_auc": finite_or_none(unseen["macro"]["auc"]) if unseen else None,
        "unseen_per_category": {c: finite_or_none(m["auc"]) for c, m in unseen.items() if c != "macro"},
        # the same AUCs over the abnormal test studies only (bundle.metrics.zero_shot_report says why)
        "seen_macro_auc_abnormal_studies": finite_or_none(metrics["seen"]["macro"].get(ABNORMAL_AUC)),
        "unseen_macro_auc_abnormal_studies": finite_or_none(unseen["macro"].get(ABNORMAL_AUC)) if unseen else None,
        # a supervised linear read-out of the same image embeddings: what the image features allow
        "seen_macro_auc_linear_probe": finite_or_none(metrics["seen"]["macro"].get(LINEAR_PROBE_AUC)),
        "unseen_macro_auc_linear_probe": finite_or_none(unseen["macro"].get(LINEAR_PROBE_AUC)) if unseen else None,
    }
    retrieval = metrics["retrieval"]
    for direction in RETRIEVAL_DIRECTIONS:
        row.update({f"{direction}_{k}": v for k, v in retrieval[direction].items()})
    if "itm_reranked" in retrieval:
        row.update({f"itm_image_to_text_{k}": v for k, v in retrieval["itm_reranked"]["image_to_text"].items()})
    row.update(train_seconds=record.get("train_seconds"), config_files=list(run.config_files),
               checkpoint=str(run.checkpoint), metrics_file=str(run.metrics))
    return row


def mean_std(values: Sequence[float | None], digits: int = 3) -> str:
    """``mean ± std`` over seeds (sample std), ``mean`` alone for one seed, ``n/a`` without values."""
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    mean = statistics.fmean(present)
    return f"{mean:.{digits}f} ± {statistics.stdev(present):.{digits}f}" if len(present) > 1 else f"{mean:.{digits}f}"


def summary_markdown(rows: list[dict[str, Any]], variants: Sequence[str], dataset: dict[str, Any],
                     command: str, image: str, note: str) -> str:
    """The comparison table (mean ± std over seeds per variant), the data set, the command and the plot."""
    recall_keys = [k for k in rows[0] if k.startswith(RETRIEVAL_DIRECTIONS[0])]
    recall_keys += [k for k in rows[0] if k.startswith(RETRIEVAL_DIRECTIONS[1])]
    itm_keys = sorted({k for r in rows for k in r if k.startswith("itm_")}, key=lambda k: int(k.rsplit("@", 1)[1]))
    short = {"image_to_text_": "I→T ", "text_to_image_": "T→I ", "itm_image_to_text_": "ITM I→T "}

    def header(key: str) -> str:
        for prefix, name in short.items():
            if key.startswith(prefix):
                return name + key[len(prefix):].replace("recall", "R")
        return key

    columns = ["seen_macro_auc", "unseen_macro_auc", "seen_macro_auc_abnormal_studies",
               "unseen_macro_auc_abnormal_studies", "seen_macro_auc_linear_probe", "unseen_macro_auc_linear_probe",
               *recall_keys, *itm_keys, "train_seconds"]
    names = ["seen macro-AUC", "unseen macro-AUC", "seen, abnormal studies", "unseen, abnormal studies",
             "seen, linear probe", "unseen, linear probe", *(header(k) for k in recall_keys + itm_keys), "train s"]
    unseen = list(dataset.get("unseen_categories", []))
    lines = [
        "# Method comparison",
        "",
        note,
        "",
        f"Data set: `{dataset['path']}` ({dataset.get('name', 'unnamed')}, generator seed {dataset.get('seed', 'n/a')}, "
        f"{dataset['n_test']} test studies); held-out (unseen) categories: {', '.join(unseen) or 'none'}. "
        "Every variant is trained with the same data, steps and settings; values are mean ± sample standard "
        "deviation over the seeds (the mean alone for one seed). AUC chance level is 0.5; retrieval relevance and "
        "the ITM re-ranking are defined in docs/evaluation.md (ITM columns only for variants with an ITM head). "
        "The \"abnormal studies\" columns are the same macro-AUCs over the test studies with at least one finding: "
        "normal studies are easy negatives for any finding prompt, so they show whether a variant recognises "
        "the finding or only tells abnormal from normal. The \"linear probe\" columns are not zero-shot: a "
        "logistic regression on the same frozen image embeddings, trained on the test labels (5-fold "
        "cross-validation), shows how far the image features separate the categories at all; a zero-shot "
        "AUC far below it is the text side's shortfall, one close to it is bounded by the image features.",
        "",
        "Made by:",
        "",
        "```",
        command,
        "```",
        "",
        "| variant | seeds | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        if not mine:
            continue
        cells = [mean_std([r.get(c) for r in mine], digits=0 if c == "train_seconds" else 3)
                 if any(c in r for r in mine) else "–" for c in columns]
        lines.append(f"| {variant} | {len(mine)} | " + " | ".join(cells) + " |")
    if unseen:
        lines += ["", "Zero-shot AUC per unseen category (test split):", "",
                  "| variant | " + " | ".join(unseen) + " |", "|---|" + "---:|" * len(unseen)]
        for variant in variants:
            mine = [r for r in rows if r["variant"] == variant]
            if mine:
                lines.append(f"| {variant} | " + " | ".join(
                    mean_std([r["unseen_per_category"].get(c) for r in mine]) for c in unseen) + " |")
    lines += ["", f"![Seen and unseen macro-AUC per variant]({image})", ""]
    return "\n".join(lines)


def plot_auc(rows: list[dict[str, Any]], variants: Sequence[str], path: Path) -> None:
    """Bar plot of seen and unseen macro-AUC per variant (mean over seeds, std error bars, chance line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [v for v in variants if any(r["variant"] == v for r in rows)]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(shown) + 3), 4.0))
    width = 0.38
    for offset, (key, name) in zip((-width / 2, width / 2), (("seen_macro_auc", "seen"), ("unseen_macro_auc", "unseen"))):
        means, stds = [], []
        for variant in shown:
            values = [r[key] for r in rows if r["variant"] == variant and r[key] is not None]
            means.append(statistics.fmean(values) if values else math.nan)
            stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        ax.bar([i + offset for i in range(len(shown))], means, width, yerr=stds, capsize=4, label=f"{name} categories")
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(shown)), shown, rotation=20, ha="right")
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("zero-shot macro-AUC (test)")
    ax.set_title("Seen and unseen macro-AUC per variant (mean ± std over seeds)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # outside: bars may reach any height
    fig.tight_layout()
    with atomic_open(path, binary=True) as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def dataset_info(dataset_dir: Path) -> dict[str, Any]:
    datalist = read_json(dataset_dir / "datalist.json")
    info = {k: datalist[k] for k in ("name", "seed", "unseen_categories") if k in datalist}
    return {**info, "path": _repo_relative(dataset_dir), "n_test": len(datalist.get("test", []))}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--dataset_dir", type=Path, required=True, help="folder with datalist.json")
    parser.add_argument("--variants", required=True, help=f"comma-separated, e.g. clip_baseline,{FULL_METHOD},no_iki")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default: 0)")
    parser.add_argument("--output", type=Path, required=True, help="folder for runs/ and results.{json,md,png}")
    parser.add_argument("--extra_config", action="append", default=[], type=Path,
                        help="config layered on every variant (repeatable), e.g. tests/configs/tiny_train.json")
    parser.add_argument("--override", action="append", default=[], type=override_pair(RESERVED_KEYS),
                        metavar="KEY=VALUE", help="config override for every run (repeatable), e.g. max_epochs=3")
    parser.add_argument("--docs_dir", type=Path, help="also write method_comparison.{md,png} there")
    parser.add_argument("--only_existing", action="store_true",
                        help="train nothing: tabulate the runs of the grid that have finished (e.g. ablations run "
                             "with fewer seeds by another invocation into the same --output)")
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    known = known_variants()
    unknown = [v for v in args.variants if v not in known]
    if unknown or not args.variants:
        parser.error(f"--variants: unknown {unknown or 'none given'}; the variants are {', '.join(known)}")
    if len(set(args.variants)) != len(args.variants) or len(set(args.seeds)) != len(args.seeds):
        parser.error("--variants and --seeds must not repeat a value")
    missing = [str(p) for p in args.extra_config if not p.is_file()]
    if missing:
        parser.error(f"--extra_config: no such file {', '.join(missing)}")
    args.extra_config = [_repo_relative(p) for p in args.extra_config]
    args.dataset_dir = args.dataset_dir.resolve()
    if not (args.dataset_dir / "datalist.json").is_file():
        parser.error(f"--dataset_dir: no datalist.json in {args.dataset_dir}; "
                     f"make one with `python scripts/make_demo_data.py --out {args.dataset_dir}`")
    args.output = args.output.resolve()
    return args


def _repo_relative(path: Path) -> str:
    """A config path as the CLI (run from the repository root) should read it."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "scripts/compare_methods.py", *(sys.argv[1:] if argv is None else argv)])
    runs = [Run(variant, seed, args.output / "runs" / f"{variant}_seed{seed}", variant_configs(variant, args.extra_config))
            for variant in args.variants for seed in args.seeds]
    results = args.output / "results.json"
    rows: list[dict[str, Any]] = []
    for index, run in enumerate(runs, start=1):
        label = f"[{index}/{len(runs)}] {run.variant} seed {run.seed}"
        settings = run_settings(run, args.dataset_dir, args.override)
        start = time.perf_counter()
        try:
            if run.metrics.is_file():
                load_record(run, settings)
                print(f"{label}: done earlier ({run.metrics} exists), skipped", flush=True)
            elif args.only_existing:
                print(f"{label}: not run, left out of the table (--only_existing)", flush=True)
                continue
            else:
                execute(run, settings, args.dataset_dir, args.override, label)
                print(f"{label}: finished in {time.perf_counter() - start:.1f} s", flush=True)
        except RunFailed as failure:
            print(f"compare_methods.py: {failure}", file=sys.stderr, flush=True)
            return 1
        rows.append(result_row(run))
        write_json_atomic(results, rows)

    dataset = dataset_info(args.dataset_dir)
    outputs = [(args.output, "results", "This file and results.png are written by `scripts/compare_methods.py`.")]
    if args.docs_dir is not None:
        outputs.append((args.docs_dir, "method_comparison",
                        "This file and method_comparison.png are regenerated by `scripts/compare_methods.py "
                        "--docs_dir`; do not edit them by hand."))
    plot_auc(rows, args.variants, args.output / "results.png")
    for folder, stem, note in outputs:
        text = summary_markdown(rows, args.variants, dataset, command, f"{stem}.png", note)
        with atomic_open(folder / f"{stem}.md") as handle:
            handle.write(text)
        if folder != args.output:
            write_bytes_atomic(folder / f"{stem}.png", (args.output / "results.png").read_bytes())
    print((args.output / "results.md").read_text(encoding="utf-8"))
    written = [results] + [folder / f"{stem}{suffix}" for folder, stem, _ in outputs for suffix in (".md", ".png")]
    print("wrote " + ", ".join(map(str, written)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
