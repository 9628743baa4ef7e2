"""Write findings: JSONL (one ``{"id", "triplets"}`` line per report) and a CheXpert label CSV.

Every file is written to a temporary file in the same folder and moved into place with
``os.replace``, so an interrupted run never leaves a half-written output.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from bundle.findings import Finding, Presence
from bundle.io import atomic_open
from bundle.knowledge.base import CHEXPERT_LABELS, KnowledgeBase


def write_jsonl(path: str | Path, rows: Iterable[Mapping]) -> None:
    """Write one JSON object per line, atomically."""
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def findings_rows(results: Iterable[tuple[str, Sequence[Finding]]]) -> Iterator[dict]:
    """``{"id": ..., "triplets": [finding dict, ...]}`` rows for ``write_jsonl``."""
    for record_id, findings in results:
        yield {"id": record_id, "triplets": [f.to_dict() for f in findings]}


_LABEL_VALUE = {Presence.PRESENT: 1, Presence.UNCERTAIN: -1, Presence.ABSENT: 0}
_PRIORITY = {1: 3, -1: 2, 0: 1}  # CheXpert aggregation: positive > uncertain > negative


def chexpert_labels(findings: Sequence[Finding], knowledge_base: KnowledgeBase) -> dict[str, int | None]:
    """CheXpert labels of one report: 1 / 0 / -1, None when not mentioned.

    Each category rolls up to its knowledge-base ``chexpert`` label; mentions of one label
    aggregate as positive > uncertain > negative. ``No Finding`` is 1 when no label other
    than Support Devices is positive or uncertain.
    """
    labels: dict[str, int | None] = {label: None for label in CHEXPERT_LABELS}
    for finding in findings:
        category = knowledge_base.categories.get(finding.category)
        label = category.chexpert if category else None
        if label is None:
            continue
        value = _LABEL_VALUE[finding.presence]
        if labels[label] is None or _PRIORITY[value] > _PRIORITY[labels[label]]:
            labels[label] = value
    pathology = [v for k, v in labels.items() if k not in ("No Finding", "Support Devices")]
    if not any(v in (1, -1) for v in pathology):
        labels["No Finding"] = 1
    return labels


def write_chexpert_csv(path: str | Path, results: Iterable[tuple[str, Sequence[Finding]]], knowledge_base: KnowledgeBase) -> None:
    """CSV with an ``id`` column and the 14 CheXpert labels (1 / 0 / -1 / blank), atomically."""
    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *CHEXPERT_LABELS])
        for record_id, findings in results:
            labels = chexpert_labels(findings, knowledge_base)
            writer.writerow([record_id, *("" if labels[k] is None else labels[k] for k in CHEXPERT_LABELS)])
