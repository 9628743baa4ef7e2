"""What every collection adapter shares: reading label tables, naming labels with knowledge-base
categories, patient-level splits, building datalist items, the preparation summary and the
atomic datalist writer.

An adapter reads one public collection in its published layout and returns a
:class:`PreparedCollection`; :func:`write_datalist` turns it into the bundle's datalist (see
``bundle.data.datalist``), so ``configs/train.json`` and ``configs/evaluate.json`` read it unchanged.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import zipfile
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ...extraction.backend import Extractor
from ...extraction.cache import FindingsCache
from ...extraction.readers import Record
from ...extraction.rules import RulesExtractor
from ...extraction.runner import RunStopped, run_extraction
from ...findings import Finding, Presence
from ...io import write_json_atomic
from ...knowledge.base import KnowledgeBase, KnowledgeBaseError
from ..datalist import PATH_KEYS, SPLITS, finding_problem

# "absent": the collection labels every category of its list for every image, so silence is a
# negative; "unknown": it does not, so silence says nothing (bundle/losses/ssm.py reads this).
UNMENTIONED_POLICIES = ("absent", "unknown")
KB_LABEL_FIELD = "collection_labels"


class CollectionError(ValueError):
    """The collection cannot be read as given; the message names the file or column and the fix."""


# -- reading tables -----------------------------------------------------------------------------------


@contextmanager
def open_table(path: Path) -> Iterator[io.TextIOBase]:
    """Open a CSV that may be plain, gzip-compressed (``.gz``) or the single member of a ``.zip``."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as handle:
            yield handle
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [name for name in archive.namelist() if not name.endswith("/")]
            if len(members) != 1:
                raise CollectionError(f"{path} holds {len(members)} files; expected one CSV. Unzip it and pass the CSV.")
            with archive.open(members[0]) as raw:
                yield io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    else:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            yield handle


