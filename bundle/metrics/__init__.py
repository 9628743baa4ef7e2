"""Metrics: classification metrics with validation-chosen thresholds, and evaluation reports."""

from .auc import ScorableMacroROCAUCMetric
from .classification import classification_metrics, max_f1_thresholds, plot_roc_curves
from .zero_shot_report import zero_shot_report

__all__ = [
    "ScorableMacroROCAUCMetric",
    "classification_metrics",
    "max_f1_thresholds",
    "plot_roc_curves",
    "zero_shot_report",
]
