"""Macro ROC-AUC that skips categories the evaluated split cannot score."""

from __future__ import annotations

import warnings

import numpy as np
from monai.metrics import ROCAUCMetric
from monai.utils import Average


class ScorableMacroROCAUCMetric(ROCAUCMetric):
    """Unweighted mean of the per-category AUCs, over categories that have both classes.

    MONAI's ``ROCAUCMetric(average="macro")`` returns NaN as soon as one category has no
    positive (or no negative) in the split, which is common for rare findings on small
    validation splits; a NaN key metric would then never select a best checkpoint.
    """

    def __init__(self) -> None:
        super().__init__(average=Average.NONE)

    def aggregate(self, average: Average | str | None = None) -> float:  # type: ignore[override]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*only one unique value.*")
            per_category = np.atleast_1d(np.asarray(super().aggregate(Average.NONE), dtype=float))
        scorable = per_category[~np.isnan(per_category)]
        if scorable.size == 0:
            raise ValueError("no category has both positive and negative examples in this split: AUC is undefined")
        return float(scorable.mean())