def read_csv(path: Path, required_columns: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a CSV table as dicts (header names stripped: SIIM writes ``" EncodedPixels"``).

    Raises:
        CollectionError: a required column is missing (naming the file, the columns it has and the fix)
            or the file is not UTF-8 CSV.
    """
    try:
        with open_table(path) as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            missing = [column for column in required_columns if column not in header]
            if missing:
                raise CollectionError(
                    f"{path} has no column(s) {missing} (its columns: {header}). It is not the collection's "
                    "published table, or it was edited: download the original file again."
                )
            return [dict(zip(header, (value.strip() for value in row))) for row in reader if row]
    except (UnicodeDecodeError, csv.Error, OSError, zipfile.BadZipFile, EOFError) as error:
        raise CollectionError(f"{path} is not a readable CSV table ({type(error).__name__}: {error}).") from None


def find_table(root: Path, names: Sequence[str], what: str, fix: str) -> Path:
    """The first of ``names`` (glob patterns, each also tried with ``.gz`` and ``.zip``, as Kaggle downloads
    single files) under ``root``; the last match of a pattern wins, so a newer release
    (``Data_Entry_2017_v2020.csv``) beats an older one."""
    for pattern in names:
        matches = sorted({*root.glob(pattern), *root.glob(pattern + ".gz"), *root.glob(pattern + ".zip")})
        if matches:
            return matches[-1]
    raise CollectionError(f"no {what} under {root} (looked for {', '.join(names)}, also .gz and .zip). {fix}")


def index_files(folders: Iterable[Path], suffixes: Sequence[str]) -> dict[str, Path]:
    """File name -> path for the files with ``suffixes`` directly inside ``folders`` (the first folder wins)."""
    index: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.lower().endswith(tuple(suffixes)) and entry.is_file():
                    index.setdefault(entry.name, Path(entry.path))
    return index


# -- labels -> knowledge-base categories --------------------------------------------------------------


class LabelMapper:
    """Names a collection's labels with knowledge-base categories.

    A label is first looked up in the categories' ``collection_labels`` field for this collection
    (labels that are no synonym of their category, such as an organism naming pneumonia), then as a
    category id, name or synonym (``KnowledgeBase.category_for``). ``normal_labels`` say the image has
    no finding; ``ignored_labels`` name no finding of their own (levels of a label hierarchy). Every
    label looked up is counted, and those without a category are counted in ``unmapped``.

    Raises:
        KnowledgeBaseError: two categories claim the same label of the collection.
    """

    def __init__(
        self,
        knowledge_base: KnowledgeBase,
        collection: str,
        normal_labels: Sequence[str] = (),
        ignored_labels: Sequence[str] = (),
    ) -> None:
        self.knowledge_base = knowledge_base
        self.collection = collection
        self.explicit: dict[str, str] = {}
        for category in knowledge_base.categories.values():
            for label in category.extra.get(KB_LABEL_FIELD, {}).get(collection, []):
                key = label.casefold()
                if self.explicit.setdefault(key, category.id) != category.id:
                    raise KnowledgeBaseError(
                        f"{knowledge_base.source}: label {label!r} of {collection} is listed in the {KB_LABEL_FIELD} "
                        f"of both {self.explicit[key]!r} and {category.id!r}; keep it in one category"
                    )
        self.normal = {label.casefold() for label in normal_labels}
        self.ignored = {label.casefold() for label in ignored_labels}
        self.label_counts: Counter[str] = Counter()
        self.unmapped: Counter[str] = Counter()
        self._cache: dict[str, str | None] = {}

    def lookup(self, label: str) -> str | None:
        """The category id of one label: None for a normal, ignored or unmapped label (not counted)."""
        if label not in self._cache:
            key = label.casefold()
            named = key not in self.normal and key not in self.ignored
            self._cache[label] = (self.explicit.get(key) or self.knowledge_base.category_for(label)) if named else None
        return self._cache[label]

    def is_normal(self, label: str) -> bool:
        return label.casefold() in self.normal

    def read(self, labels: Sequence[str]) -> dict[str, str]:
        """Category -> the first of ``labels`` naming it, in label order; counts every label and the
        unmapped ones."""
        named: dict[str, str] = {}
        for label in labels:
            self.label_counts[label] += 1
            category = self.lookup(label)
            if category:
                named.setdefault(category, label)
            elif label.casefold() not in self.normal and label.casefold() not in self.ignored:
                self.unmapped[label] += 1
        return named


def required_category(knowledge_base: KnowledgeBase, collection: str, label: str) -> str:
    """The category of a collection's one label (SIIM's pneumothorax, RSNA's pneumonia).

    Raises:
        CollectionError: the knowledge base names no category for it.
    """
    category = LabelMapper(knowledge_base, collection).lookup(label)
    if category is None:
        raise CollectionError(f"the knowledge base names no category for {label!r}; add it to bundle/knowledge/knowledge_base.yaml")
    return category


@lru_cache(maxsize=4096)
def _finding_record(category: str, presence: Presence, evidence: str) -> dict[str, Any]:
    return Finding(category, presence=presence, evidence=evidence).to_dict()


def finding_record(category: str, presence: Presence = Presence.PRESENT, evidence: str = "") -> dict[str, Any]:
    """A finding dict without location or severity. A collection repeats a few label values over
    hundreds of thousands of rows, and ``Finding.to_dict`` (``dataclasses.asdict``) took most of a
    CheXpert run; the records are built once and copied."""
    return dict(_finding_record(category, presence, evidence))


def label_findings(named: dict[str, str]) -> list[dict[str, Any]]:
    """Present findings (no location or severity) for the categories a collection's labels name
    (``LabelMapper.read``); the evidence is the label text."""
    return [finding_record(category, evidence=label) for category, label in named.items()]


# -- reports -> findings (collections of images with reports: mimic-cxr, iu-xray) ------------------------


@dataclass
class ReportFindings:
    """Where a report collection's findings come from.

    Either ``extractor`` (a ``bundle.extraction`` backend; the rules backend when None) reads each
    report through ``cache`` (a ``FindingsCache``: a rerun, or a report that
    scripts/extract_findings.py already read with the same backend and knowledge base, costs no
    extraction), or ``precomputed`` holds the findings of an earlier run by report id
    (:func:`read_findings_jsonl`) and nothing is extracted. ``progress`` shows the extraction's bar.
    """

    extractor: Extractor | None = None
    cache: FindingsCache | None = None
    precomputed: dict[str, list[dict[str, Any]]] | None = None
    source: str = ""
    progress: bool = False


def read_findings_jsonl(path: Path, knowledge_base: KnowledgeBase) -> dict[str, list[dict[str, Any]]]:
    """Report id -> finding records from scripts/extract_findings.py's output (one ``{"id", "triplets"}``
    line per report; a later line with the same id wins, as there).

    Raises:
        CollectionError: the file is missing, a line is not such an object, or a finding is invalid or
            names a category the knowledge base lacks (naming the line and the fix).
    """
    fix = f"Write it with scripts/extract_findings.py (any backend) and this knowledge base ({knowledge_base.source})."
    if not path.is_file():
        raise CollectionError(f"findings file {path} does not exist. {fix}")
    findings: dict[str, list[dict[str, Any]]] = {}
    try:
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{line_number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise CollectionError(f"{where} is not JSON ({error.msg}). {fix}") from None
                if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("triplets"), list):
                    raise CollectionError(f'{where} is not an object {{"id": "...", "triplets": [...]}}. {fix}')
                for record in row["triplets"]:
                    problem = finding_problem(record, knowledge_base.categories)
                    if problem:
                        raise CollectionError(f"{where} (report {row['id']!r}): {problem}. {fix}")
                findings[row["id"]] = [Finding.from_dict(record).to_dict() for record in row["triplets"]]
    except (OSError, UnicodeDecodeError) as error:
        raise CollectionError(f"findings file {path} cannot be read ({error}). {fix}") from None
    return findings


def report_findings(
    reports: dict[str, str | None],
    aliases: dict[str, Sequence[str]],
    source: ReportFindings,
    knowledge_base: KnowledgeBase,
    summary: Summary,
) -> dict[str, list[dict[str, Any]]]:
    """Finding records of each report id in ``reports`` (id -> report text, None when the collection
    has no text for it), from ``source``; ``aliases`` gives other ids a report may have in a findings
    file (MIMIC's ``s50414267`` is also ``50414267``). A report without findings (no text to extract
    from, not in the findings file, or the extraction failed) is left out and skipped in the summary.

    Raises:
        CollectionError: the extraction stopped (an LLM endpoint refusing every request).
    """
    if source.precomputed is not None:
        found = {}
        for report_id in reports:
            keys = [key for key in (report_id, *aliases.get(report_id, ())) if key in source.precomputed]
            if keys:
                found[report_id] = source.precomputed[keys[0]]
            else:
                summary.skip(f"not in the findings file {source.source}", report_id)
        summary.notes.append(f"findings read from {source.source} ({len(found)} of {len(reports)} reports)")
        return found
    extractor = source.extractor or RulesExtractor(knowledge_base)
    records = [Record(report_id, text) for report_id, text in reports.items() if text]
    for report_id in (report_id for report_id, text in reports.items() if not text):
        summary.skip("no report text to extract findings from", report_id)
    try:
        results, run = run_extraction(records, extractor, source.cache, progress=source.progress, total=len(records))
    except RunStopped as error:
        raise CollectionError(str(error)) from None
    for failure in run.failures:
        summary.skip("the report's findings extraction failed", f"{failure['id']}: {failure['reason']}")
    summary.notes.append(f"findings extracted from the reports ({extractor.backend} backend, {extractor.model}): "
                         + run.format())  # fmt: skip
    return {report_id: [finding.to_dict() for finding in findings] for report_id, findings in results}


def knowledge_base_categories(knowledge_base: KnowledgeBase, splits: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The knowledge-base categories that the items' findings name, in the knowledge base's order: the
    category list of a collection whose findings come from reports rather than a fixed label set."""
    named = {finding["category"] for items in splits.values() for item in items for finding in item["findings"]}
    return [category for category in knowledge_base.categories if category in named]


