"""Markdown tables of the evaluation reports' JSON (``zero_shot_metrics.json``, ``finetune_metrics.json``).

Kept free of torch and MONAI, unlike the reports that compute the numbers, so that the scripts which
only turn a metrics file into a page (``scripts/summarize_results.py``) start in a fraction of a
second instead of the 16 s those imports take on 2 cores.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

METRIC_COLUMNS = ("auc", "f1", "accuracy", "sensitivity", "specificity")
ABNORMAL_AUC = "auc_abnormal_studies"
LINEAR_PROBE_AUC = "auc_linear_probe"
# Columns a table shows only when its rows carry them, with their headers.
OPTIONAL_COLUMNS = {ABNORMAL_AUC: "auc, abnormal studies", LINEAR_PROBE_AUC: "auc, linear probe"}


def format_table(results: dict[str, dict[str, Any]], title: str) -> str:
    """A Markdown table of per-category metrics (with the AUC's bootstrap interval, and the AUC over the
    abnormal studies and the linear probe's, where given), macro row last."""
    optional = [column for column in OPTIONAL_COLUMNS if any(column in row for row in results.values())]
    columns = (*METRIC_COLUMNS, *optional)
    headers = [OPTIONAL_COLUMNS.get(column, column) for column in columns]
    lines = [f"### {title}", "", "| category | positives | auc 95% CI | " + " | ".join(headers) + " |",
             "|---|---:|---:|" + "---:|" * len(columns)]
    for category, row in results.items():
        cells = ["" if math.isnan(row.get(m, math.nan)) else f"{row[m]:.3f}" for m in columns]
        positives = "" if category == "macro" else str(row["positives"])
        interval = row.get("auc_ci95")
        span = f"{interval[0]:.3f}–{interval[1]:.3f}" if interval and not math.isnan(interval[0]) else ""
        name = "**macro**" if category == "macro" else category
        lines.append(f"| {name} | {positives} | {span} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_retrieval_table(retrieval: Mapping[str, Any]) -> str:
    """A Markdown table of the Recall@K blocks of ``bundle.metrics.retrieval_report`` (chance level last)."""
    rows = {"image to text": retrieval["image_to_text"], "text to image": retrieval["text_to_image"]}
    if "itm_reranked" in retrieval:
        reranked = retrieval["itm_reranked"]
        rows[f"image to text, ITM re-ranked top {reranked['top_k']}"] = reranked["image_to_text"]
    rows["chance, image to text"] = retrieval["chance"]["image_to_text"]
    keys = list(retrieval["image_to_text"])
    lines = [f"### Retrieval ({retrieval['split']} split, {retrieval['n_studies']} studies)", "",
             "| direction | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |" for name, row in rows.items()]
    return "\n".join(lines)
