"""Score report-level category labels against a reference (IU / Open-i MeSH major terms).

IU reports carry MeSH "major" terms written as ``Head/qualifier/qualifier`` separated by ``;``
(``Cardiomegaly/borderline;Pulmonary Artery/enlarged``) or ``normal``. ``MESH_TO_CATEGORY`` maps
the heads that name one of the 16 scored categories; every other head (``Lung/hypoinflation``,
``Density``, ``Cicatrix``, ``Costophrenic Angle/blunted``...) is not one of them and is ignored.
A report is positive for a category when any of its findings is present (or uncertain, when
``count_uncertain``); the keyword baseline is positive on any synonym, negated or not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from bundle.findings import Finding, Presence
from bundle.knowledge.base import KnowledgeBase
from bundle.knowledge.phrases import tokenize

MESH_TO_CATEGORY: dict[str, str] = {
    "cardiomegaly": "cardiomegaly",
    "pleural effusion": "pleural_effusion",
    "pulmonary atelectasis": "atelectasis",
    "opacity": "opacity",
    "calcified granuloma": "granuloma",
    "granulomatous disease": "granuloma",
    "granuloma": "granuloma",
    "nodule": "nodule",
    "emphysema": "emphysema",
    "pulmonary emphysema": "emphysema",
    "bullous emphysema": "emphysema",
    "pulmonary edema": "pulmonary_edema",
    "pulmonary congestion": "pulmonary_congestion",
    "pneumonia": "pneumonia",
    "consolidation": "consolidation",
    "fractures, bone": "fracture",
    "scoliosis": "scoliosis",
    "hernia, hiatal": "hiatal_hernia",
    "pneumothorax": "pneumothorax",
    "hydropneumothorax": "pneumothorax",
    "airspace disease": "airspace_disease",
}


SPLIT_HALVES = ("tune", "holdout")


def split_half(report_id: str) -> str:
    """``"tune"`` or ``"holdout"``: a fixed, about 50/50 split of reports by a stable hash of their id.

    Rules are tuned looking only at the tune half; the holdout half is scored to measure how they
    generalise. sha256 rather than ``hash()``, which is salted per process.
    """
    return SPLIT_HALVES[hashlib.sha256(report_id.encode("utf-8")).digest()[0] % 2]


def mesh_categories(mesh_major: str) -> set[str]:
    """Scored categories named by an IU ``mesh_major`` field (``""`` and ``"normal"`` give none)."""
    heads = (term.split("/")[0].strip().lower() for term in (mesh_major or "").split(";"))
    return {MESH_TO_CATEGORY[h] for h in heads if h in MESH_TO_CATEGORY}


def positive_categories(findings: Iterable[Finding], count_uncertain: bool = True) -> set[str]:
    """Categories a report asserts (present, plus uncertain when ``count_uncertain``)."""
    accepted = {Presence.PRESENT, Presence.UNCERTAIN} if count_uncertain else {Presence.PRESENT}
    return {f.category for f in findings if f.presence in accepted}


def keyword_categories(knowledge_base: KnowledgeBase, text: str) -> set[str]:
    """The plain keyword baseline: every category whose synonym occurs anywhere, negated or not."""
    return {c for m in knowledge_base.category_index.find_all(tokenize(text)) for c in m.value}


@dataclass(frozen=True)
class CategoryScore:
    category: str
    support: int
    precision: float
    recall: float
    f1: float


def score_labels(
    predicted: Sequence[set[str]], reference: Sequence[set[str]], categories: Sequence[str]
) -> tuple[list[CategoryScore], float]:
    """Per-category precision/recall/F1 and their macro-F1 over ``categories``.

    Args:
        predicted, reference: one set of category ids per report, in the same order.

    A category with no reference positives and no predictions scores F1 = 1 (nothing to find,
    nothing claimed); with predictions only it scores 0.
    """
    if len(predicted) != len(reference):
        raise ValueError(f"{len(predicted)} predictions for {len(reference)} reference reports")
    scores = []
    for category in categories:
        tp = sum(category in p and category in r for p, r in zip(predicted, reference))
        fp = sum(category in p and category not in r for p, r in zip(predicted, reference))
        fn = sum(category not in p and category in r for p, r in zip(predicted, reference))
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append(CategoryScore(category, tp + fn, precision, recall, f1))
    return scores, sum(s.f1 for s in scores) / len(scores)


def score_table(columns: Mapping[str, list[CategoryScore]], macro: Mapping[str, float]) -> str:
    """A Markdown table: one row per category, F1 (P/R) per named system, macro-F1 last."""
    names = list(columns)
    first = columns[names[0]]
    lines = [
        "| category | support | " + " | ".join(f"{n} F1 (P / R)" for n in names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for i, row in enumerate(first):
        cells = [f"{columns[n][i].f1:.3f} ({columns[n][i].precision:.2f} / {columns[n][i].recall:.2f})" for n in names]
        lines.append(f"| {row.category} | {row.support} | " + " | ".join(cells) + " |")
    lines.append("| **macro-F1** | | " + " | ".join(f"**{macro[n]:.3f}**" for n in names) + " |")
    return "\n".join(lines)
