"""The zero-shot evaluation report: thresholds from validation, metrics on test, JSON + ROC plot + table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from ..engines.zero_shot import stack_outputs
from ..io import write_json_atomic
from .classification import classification_metrics, max_f1_thresholds, plot_roc_curves

METRIC_COLUMNS = ("auc", "f1", "accuracy", "sensitivity", "specificity")


def format_table(results: dict[str, dict[str, float]], title: str) -> str:
    """A Markdown table of per-category metrics, macro row last."""
    lines = [f"### {title}", "", "| category | positives | " + " | ".join(METRIC_COLUMNS) + " |",
             "|---|---:|" + "---:|" * len(METRIC_COLUMNS)]
    for category, row in results.items():
        cells = ["" if math.isnan(row[m]) else f"{row[m]:.3f}" for m in METRIC_COLUMNS]
        positives = "" if category == "macro" else str(row["positives"])
        name = "**macro**" if category == "macro" else category
        lines.append(f"| {name} | {positives} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def zero_shot_report(
    validation_outputs: Sequence[Any],
    test_outputs: Sequence[Any],
    categories: Sequence[str],
    unseen_categories: Sequence[str],
    output_dir: str | Path,
) -> dict[str, Any]:
    """Score the test split with per-category thresholds chosen on the validation split.

    Args:
        validation_outputs, test_outputs: what ``EpochOutputStore`` collected on each split
            (``(pred, label)`` per iteration, columns in ``categories`` order).
        categories: the scored category ids.
        unseen_categories: the ones held out of training; reported in their own group.
        output_dir: where ``zero_shot_metrics.json`` and ``zero_shot_roc.png`` go.

    Categories with no validation positive (the unseen ones, by construction) keep the neutral
    threshold 0.5, where the positive and negative prompts are equally likely.
    """
    val_scores, val_labels = stack_outputs(validation_outputs)
    test_scores, test_labels = stack_outputs(test_outputs)
    thresholds = max_f1_thresholds(val_scores, val_labels)
    report: dict[str, Any] = {"thresholds_from": "validation", "n_validation": len(val_scores), "n_test": len(test_scores)}
    groups = {"seen": [c for c in categories if c not in unseen_categories], "unseen": list(unseen_categories)}
    tables = []
    for group, members in groups.items():
        columns = [categories.index(c) for c in members if c in categories]
        if not columns:
            continue
        results = classification_metrics(
            test_scores[:, columns], test_labels[:, columns], thresholds[columns], [categories[c] for c in columns]
        )
        report[group] = results
        tables.append(format_table(results, f"Zero-shot classification, {group} categories (test split)"))
    output_dir = Path(output_dir)
    write_json_atomic(output_dir / "zero_shot_metrics.json", report)
    plot_roc_curves(test_scores, test_labels, list(categories), output_dir / "zero_shot_roc.png",
                    title="Zero-shot ROC on the test split")
    report["table"] = "\n\n".join(tables)
    print(report["table"], flush=True)
    return report
