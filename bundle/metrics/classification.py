"""Multi-label classification metrics with thresholds chosen on a separate split.

Scores are probabilities ``[N, C]`` (one column per category) and labels are binary ``[N, C]``.
AUC and the confusion-matrix metrics come from MONAI; scikit-learn provides the curves.
Thresholds are always chosen on validation scores and applied unchanged to test scores:
choosing them on the test split (as MedFILIP's released code does) inflates F1 and accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from monai.metrics import compute_confusion_matrix_metric, compute_roc_auc, get_confusion_matrix
from monai.utils import Average
from sklearn.metrics import precision_recall_curve, roc_curve


def _check_scores(scores: np.ndarray, labels: np.ndarray, names: Sequence[str] | None = None) -> None:
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be [N, C]")
    if names is not None and len(names) != scores.shape[1]:
        raise ValueError(f"{len(names)} category names for {scores.shape[1]} score columns")


def max_f1_thresholds(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per column, the score threshold that maximises F1 (``[C]``).

    A column without positives (a held-out category on the validation split) gets the mean of the
    other columns' thresholds: scores of one model share a scale (a probability or a cosine), so
    that is the best guess the validation data allow; 0.5 if no column has positives.
    """
    _check_scores(scores, labels)
    thresholds = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        if labels[:, c].sum() == 0:
            continue
        precision, recall, cut = precision_recall_curve(labels[:, c], scores[:, c])
        f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
        thresholds[c] = cut[int(np.argmax(f1))]
    chosen = thresholds[~np.isnan(thresholds)]
    return np.where(np.isnan(thresholds), chosen.mean() if chosen.size else 0.5, thresholds)


def column_aucs(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of each column, ``[C]`` (NaN for a column whose labels are all one class)."""
    _check_scores(scores, labels)
    y_pred, y = torch.as_tensor(scores, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.float32)
    return np.array([float(compute_roc_auc(y_pred[:, c], y[:, c], average=Average.NONE))
                     if 0 < labels[:, c].sum() < len(labels) else float("nan") for c in range(labels.shape[1])])  # fmt: skip


def classification_metrics(
    scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """AUC, F1, accuracy, sensitivity and specificity per category and their macro mean.

    Returns ``{category: {metric: value}, ..., "macro": {...}}``; a category whose labels are
    all one class gets NaN AUC and is left out of the macro AUC.
    """
    _check_scores(scores, labels, names)
    y_pred, y = torch.as_tensor(scores, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.float32)
    predicted = (y_pred >= torch.as_tensor(thresholds, dtype=torch.float32)).float()
    confusion = get_confusion_matrix(predicted, y, include_background=True).sum(dim=0, keepdim=True)
    per_metric = {
        name: compute_confusion_matrix_metric(name, confusion)[0].numpy()
        for name in ("f1 score", "accuracy", "sensitivity", "specificity")
    }
    aucs = column_aucs(scores, labels)
    results: dict[str, dict[str, float]] = {}
    for c, category in enumerate(names):
        results[category] = {
            "auc": float(aucs[c]),
            "f1": float(per_metric["f1 score"][c]),
            "accuracy": float(per_metric["accuracy"][c]),
            "sensitivity": float(per_metric["sensitivity"][c]),
            "specificity": float(per_metric["specificity"][c]),
            "threshold": float(thresholds[c]),
            "positives": int(labels[:, c].sum()),
        }
    keys = ("auc", "f1", "accuracy", "sensitivity", "specificity")
    results["macro"] = {key: float(np.nanmean([results[c][key] for c in names])) for key in keys}
    return results


def plot_roc_curves(
    scores: np.ndarray, labels: np.ndarray, names: Sequence[str], path: str | Path, title: str = "ROC"
) -> Path:
    """Draw one ROC curve per category (with its AUC in the legend) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _check_scores(scores, labels, names)
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for c, name in enumerate(names):
        if not 0 < labels[:, c].sum() < len(labels):
            continue
        fpr, tpr, _ = roc_curve(labels[:, c], scores[:, c])
        auc = float(compute_roc_auc(torch.as_tensor(scores[:, c]), torch.as_tensor(labels[:, c])))
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} ({auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
