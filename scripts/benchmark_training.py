"""Framework overhead of the bundle's training step: MONAI/Ignite engine vs a bare PyTorch loop.

Both loops train the network that ``configs/train.json`` declares, with its loss, optimiser,
learning-rate schedule and the same DataLoader (same transforms, same batches), so the only
difference is the engine: SupervisedTrainer with the bundle's handlers against a hand-written
``for batch in loader`` loop. A third row times the bare loop over batches already in memory,
to show what the data pipeline itself costs on this machine.

    python scripts/benchmark_training.py --data-dir data/synthcxr [--items 320 --epochs 3 --repeats 2]

Prints a Markdown table (images/s, ratio bundle/bare). The first epoch of every run is a warm-up
and is not timed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from ignite.engine import Events  # noqa: E402
from monai.bundle import ConfigWorkflow  # noqa: E402


def build_workflow(args: argparse.Namespace, workdir: Path) -> ConfigWorkflow:
    workflow = ConfigWorkflow(
        config_file=str(REPO / "configs/train.json"),
        meta_file=str(REPO / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        bundle_root=str(REPO),
        dataset_dir=str(args.data_dir),
        ckpt_dir=str(workdir / "models"),
        output_dir=str(workdir / "eval"),
        max_epochs=args.epochs,
        val_interval=args.epochs + 1,  # no validation inside the timed epochs
        max_train_items=args.items,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        track_mlflow=False,
        resume=False,
    )
    workflow.initialize()
    return workflow


def time_bundle_trainer(workflow: ConfigWorkflow) -> float:
    """Images per second of SupervisedTrainer over the epochs after the first."""
    trainer = workflow.parser.get_parsed_content("train#trainer", lazy=False)
    marks: dict[int, float] = {}
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: marks.__setitem__(engine.state.epoch, time.perf_counter()))
    trainer.run()
    images = (trainer.state.max_epochs - 1) * trainer.state.epoch_length * workflow.parser["batch_size"]
    return images / (marks[trainer.state.max_epochs] - marks[1])


def time_bare_loop(workflow: ConfigWorkflow, batches: list | None = None) -> float:
    """Images per second of a hand-written loop over the same network, loss, optimiser and batches."""
    parser = workflow.parser
    network = parser.get_parsed_content("network", lazy=False)
    optimizer = torch.optim.AdamW(network.parameters(), lr=parser["learning_rate"], weight_decay=parser["weight_decay"])
    loss_function = parser.get_parsed_content("loss", lazy=False)
    device, epochs = parser.get_parsed_content("device"), parser["max_epochs"]
    prepare_batch = parser.get_parsed_content("train#prepare_batch")
    loader = batches if batches is not None else parser.get_parsed_content("train#dataloader")
    network.train()
    images, start = 0, 0.0
    for epoch in range(epochs):
        if epoch == 1:
            start, images = time.perf_counter(), 0
        for batch in loader:
            image, target, args, kwargs = prepare_batch(batch, device)
            loss = loss_function(network(image, *args, **kwargs), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images += image.shape[0]
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO / "data/synthcxr", help="folder with datalist.json")
    parser.add_argument("--items", type=int, default=320, help="training images used (first N of the split)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is a warm-up")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each loop; the median is shown")
    parser.add_argument("--num-workers", type=int, default=2)
    args = parser.parse_args()
    if not (args.data_dir / "datalist.json").is_file():
        sys.exit(f"no datalist.json in {args.data_dir}: run `python scripts/make_demo_data.py --out {args.data_dir}` first")
    if args.epochs < 2:
        sys.exit("--epochs must be at least 2 (the first epoch is not timed)")

    results: dict[str, list[float]] = {"bundle": [], "bare": [], "bare_in_memory": []}
    with tempfile.TemporaryDirectory() as workdir:
        workflow = build_workflow(args, Path(workdir))
        in_memory = list(workflow.parser.get_parsed_content("train#dataloader"))
        for repeat in range(args.repeats):
            torch.manual_seed(repeat)
            results["bare"].append(time_bare_loop(workflow))
            results["bundle"].append(time_bundle_trainer(workflow))
            results["bare_in_memory"].append(time_bare_loop(workflow, in_memory))
    median = {name: statistics.median(values) for name, values in results.items()}
    threads = torch.get_num_threads()
    print(f"\nTraining-step throughput, {args.items} images, batch {args.batch_size}, "
          f"{args.epochs - 1} timed epochs x {args.repeats} runs, {threads} torch threads, {args.num_workers} workers\n")
    print("| loop | images/s (median) | runs | ratio to bare loop |")
    print("|---|---:|---|---:|")
    for name, label in (("bare", "bare PyTorch loop, same DataLoader"), ("bundle", "bundle: SupervisedTrainer + handlers"),
                        ("bare_in_memory", "bare PyTorch loop, batches in memory")):
        runs = ", ".join(f"{v:.1f}" for v in results[name])
        print(f"| {label} | {median[name]:.1f} | {runs} | {median[name] / median['bare']:.3f} |")
    ratio = median["bundle"] / median["bare"]
    verdict = "meets" if ratio >= 0.8 else "MISSES"
    print(f"\nbundle/bare ratio = {ratio:.3f} (framework overhead {100 * (1 - ratio):.1f}%); {verdict} the target ratio >= 0.8")


if __name__ == "__main__":
    main()
