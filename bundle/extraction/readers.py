"""Report inputs -> a stream of ``Record`` (id, text) or ``RecordError`` (id, reason + fix).

Formats: CSV (an id column + text columns), JSONL (same keys), a folder of ``.txt`` reports,
the MIMIC-CXR report tree (``files/pXX/pSUBJECT/sSTUDY.txt``, id = ``sSTUDY``) and Open-i / IU
XML (id = ``uId``, text = the FINDINGS and IMPRESSION ``AbstractText``). A problem with one
record yields a ``RecordError`` and reading goes on; a problem with the whole input (missing
file or column) raises ``InputError``.

Several text columns are joined as ``COLUMN: text`` paragraphs, so section detection sees
``FINDINGS:`` / ``IMPRESSION:`` headers.

CSV is read strictly: a quote that is never closed, or text after a closing quote, is an
``InputError`` naming the line (rows after it cannot be told apart); fields may be far longer
than the csv module's 128 Ki default, so the length of a report is the run's concern.
``keep_last_per_id`` resolves duplicate ids.
"""

from __future__ import annotations

import csv
import itertools
import json
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

FORMATS = ("csv", "jsonl", "txt-folder", "mimic", "openi-xml")
UTF8_FIX = "re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
# Longest CSV field read (characters); the csv module's default, 128 Ki, is shorter than some reports.
MAX_CSV_FIELD_CHARS = 256 * 1024 * 1024


class InputError(ValueError):
    """The input as a whole cannot be read; the message says what to change."""


@dataclass(frozen=True)
class Record:
    id: str
    text: str


@dataclass(frozen=True)
class RecordError:
    """A record that could not be read; ``reason`` names the record and the fix."""

    id: str
    reason: str


def detect_format(path: Path) -> str:
    """Guess the input format from the path (suffix, or the files inside a folder)."""
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".csv", ".tsv"):
            return "csv"
        if suffix in (".jsonl", ".ndjson"):
            return "jsonl"
        raise InputError(f"{path}: cannot tell the format from suffix '{suffix}'; pass --input-format {{{','.join(FORMATS)}}}")
    if not path.is_dir():
        raise InputError(f"input {path} does not exist")
    if next(path.glob("*.xml"), None) is not None:
        return "openi-xml"
    if (path / "files").is_dir() or next(path.glob("p*/p*/s*.txt"), None) is not None:
        return "mimic"
    if next(path.rglob("*.txt"), None) is not None:
        return "txt-folder"
    raise InputError(f"folder {path} holds no .txt or .xml reports; pass a CSV/JSONL file or a report folder")


def read_records(
    path: str | Path, fmt: str = "auto", id_column: str = "id", text_columns: Sequence[str] = ("text",)
) -> Iterator[Record | RecordError]:
    """Read reports from ``path`` in format ``fmt`` (``auto`` detects it)."""
    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    readers = {"csv": _read_csv, "jsonl": _read_jsonl, "txt-folder": _read_txt_folder, "mimic": _read_mimic, "openi-xml": _read_openi}
    if fmt not in readers:
        raise InputError(f"unknown input format {fmt!r}; choose one of {', '.join(FORMATS)} or auto")
    if fmt in ("csv", "jsonl"):
        yield from readers[fmt](path, id_column, list(text_columns))
    else:
        yield from readers[fmt](path)


def keep_last_per_id(records: Iterable[Record | RecordError]) -> tuple[list[Record | RecordError], Counter[str]]:
    """One record per id: the last one read wins (a later row usually corrects an earlier one).

    Returns the kept records in input order (each at its winning position) and, per duplicated
    id, how many earlier records were dropped.
    """
    records = list(records)
    last = {record.id: index for index, record in enumerate(records)}
    kept = [record for index, record in enumerate(records) if last[record.id] == index]
    return kept, Counter(record.id for index, record in enumerate(records) if last[record.id] != index)


def compose_text(fields: Mapping[str, object], text_columns: Sequence[str]) -> str:
    """Join non-empty text fields as ``NAME: text`` paragraphs (a lone column is kept as is)."""
    parts = [(c, str(fields.get(c) or "").strip()) for c in text_columns]
    parts = [(c, t) for c, t in parts if t]
    if len(text_columns) == 1:
        return parts[0][1] if parts else ""
    return "\n\n".join(f"{c.upper()}: {t}" for c, t in parts)


def _checked(record_id: str, text: str, where: str) -> Record | RecordError:
    if not text.strip():
        return RecordError(record_id, f"{where}: report {record_id!r} is empty; fill in its text or drop the record")
    return Record(record_id, text)


def _read_csv(path: Path, id_column: str, text_columns: list[str]) -> Iterator[Record | RecordError]:
    try:
        rows = _csv_rows(path)
        header = next(rows, (0, 0, []))[2]
        missing = [c for c in [id_column, *text_columns] if c not in header]
        if missing:
            raise InputError(
                f"{path}: column(s) {missing} not found; the header has {header}. "
                "Pass the right names with --id-column / --text-columns"
            )
        for first_line, last_line, fields in rows:
            yield _csv_record(path, header, fields, id_column, text_columns, first_line, last_line)
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not UTF-8 ({error}); {UTF8_FIX}") from None


def _csv_dialect(path: Path) -> str:
    return "excel-tab" if path.suffix.lower() == ".tsv" else "excel"