# -- splits ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitFractions:
    """Shares of patients in validation and test for collections without an official split."""

    validation: float = 0.1
    test: float = 0.2

    def __post_init__(self) -> None:
        if self.validation < 0 or self.test < 0 or self.validation + self.test >= 1:
            raise ValueError(
                f"validation ({self.validation}) and test ({self.test}) fractions must be >= 0 and leave some "
                "patients for training (sum below 1)"
            )


def patient_fraction(patient_id: str) -> float:
    """A stable number in [0, 1) for a patient: sha256 of the id (``hash()`` is salted per process),
    as ``bundle.extraction.evaluation.split_half`` splits reports."""
    return int.from_bytes(hashlib.sha256(patient_id.encode("utf-8")).digest()[:8], "big") / 2**64


def patient_split(patient_id: str, fractions: SplitFractions) -> str:
    """``training``, ``validation`` or ``test`` for every image of a patient, by the hash of the id."""
    share = patient_fraction(patient_id)
    if share < fractions.test:
        return "test"
    return "validation" if share < fractions.test + fractions.validation else "training"


def validation_split(patient_id: str, fractions: SplitFractions) -> str:
    """``training`` or ``validation`` for a patient of an official training split, by the hash of the id
    (the share of validation patients is ``fractions.validation``, the test fraction is unused)."""
    return "validation" if patient_fraction(patient_id) < fractions.validation else "training"


# -- items, summary, result -------------------------------------------------------------------------------


