"""Metrics: classification metrics with validation-chosen thresholds, retrieval recall, and evaluation reports."""

from .auc import ScorableMacroROCAUCMetric
from .classification import classification_metrics, max_f1_thresholds, plot_roc_curves
from .linear_probe import linear_probe_aucs, linear_probe_report
from .retrieval import chance_recall_at_k, mean_text_embedding, recall_at_k, relevance_from_labels, rerank_top_k
from .zero_shot_report import bootstrap_auc_intervals, preset_categories, retrieval_report, zero_shot_report

__all__ = [
    "ScorableMacroROCAUCMetric",
    "bootstrap_auc_intervals",
    "chance_recall_at_k",
    "classification_metrics",
    "linear_probe_aucs",
    "linear_probe_report",
    "max_f1_thresholds",
    "mean_text_embedding",
    "plot_roc_curves",
    "preset_categories",
    "recall_at_k",
    "relevance_from_labels",
    "rerank_top_k",
    "retrieval_report",
    "zero_shot_report",
]