def _csv_rows(path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """``(first line, last line, fields)`` of each non-blank row; a quoting error raises ``InputError``."""
    # Raise (never lower) the process-wide limit: a long report is rejected later, per report, by
    # the run's length cap; only a field no report reaches stops the reading.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_FIELD_CHARS))
    with path.open(newline="", encoding="utf-8") as handle:
        # strict: a quote left open or followed by text is an error, not rows silently merged
        reader = csv.reader(handle, dialect=_csv_dialect(path), strict=True)
        while True:
            first_line = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise InputError(_csv_quoting_problem(path, first_line, reader.line_num, str(error))) from None
            if fields:
                yield first_line, reader.line_num, fields


def _csv_record(
    path: Path, header: list[str], fields: list[str], id_column: str, text_columns: list[str], first_line: int, last_line: int
) -> Record | RecordError:
    row = dict(zip(header, fields))
    record_id = row.get(id_column, "").strip()
    if len(fields) != len(header):
        lines = f"line {first_line}" if first_line == last_line else f"lines {first_line}-{last_line}"
        joined = " (a quote may have joined several lines into one field)" if first_line != last_line else ""
        return RecordError(record_id or f"line {first_line}",
                           f"{path}:{first_line}: the row on {lines} has {len(fields)} fields for {len(header)} columns"
                           f"{joined}; fix its quoting or commas")  # fmt: skip
    if not record_id:
        return RecordError(f"line {first_line}", f"{path}:{first_line}: empty {id_column!r}; give every report an id")
    return _checked(record_id, compose_text(row, text_columns), f"{path}:{first_line}")


def _csv_quoting_problem(path: Path, first_line: int, error_line: int, error: str) -> str:
    """The message for a CSV the reader cannot go on with, naming where the bad field began and the fix."""
    fix = 'close the quote, or write a quote that belongs to the text as two quotes ("")'
    if "field larger than field limit" in error:
        return (f"{path}:{first_line}: a field of the row starting on line {first_line} runs past "
                f"{MAX_CSV_FIELD_CHARS:,} characters, far longer than any report: most likely a quote opened there is "
                f"never closed; {fix}")  # fmt: skip
    if "unexpected end of data" in error:
        quote_line = _unclosed_quote_line(path, first_line)
        return (f"{path}:{quote_line}: a quoted field that begins on line {quote_line} is never closed (the rest of "
                f"the file was read into it); {fix}")  # fmt: skip
    return (f"{path}:{error_line}: a quoted field (the row starts on line {first_line}) has text after its closing "
            f"quote ({error}); put all of the field's text inside its quotes and write each quote in it as two quotes "
            '("")')


def _unclosed_quote_line(path: Path, first_line: int) -> int:
    """Line of the quote that is never closed, in the row starting on ``first_line``.

    Read leniently, that row ends at the end of the file with the unclosed field last; the line
    breaks inside the fields before it put its opening quote that many lines down.
    """
    with path.open(newline="", encoding="utf-8") as handle:
        fields = next(csv.reader(itertools.islice(handle, first_line - 1, None), dialect=_csv_dialect(path)), [])
    return first_line + sum(field.count("\n") for field in fields[:-1])


def _read_jsonl(path: Path, id_column: str, text_columns: list[str]) -> Iterator[Record | RecordError]:
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            where = f"{path}:{line_no}"
            if not raw.strip():
                continue
            try:
                item = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield RecordError(f"line {line_no}", f"{where}: line is not UTF-8; {UTF8_FIX}")
                continue
            except json.JSONDecodeError as error:
                yield RecordError(f"line {line_no}", f"{where}: malformed JSON ({error.msg} at column {error.colno}); fix or remove the line")
                continue
            if not isinstance(item, dict) or id_column not in item:
                yield RecordError(f"line {line_no}", f"{where}: expected an object with key {id_column!r}; pass --id-column")
                continue
            missing = [c for c in text_columns if c not in item]
            if len(missing) == len(text_columns):
                yield RecordError(str(item[id_column]), f"{where}: none of the text keys {text_columns} present; pass --text-columns")
                continue
            yield _checked(str(item[id_column]), compose_text(item, text_columns), where)


def _read_text_file(path: Path, record_id: str) -> Record | RecordError:
    try:
        return _checked(record_id, path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError:
        return RecordError(record_id, f"{path} is not UTF-8; {UTF8_FIX}")
    except OSError as error:
        return RecordError(record_id, f"{path} cannot be read ({error.strerror}); check its permissions")


def _read_txt_folder(path: Path) -> Iterator[Record | RecordError]:
    for file in sorted(path.rglob("*.txt")):
        yield _read_text_file(file, file.relative_to(path).with_suffix("").as_posix())


def _read_mimic(path: Path) -> Iterator[Record | RecordError]:
    root = path / "files" if (path / "files").is_dir() else path
    for file in sorted(root.glob("p*/p*/s*.txt")):
        yield _read_text_file(file, file.stem)


def _read_openi(path: Path) -> Iterator[Record | RecordError]:
    for file in sorted(path.glob("*.xml"), key=lambda p: (len(p.stem), p.stem)):
        try:
            root = ET.parse(file).getroot()
        except ET.ParseError as error:
            yield RecordError(file.stem, f"{file}: malformed XML ({error}); re-export the file")
            continue
        uid = root.find("uId")
        record_id = uid.get("id") if uid is not None and uid.get("id") else file.stem
        sections = {
            (node.get("Label") or "").lower(): (node.text or "").strip() for node in root.iter("AbstractText")
        }
        yield _checked(record_id, compose_text(sections, ["findings", "impression"]), str(file))
