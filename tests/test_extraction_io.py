"""Readers (CSV, JSONL, .txt folder, MIMIC tree, Open-i XML), writers, cache and the CLI."""

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bundle.extraction.backend import ExtractionResult
from bundle.extraction.cache import FindingsCache
from bundle.extraction.readers import InputError, Record, RecordError, read_records
from bundle.extraction.writers import chexpert_labels, write_chexpert_csv, write_jsonl
from bundle.findings import Finding
from bundle.knowledge.base import default_knowledge_base

REPO = Path(__file__).resolve().parents[1]
OPENI = REPO.parent / "shared" / "realdata" / "iu-xray-openi" / "ecgen-radiology-sample"


def test_csv_joins_text_columns_and_reports_bad_rows(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('report_id,findings,impression\n1,Small effusion.,Effusion.\n2,,\n,No pneumothorax.,\n3,"multi\nline",x\n4,a\n')
    out = list(read_records(path, "auto", "report_id", ["findings", "impression"]))
    assert out[0] == Record("1", "FINDINGS: Small effusion.\n\nIMPRESSION: Effusion.")
    assert isinstance(out[1], RecordError) and "report '2' is empty" in out[1].reason
    assert isinstance(out[2], RecordError) and "empty 'report_id'" in out[2].reason
    assert out[3] == Record("3", "FINDINGS: multi\nline\n\nIMPRESSION: x")
    assert isinstance(out[4], RecordError) and "r.csv:7" in out[4].reason and "fields" in out[4].reason


def test_csv_missing_column_and_non_utf8(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("id,report\n1,x\n")
    with pytest.raises(InputError, match=r"\['text'\] not found.*--text-columns"):
        list(read_records(path))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("id,text\n1,épanchement\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8.*iconv"):
        list(read_records(latin))


def test_jsonl_malformed_line_does_not_stop_reading(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": 1, "text": "No effusion."}\n{"id": 2, "text": \n\xff\xfe\n["x"]\n{"id": 5, "text": "Edema."}\n')
    out = list(read_records(path))
    assert out[0] == Record("1", "No effusion.") and out[-1] == Record("5", "Edema.")
    assert "r.jsonl:2: malformed JSON" in out[1].reason
    assert "r.jsonl:3: line is not UTF-8" in out[2].reason
    assert "expected an object with key 'id'" in out[3].reason


def test_txt_folder_and_mimic_tree(tmp_path):
    folder = tmp_path / "txt"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("FINDINGS: No effusion.")
    (folder / "sub" / "b.txt").write_bytes(b"\xff\xfe bad")
    out = list(read_records(folder))
    assert out[0] == Record("a", "FINDINGS: No effusion.")
    assert isinstance(out[1], RecordError) and out[1].id == "sub/b" and "not UTF-8" in out[1].reason
    mimic = tmp_path / "mimic"
    study = mimic / "files" / "p10" / "p10000032" / "s50414267.txt"
    study.parent.mkdir(parents=True)
    study.write_text("FINAL REPORT\nFINDINGS: Small left effusion.\n")
    assert list(read_records(mimic)) == [Record("s50414267", "FINAL REPORT\nFINDINGS: Small left effusion.\n")]


def test_openi_xml_real_sample():
    records = list(read_records(OPENI))
    assert len(records) == 60
    first = records[0]
    assert first.id == "CXR1" and first.text.startswith("FINDINGS: The cardiac silhouette")
    assert "IMPRESSION: Normal chest x-XXXX." in first.text
    assert any(isinstance(r, RecordError) and "empty" in r.reason for r in records)


def test_openi_malformed_xml(tmp_path):
    (tmp_path / "1.xml").write_text("<eCitation><uId id='CXR9'/>")
    (out,) = read_records(tmp_path)
    assert isinstance(out, RecordError) and "malformed XML" in out.reason


def test_writers_are_atomic_and_chexpert_aggregates(tmp_path):
    kb = default_knowledge_base()
    findings = [Finding("pleural_effusion", presence="absent"), Finding("pleural_effusion", presence="uncertain"),
                Finding("infiltrate"), Finding("support_devices")]  # fmt: skip
    labels = chexpert_labels(findings, kb)
    assert labels["Pleural Effusion"] == -1 and labels["Lung Opacity"] == 1 and labels["Support Devices"] == 1
    assert labels["No Finding"] is None and labels["Fracture"] is None
    assert chexpert_labels([Finding("pneumothorax", presence="absent")], kb)["No Finding"] == 1
    path = tmp_path / "labels.csv"
    write_chexpert_csv(path, [("a", findings)], kb)
    row = next(csv.DictReader(path.open()))
    assert row["Pleural Effusion"] == "-1" and row["Fracture"] == "" and row["id"] == "a"
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")

    def rows_then_crash():
        yield {"id": 1}
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_jsonl(target, rows_then_crash())
    assert target.read_text() == "old\n"  # the interrupted write left the previous file intact
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cache_roundtrip_and_corrupt_file(tmp_path):
    result = ExtractionResult([Finding("nodule", "right upper lobe", "mild", "uncertain", "x")], 10, 3)
    with FindingsCache(tmp_path / "c.sqlite") as cache:
        cache.put("report", "llm", "m", "v1", result)
        assert cache.get("report", "llm", "m", "v1").findings == result.findings
        assert cache.get("report", "llm", "m", "v2") is None and len(cache) == 1
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="not a readable SQLite findings cache"):
        FindingsCache(bad)


def test_cli_rules_end_to_end_and_rerun_hits_cache(tmp_path):
    reports = tmp_path / "REPORTS.csv"
    reports.write_text(
        "report_id,findings,impression\n"
        "a,Small left pleural effusion. No pneumothorax.,Possible pneumonia.\n"
        "b,,\n"
        "c,Heart size is normal.,No acute disease.\n"
    )
    out = tmp_path / "OUT.jsonl"
    cmd = [sys.executable, str(REPO / "scripts" / "extract_findings.py"), "--backend", "rules", "--input", str(reports),
           "--id-column", "report_id", "--text-columns", "findings,impression", "--output", str(out),
           "--chexpert-csv", str(tmp_path / "labels.csv")]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "extract (rules)" in first.stderr  # the progress bar
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["a", "c"]
    assert [(t["category"], t["presence"]) for t in lines[0]["triplets"]] == [
        ("pleural_effusion", "present"), ("pneumothorax", "absent"), ("pneumonia", "uncertain")
    ]  # fmt: skip
    assert [(t["category"], t["presence"]) for t in lines[1]["triplets"]] == [("cardiomegaly", "absent")]
    failures = [json.loads(x) for x in (tmp_path / "OUT.failures.jsonl").read_text().splitlines()]
    assert failures[0]["id"] == "b" and "empty" in failures[0]["reason"]
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert "new 0, cache hits 2" in second.stderr
    with sqlite3.connect(str(out) + ".cache.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM findings").fetchone()[0] == 2


def test_cli_missing_column_is_a_clear_error(tmp_path):
    reports = tmp_path / "r.csv"
    reports.write_text("id,text\n1,x\n")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "extract_findings.py"), "--input", str(reports),
                           "--text-columns", "findings", "--output", str(tmp_path / "o.jsonl")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and "--text-columns" in proc.stderr and "Traceback" not in proc.stderr


def test_atomic_writes_get_ordinary_file_permissions(tmp_path):
    import os
    import stat

    from bundle.io import write_json_atomic

    path = write_json_atomic(tmp_path / "metrics.json", {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
