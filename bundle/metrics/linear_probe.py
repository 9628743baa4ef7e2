"""The linear-probe ceiling: how well a linear read-out of the frozen image embedding separates each
category when it is given the labels (cross-validated on the evaluated split).

Zero-shot recognition of a category needs an image embedding in which the category is separable and
a text embedding that points at it. This measures the first alone: a zero-shot AUC far below the
probe's is the text side's shortfall; one close to it is bounded by what the image features carry,
and no prompt can lift it. It learns from the split's labels, so it is a diagnostic, never a
zero-shot result. scikit-learn provides the cross-validated logistic regression; MONAI has none.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .classification import column_aucs

# One fixed, moderate L2 strength on standardised features, never chosen on the evaluated labels. A
# search inside each training fold (LogisticRegressionCV over 0.01/0.1/1) took 5x as long and, on the
# SynthCXR demo model, gave seen/unseen macro 0.915/0.811 where this gives 0.916/0.835.
PROBE_C = 0.1


def linear_probe_aucs(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Cross-validated ROC AUC of a logistic regression on ``features`` for each label column, ``[C]``.

    Args:
        features: ``[N, D]`` image embeddings.
        labels: ``[N, C]`` multi-hot labels (any value > 0 is positive).
        folds: stratified folds; every study is scored by the probe trained on the other folds.
        seed: the folds' shuffle.

    A column with fewer than ``folds`` positives or negatives gets NaN: too few to train and test.
    """
    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels) > 0
    if features.ndim != 2 or labels.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"expected features [N, D] and labels [N, C], got {features.shape} and {labels.shape}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    positives = labels.sum(axis=0)
    trainable = np.minimum(positives, len(labels) - positives) >= folds
    scores = np.zeros(labels.shape)
    for column in np.flatnonzero(trainable):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=2000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a separable column: the AUC is final anyway
            scores[:, column] = cross_val_predict(
                probe, features, labels[:, column], cv=splitter, method="decision_function"
            )
    return np.where(trainable, column_aucs(scores, labels.astype(np.float32)), np.nan)


def linear_probe_report(
    outputs: Sequence[tuple[Mapping[str, torch.Tensor], Any]],
    categories: Sequence[str],
    folds: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """``{category: linear-probe AUC}`` from the image embeddings and labels of a retrieval run.

    ``outputs`` is what ``EpochOutputStore`` collected from the retrieval evaluator (``(pred, label)``
    per iteration, ``pred["image_features"]`` ``[B, D]``, ``label`` ``[B, K]`` in ``categories`` order):
    the same embeddings the zero-shot scores come from.
    """
    if not outputs:
        raise ValueError("no image embeddings were collected: the evaluated split is empty")
    features = torch.cat([pred["image_features"].float().cpu() for pred, _ in outputs]).numpy()
    labels = torch.cat([torch.as_tensor(label).cpu() for _, label in outputs]).numpy()
    if labels.shape[1] != len(categories):
        raise ValueError(f"labels have {labels.shape[1]} columns for {len(categories)} categories")
    return dict(zip(categories, (float(auc) for auc in linear_probe_aucs(features, labels, folds, seed))))
