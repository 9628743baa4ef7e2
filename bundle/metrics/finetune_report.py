"""The fine-tuning report: per-category and macro AUC, F1 and the rest on test, thresholds from validation.

Written to ``finetune_metrics.json`` (with ``finetune_roc.png``) in the layout of the zero-shot
report (``zero_shot_metrics.json``): one group of categories per key, each with a ``macro`` row.
The groups split the categories by whether the labelled training items had a positive of them:
``trained`` (the headline macro-AUC) and ``untrained`` (e.g. SynthCXR's held-out categories,
which occur only in its test split; their outputs were never trained, so their AUC measures
nothing learned, and mixing them into the macro would blur the comparison of initialisations).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..engines.zero_shot import stack_outputs
from ..io import write_json_atomic
from ..tables import format_table
from .classification import classification_metrics, max_f1_thresholds, plot_roc_curves

METRICS_FILE = "finetune_metrics.json"
THRESHOLD_RULE = "maximum F1 per category on the validation split, applied unchanged to the test split"
GROUP_TITLES = {
    "trained": "categories with a labelled training positive",
    "untrained": "categories without a labelled training positive (outputs never trained)",
}


def finetune_report(
    validation_outputs: Sequence[Any],
    test_outputs: Sequence[Any],
    categories: Sequence[str],
    training_positives: Sequence[int],
    output_dir: str | Path,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score the test split of a fine-tuned classifier with per-category thresholds chosen on validation.

    Args:
        validation_outputs, test_outputs: what ``EpochOutputStore`` collected on each split
            (``(pred, label)`` per iteration, probabilities in ``categories`` order).
        categories: the category ids of the output channels.
        training_positives: per category, the labelled training items positive for it.
        output_dir: where ``finetune_metrics.json`` and ``finetune_roc.png`` go.
        settings: the run's settings, stored at the top of the JSON (mode, label fraction, checkpoint ...).

    Categories without a validation positive get the mean of the other categories' thresholds
    (``max_f1_thresholds``).
    """
    if len(training_positives) != len(categories):
        raise ValueError(f"{len(training_positives)} training positive counts for {len(categories)} categories")
    val_scores, val_labels = stack_outputs(validation_outputs)
    test_scores, test_labels = stack_outputs(test_outputs)
    thresholds = max_f1_thresholds(val_scores, val_labels)
    trained = [c for c, n in enumerate(training_positives) if n > 0]
    groups = {"trained": trained, "untrained": [c for c in range(len(categories)) if c not in trained]}
    report: dict[str, Any] = {
        **dict(settings or {}),
        "threshold_rule": THRESHOLD_RULE,
        "thresholds_from": "validation",
        "n_validation": len(val_scores),
        "n_test": len(test_scores),
        "training_positives": {c: int(n) for c, n in zip(categories, training_positives)},
        **{group: classification_metrics(test_scores[:, columns], test_labels[:, columns], thresholds[columns],
                                         [categories[c] for c in columns])
           for group, columns in groups.items() if columns},
    }
    tables = [format_table(report[group], f"Fine-tuned classification, {title} (test split)")
              for group, title in GROUP_TITLES.items() if group in report]
    output_dir = Path(output_dir)
    write_json_atomic(output_dir / METRICS_FILE, report)
    plot_roc_curves(test_scores, test_labels, list(categories), output_dir / "finetune_roc.png",
                    title="Fine-tuned classifier ROC on the test split")
    report["table"] = "\n\n".join(tables)
    print(report["table"], flush=True)
    return report
