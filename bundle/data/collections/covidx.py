"""COVIDx CXR (Wang et al., Sci. Rep. 2020; COVID-Net): chest X-rays pooled from public sources, COVID-19 labels.

Layout under ``root`` (the Kaggle / COVID-Net release, any version)::

    train.txt, val.txt, test.txt      one image per line: ``patient_id filename class data_source``
      | train_*.txt, test_*.txt         (older releases: train_COVIDx9A.txt, test_split_v3.txt, ...; val optional)
    train/, val/, test/               the images of each split, by file name

``class`` is ``positive`` / ``negative`` (COVID-19 or not; v9 and later) or, in older releases,
``COVID-19`` / ``pneumonia`` / ``normal`` (and the source column may be missing). Classes are named
with categories through the knowledge base: ``COVID-19`` and ``positive`` (``collection_labels``)
name ``covid19``, ``pneumonia`` names pneumonia; ``negative`` and ``normal`` name none. Each image
states covid19 present or absent; a ``pneumonia`` image is also pneumonia present and a ``normal``
one pneumonia absent, while a COVID-19 image leaves pneumonia unstated (the classes are exclusive,
but COVID-19 is a pneumonia). So ``unmentioned_findings`` is ``absent`` for the two-class releases
(every image is labelled for covid19, the one category) and ``unknown`` for the three-class ones.
Official splits: ``train`` → training (less a patient-level ``validation`` share when there is no
``val.txt``), ``val`` → validation, ``test`` → test; each item keeps ``split`` and ``data_source``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ...findings import Presence
from ...knowledge.base import KnowledgeBase
from .common import (
    CollectionError,
    LabelMapper,
    PreparedCollection,
    SplitFractions,
    Summary,
    finding_record,
    index_files,
    make_item,
    open_table,
    required_category,
    validation_split,
)

NAME = "covidx"
COVID_LABEL = "COVID-19"
NEGATIVE_LABELS = ("negative", "normal")
THREE_CLASS_LABELS = ("COVID-19", "pneumonia", "normal")
CLASSES = {label.casefold() for label in ("positive", "negative", *THREE_CLASS_LABELS)}
OFFICIAL = {"train": "training", "val": "validation", "test": "test"}
TABLES = {split: (f"{split}.txt", f"{split}_*.txt") for split in OFFICIAL}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FIX = "--root must be the COVIDx CXR folder: train.txt, val.txt, test.txt and the folders train/, val/, test/."


def parse_line(line: str) -> tuple[str, str, str, str]:
    """``(patient_id, filename, class, data_source)`` of one split-file line; the source may be missing.

    Raises:
        ValueError: fewer than three fields, or no known class in the third-last or last place.
    """
    fields = line.split()
    if len(fields) >= 4 and fields[-2].casefold() in CLASSES:
        return fields[0], " ".join(fields[1:-2]), fields[-2], fields[-1]
    if len(fields) >= 3 and fields[-1].casefold() in CLASSES:
        return fields[0], " ".join(fields[1:-1]), fields[-1], ""
    raise ValueError(f"{line.strip()[:80]!r} is not 'patient_id filename class [data_source]' with class one of "
                     "positive, negative, COVID-19, pneumonia, normal")  # fmt: skip


def find_split_table(root: Path, split: str) -> Path | None:
    """The split file: ``<split>.txt``, else the newest ``<split>_*.txt`` (by name) of an older release."""
    for pattern in TABLES[split]:
        matches = sorted(root.glob(pattern))
        if matches:
            return matches[-1]
    return None


def read_split(table: Path) -> list[str]:
    try:
        with open_table(table) as handle:
            return [line for line in handle.read().splitlines() if line.strip()]
    except (UnicodeDecodeError, OSError) as error:
        raise CollectionError(f"{table} is not a readable text file ({type(error).__name__}: {error}). {FIX}") from None


def image_findings(label: str, mapper: LabelMapper, covid: str, three_class: bool) -> list[dict[str, Any]]:
    """covid19 present/absent for every image, pneumonia stated where the class states it (module docstring)."""
    category = mapper.lookup(label)
    findings = [finding_record(covid, Presence.PRESENT if category == covid else Presence.ABSENT, label)]
    if category and category != covid:
        findings.append(finding_record(category, Presence.PRESENT, label))
    elif category is None and three_class:
        pneumonia = mapper.lookup("pneumonia")
        if pneumonia:
            findings.append(finding_record(pneumonia, Presence.ABSENT, label))
    return findings


def prepare(root: Path, knowledge_base: KnowledgeBase, fractions: SplitFractions = SplitFractions()) -> PreparedCollection:
    """Read the collection under ``root`` into datalist items (see the module docstring)."""
    root = Path(root)
    start = time.perf_counter()
    tables = {split: find_split_table(root, split) for split in OFFICIAL}
    missing = [TABLES[split][0] for split in ("train", "test") if tables[split] is None]
    if missing:
        raise CollectionError(f"no {' or '.join(missing)} (nor an older release's <split>_*.txt) under {root}. {FIX}")
    covid = required_category(knowledge_base, NAME, COVID_LABEL)
    mapper = LabelMapper(knowledge_base, NAME, normal_labels=NEGATIVE_LABELS)
    summary = Summary(NAME, tables={split: table.name for split, table in tables.items() if table})
    parsed: dict[str, list[tuple[int, tuple[str, str, str, str]]]] = {}
    for split, table in tables.items():
        if table is None:
            continue
        parsed[split] = []
        for number, line in enumerate(read_split(table), start=1):
            try:
                parsed[split].append((number, parse_line(line)))
            except ValueError as error:
                summary.skip("unreadable line", f"{table.name} line {number}: {error}")
        summary.rows += len(parsed[split])
    three_class = any(fields[2].casefold() in {c.casefold() for c in THREE_CLASS_LABELS}
                      for rows in parsed.values() for _, fields in rows)  # fmt: skip
    splits: dict[str, list[dict[str, Any]]] = {}
    patients, seen = set(), {}
    for split, rows in parsed.items():
        images = index_files([root / split], IMAGE_SUFFIXES)
        for number, (patient, filename, label, source) in rows:
            where = f"{tables[split].name} line {number}"
            if filename in seen:
                summary.skip("image already listed on an earlier line", f"{where} ({filename}), first at {seen[filename]}")
                continue
            seen[filename] = where
            mapper.read([label])
            patients.add(patient)
            if filename not in images:
                summary.missing_images.append(f"{split}/{filename}")
                continue
            item = make_item(images[filename], image_findings(label, mapper, covid, three_class), patient, None,
                             study_id=Path(filename).stem, official_split=split, data_source=source or None)  # fmt: skip
            target = validation_split(patient, fractions) if split == "train" and "val" not in parsed else OFFICIAL[split]
            splits.setdefault(target, []).append(item)
    summary.patients = len(patients)
    summary.label_counts = mapper.label_counts
    summary.unmapped_labels = mapper.unmapped
    if "val" not in parsed:
        summary.notes.append("no val.txt: validation is a patient-level share of train")
    summary.seconds = time.perf_counter() - start
    categories = [covid, *([mapper.lookup("pneumonia")] if three_class else [])]
    return PreparedCollection(NAME, splits, [c for c in categories if c], "unknown" if three_class else "absent",
                              summary)  # fmt: skip
