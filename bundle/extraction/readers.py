"""Report inputs -> a stream of ``Record`` (id, text) or ``RecordError`` (id, reason + fix).

Formats: CSV (an id column + text columns), JSONL (same keys), a folder of ``.txt`` reports,
the MIMIC-CXR report tree (``files/pXX/pSUBJECT/sSTUDY.txt``, id = ``sSTUDY``) and Open-i / IU
XML (id = ``uId``, text = the FINDINGS and IMPRESSION ``AbstractText``). A problem with one
record yields a ``RecordError`` and reading goes on; a problem with the whole input (missing
file or column) raises ``InputError``.

Several text columns are joined as ``COLUMN: text`` paragraphs, so section detection sees
``FINDINGS:`` / ``IMPRESSION:`` headers.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

FORMATS = ("csv", "jsonl", "txt-folder", "mimic", "openi-xml")
UTF8_FIX = "re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"


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
        handle = path.open(newline="", encoding="utf-8")
        with handle:
            dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
            reader = csv.DictReader(handle, dialect=dialect)
            header = reader.fieldnames or []
            missing = [c for c in [id_column, *text_columns] if c not in header]
            if missing:
                raise InputError(
                    f"{path}: column(s) {missing} not found; the header has {header}. "
                    "Pass the right names with --id-column / --text-columns"
                )
            for row in reader:
                line = reader.line_num
                record_id = (row.get(id_column) or "").strip()
                if None in row or any(row.get(c) is None for c in text_columns):
                    yield RecordError(record_id or f"line {line}", f"{path}:{line}: row has {len(row)} fields for {len(header)} columns; fix its quoting or commas")
                    continue
                if not record_id:
                    yield RecordError(f"line {line}", f"{path}:{line}: empty {id_column!r}; give every report an id")
                    continue
                yield _checked(record_id, compose_text(row, text_columns), f"{path}:{line}")
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not UTF-8 ({error}); {UTF8_FIX}") from None


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
