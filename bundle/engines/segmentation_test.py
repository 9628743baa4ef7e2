"""The held-out test split of a segmentation run, scored once at the end with the best model.

``configs/train_segmentation.json`` ends its ``training`` with ``score_test_split``: the evaluator
``test#evaluator`` loads the best checkpoint (by validation Dice) and runs MONAI's ``DiceMetric``
and ``HausdorffDistance`` over the test split with ``save_details``, so that the report holds every
image's score and the worst one besides the mean. Nothing is tuned on these numbers: the test
split is read after training has ended.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import torch
from ignite.engine import Engine

from ..io import write_json_atomic

LOGGER = logging.getLogger(__name__)


def _finite(value: Any) -> float | None:
    """A JSON number, or None for NaN (MONAI scores an image with an empty truth mask as NaN)."""
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else round(value, 4)


def _run_times(engine: Engine) -> dict[str, Any]:
    """The epochs trained in all, and the seconds of this invocation (a resumed run's earlier ones are not known)."""
    return {"epochs": engine.state.epoch, "seconds": round(engine.state.times.get("COMPLETED") or 0.0, 1)}


def score_test_split(
    evaluator: Engine,
    items: Sequence[dict[str, Any]],
    output_file: str | Path,
    trainer: Engine | None = None,
    validator: Engine | None = None,
) -> dict[str, Any] | None:
    """Run ``evaluator`` over the test ``items`` and write the report JSON to ``output_file``.

    Args:
        evaluator: a ``SupervisedEvaluator`` whose metrics keep their per-image details
            (``save_details``); the worst image is reported for its key metric (Dice).
        items: the test split, in the evaluator's order (for the image names of the report).
        output_file: the report JSON (written atomically).
        trainer, validator: the run's trainer and validation evaluator, for the epochs, training
            time and best validation score in the report (the validation score only when this
            invocation validated).

    Returns:
        The report (also written), or None when there is no test split (nothing is written).
    """
    if not items:
        LOGGER.warning("the datalist has no test split: the run ends without a test score")
        return None
    # at the trainer's epoch, as validation runs: its log then reads as the last epoch's, not as a new run's first
    evaluator.run(global_epoch=trainer.state.epoch if trainer is not None else 1)
    metrics = evaluator.state.metrics
    details = {name: torch.as_tensor(values).float().reshape(len(values), -1).nanmean(dim=1)
               for name, values in evaluator.state.metric_details.items()}
    key = evaluator.state.key_metric_name
    scored = len(details[key])
    # with skip_unreadable_images, skipped files shift the order: then the scores cannot be named
    names = [str(item["image"]) for item in items] if scored == len(items) else [None] * scored
    report: dict[str, Any] = {
        "test": {
            "items": scored,
            **{name: _finite(value) for name, value in metrics.items()},
            f"min_{key}": _finite(details[key].nan_to_num(nan=math.inf).min()) if scored else None,
            "per_image": [{"image": name, **{metric: _finite(values[i]) for metric, values in details.items()}}
                          for i, name in enumerate(names)],
        }
    }
    if validator is not None and validator.state.best_metric_epoch > 0:  # none when a finished run was resumed
        report["validation"] = {"best_" + validator.state.key_metric_name: _finite(validator.state.best_metric),
                                "best_epoch": validator.state.best_metric_epoch}
    if trainer is not None:
        report["training"] = _run_times(trainer)
    write_json_atomic(Path(output_file), report)
    summary = ", ".join(f"{name} {value}" for name, value in report["test"].items() if name != "per_image")
    LOGGER.info(f"test split ({scored} images), best model: {summary}; per image in {output_file}")
    return report
