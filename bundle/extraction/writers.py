"""Write findings: JSONL (one ``{"id", "triplets"}`` line per report) and a CheXpert label CSV.

Every file is written to a temporary file in the same folder and moved into place with
``os.replace``, so an interrupted run never leaves a half-written output. ``check_output_paths``
refuses, before any work, outputs that would destroy an input or each other, folders, and
existing files that the caller did not agree to replace.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from bundle.findings import Finding, Presence
from bundle.io import atomic_open
from bundle.knowledge.base import CHEXPERT_LABELS, KnowledgeBase


class OutputError(ValueError):
    """An output path that cannot or must not be written; the message names it and the fix."""


def same_file(a: Path, b: Path) -> bool:
    """Whether two spellings name one file: relative paths, ``..``, symbolic and hard links."""
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))


def check_output_paths(
    replaced: Mapping[str, Path], reused: Mapping[str, Path], inputs: Mapping[str, Path], overwrite: bool
) -> None:
    """Check where a run will write, before it starts; keys are the names used in messages (option names).

    Args:
        replaced: files the run writes anew; one that exists is refused unless ``overwrite``.
        reused: files the run reads and extends (the cache), which may exist.
        inputs: files the run reads; no output may be one of them.

    Raises:
        OutputError: an output that is an input, is another output, is a folder or lies under a
            file, or exists without ``overwrite``.
    """
    outputs = {**replaced, **reused}
    for (label, path), (input_label, source) in itertools.product(outputs.items(), inputs.items()):
        if same_file(path, source):
            raise OutputError(f"{label} {path} is the same file as {input_label} {source}: writing it would destroy "
                              f"the {input_label.lstrip('-')}; choose another {label}")  # fmt: skip
    for (label, path), (other_label, other) in itertools.combinations(outputs.items(), 2):
        if same_file(path, other):
            raise OutputError(f"{label} and {other_label} are both {path}; give them different paths")
    for label, path in outputs.items():
        if path.is_dir():
            raise OutputError(f"{label} {path} is a folder; give the path of a file (it may be inside that folder)")
        folder = next(parent for parent in path.absolute().parents if parent.exists())
        if not folder.is_dir():
            raise OutputError(f"{label} {path} cannot be created: {folder} is a file, not a folder; choose another {label}")
    existing = [f"{label} {path}" for label, path in replaced.items() if path.exists()]
    if existing and not overwrite:
        one = len(existing) == 1
        raise OutputError(
            f"{' and '.join(existing)} already exist{'s' if one else ''}; pass --overwrite to replace "
            f"{'it' if one else 'them'} (file permissions are kept), or choose another path. Either way reports already "
            "in the cache are not sent to the backend again; resuming a killed run needs neither (it wrote no output)"
        )


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