def make_item(
    image: Path,
    findings: list[dict[str, Any]],
    patient_id: str,
    view: str | None,
    study_id: str,
    official_split: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One datalist item; paths stay absolute until :func:`write_datalist` relativises them."""
    item: dict[str, Any] = {"image": image, "findings": findings, "patient_id": patient_id, "view": view,
                            "study_id": study_id}  # fmt: skip
    if official_split is not None:
        item["split"] = official_split
    item.update({key: value for key, value in extra.items() if value is not None})
    return item


@dataclass
class Summary:
    """What a preparation read, wrote and left out; printed by the CLI and written beside the datalist."""

    collection: str
    tables: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    patients: int = 0
    label_counts: Counter[str] = field(default_factory=Counter)
    unmapped_labels: Counter[str] = field(default_factory=Counter)
    missing_images: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    items: Counter[str] = field(default_factory=Counter)
    positives: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, what: str) -> None:
        self.skipped[reason].append(what)

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection, "tables": self.tables, "rows": self.rows, "patients": self.patients,
            "items": dict(self.items), "positives_per_category": dict(self.positives.most_common()),
            "label_counts": dict(self.label_counts.most_common()), "unmapped_labels": dict(self.unmapped_labels),
            "missing_images": self.missing_images, "skipped": dict(self.skipped), "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }  # fmt: skip

    def lines(self, shown: int = 10) -> list[str]:
        """A readable summary; long lists show their first ``shown`` entries."""

        def some(values: Sequence[str]) -> str:
            more = f", ... ({len(values) - shown} more)" if len(values) > shown else ""
            return ", ".join(values[:shown]) + more

        lines = [f"{self.collection}: {self.rows} rows of {', '.join(self.tables.values())}, {self.patients} patients, "
                 f"prepared in {self.seconds:.2f} s"]  # fmt: skip
        lines.append("items written: " + ", ".join(f"{split} {self.items.get(split, 0)}" for split in SPLITS))
        lines.append("labels: " + ", ".join(f"{label} {count}" for label, count in self.label_counts.most_common()))
        if self.positives:
            lines.append("positive findings written: " + ", ".join(f"{c} {n}" for c, n in self.positives.most_common()))
        if self.unmapped_labels:
            lines.append(
                f"labels without a knowledge-base category ({sum(self.unmapped_labels.values())} uses, left out of the "
                "findings; add them to a category's collection_labels): "
                + ", ".join(f"{label} {count}" for label, count in self.unmapped_labels.most_common())
            )
        if self.missing_images:
            lines.append(f"missing images ({len(self.missing_images)}, left out): {some(self.missing_images)}")
        for reason, what in self.skipped.items():
            lines.append(f"skipped, {reason} ({len(what)}): {some(what)}")
        lines.extend(f"note: {note}" for note in self.notes)
        return lines


@dataclass
class PreparedCollection:
    """An adapter's result: items per datalist split, the category list and the unmentioned-findings rule."""

    collection: str
    splits: dict[str, list[dict[str, Any]]]
    categories: list[str]
    unmentioned_findings: str
    summary: Summary

    def __post_init__(self) -> None:
        if self.unmentioned_findings not in UNMENTIONED_POLICIES:
            raise ValueError(f"unmentioned_findings must be one of {UNMENTIONED_POLICIES}")
        for split in SPLITS:
            self.splits.setdefault(split, [])
            self.summary.items[split] = len(self.splits[split])
        self.summary.positives = Counter(
            finding["category"] for items in self.splits.values() for item in items
            for finding in item["findings"] if finding["presence"] == Presence.PRESENT.value
        )  # fmt: skip

    def datalist(self, folder: Path) -> dict[str, Any]:
        """The datalist dict for a file in ``folder``: paths under it relative, others absolute."""
        datalist: dict[str, Any] = {
            "name": self.collection,
            "categories": self.categories,
            "unseen_categories": [],
            "unmentioned_findings": self.unmentioned_findings,
        }
        folder = folder.resolve()
        for split in SPLITS:
            datalist[split] = [_portable_paths(item, folder) for item in self.splits[split]]
        return datalist


def _portable_paths(item: dict[str, Any], folder: Path) -> dict[str, Any]:
    written = dict(item)
    for key in PATH_KEYS:
        if key in written:
            path = Path(written[key]).resolve()
            written[key] = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)
    return written


def summary_path(output: Path) -> Path:
    return output.with_name(output.stem + ".summary.json")


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse an existing output (or summary) unless ``overwrite``; refuse a folder always."""
    for path in (output, summary_path(output)):
        if path.is_dir():
            raise CollectionError(f"output {path} is a folder; give a file name such as {path / 'datalist.json'}")
        if path.exists() and not overwrite:
            raise CollectionError(f"output {path} exists; pass --overwrite to replace it, or choose another path")


def write_datalist(prepared: PreparedCollection, output: Path, overwrite: bool = False) -> Path:
    """Write the datalist (and ``<name>.summary.json`` beside it) atomically; returns the datalist path."""
    output = Path(output)
    check_output(output, overwrite)
    write_json_atomic(summary_path(output), prepared.summary.to_dict())
    with_paths = prepared.datalist(output.parent)
    write_json_atomic(output, with_paths, indent=None)
    return output


def categories_in_order(known: Sequence[str], splits: dict[str, list[dict[str, Any]]]) -> list[str]:
    """``known`` followed by any other category the items name, in order of first appearance."""
    found = (finding["category"] for split in SPLITS for item in splits.get(split, []) for finding in item["findings"])
    return list(dict.fromkeys([*known, *found]))
