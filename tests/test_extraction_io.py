"""Readers (CSV, JSONL, .txt folder, MIMIC tree, Open-i XML), writers, cache and the CLI."""

import csv
import errno
import importlib.util
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
import yaml

from bundle.extraction.backend import ExtractionResult
from bundle.extraction.cache import CacheKey, FindingsCache
from bundle.extraction.llm import LLMExtractor
from bundle.extraction.readers import InputError, Record, RecordError, keep_last_per_id, read_records
from bundle.extraction.writers import chexpert_labels, write_chexpert_csv, write_jsonl
from bundle.findings import Finding
from bundle.knowledge.base import DEFAULT_KNOWLEDGE_BASE_PATH, default_knowledge_base
from tests.extraction_cli import CLI, llm_args, run_cli
from tests.fake_openai import Reply, fake_openai  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
OPENI = REPO.parent / "shared" / "realdata" / "iu-xray-openi" / "ecgen-radiology-sample"
LOCAL_KEY = {"OPENAI_API_KEY": "local"}
EFFUSION = {"category": "pleural_effusion", "location": "left", "presence": "present", "evidence": "Small left effusion."}


def test_csv_joins_text_columns_and_reports_bad_rows(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('report_id,findings,impression\n1,Small effusion.,Effusion.\n2,,\n,No pneumothorax.,\n3,"multi\nline",x\n4,a\n')
    out = list(read_records(path, "auto", "report_id", ["findings", "impression"]))
    assert out[0] == Record("1", "FINDINGS: Small effusion.\n\nIMPRESSION: Effusion.")
    assert isinstance(out[1], RecordError) and "report '2' is empty" in out[1].reason
    assert isinstance(out[2], RecordError) and "empty 'report_id'" in out[2].reason
    assert out[3] == Record("3", "FINDINGS: multi\nline\n\nIMPRESSION: x")
    assert isinstance(out[4], RecordError) and "r.csv:7" in out[4].reason and "fields" in out[4].reason


def test_csv_row_with_wrong_field_count_says_how_many_and_where_it_began(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('id,findings,impression\n1,"joined\n2,by a quote"\n3,No effusion.,Normal.\n')
    bad, good = read_records(path, "auto", "id", ["findings", "impression"])
    assert bad.reason == ("r.csv:2: the row on lines 2-3 has 2 fields for 3 columns (a quote may have joined several "
                          "lines into one field); fix its quoting or commas").replace("r.csv", str(path))  # fmt: skip
    assert good == Record("3", "FINDINGS: No effusion.\n\nIMPRESSION: Normal.")


def test_csv_unclosed_quote_names_the_line_where_it_began_and_the_fix(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('id,findings,impression\n1,Small effusion.,x\n2,"two\nlines","never closed\n3,No effusion.,x\n')  # row 2 starts on line 3
    with pytest.raises(InputError) as error:
        list(read_records(path, "auto", "id", ["findings", "impression"]))
    assert str(error.value) == (f"{path}:4: a quoted field that begins on line 4 is never closed (the rest of the file "
                                'was read into it); close the quote, or write a quote that belongs to the text as two '
                                'quotes ("")')  # fmt: skip
    path.write_text('id,text\n1,"He said "no" to it"\n')
    with pytest.raises(InputError, match=r'r.csv:2: a quoted field .* text after its closing quote .* two quotes \(""\)'):
        list(read_records(path))


def test_cli_unclosed_quote_is_one_clear_error_before_any_work(tmp_path):
    reports = tmp_path / "r.csv"
    reports.write_text('id,text\n1,"Small effusion.\n2,No pneumothorax.\n')
    proc = run_cli("--input", reports, "--output", tmp_path / "o.jsonl")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {reports}:2: a quoted field that begins on line 2 is never closed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


def test_long_reports_are_read_and_rejected_one_by_one(tmp_path, fake_openai):
    long_report = "Small left effusion. " * 10_000  # 210,000 characters, past the csv module's 128 Ki field limit
    reports = tmp_path / "r.csv"
    with reports.open("w", newline="") as handle:
        csv.writer(handle).writerows([["id", "text"], ["a", "No effusion."], ["long", long_report], ["c", "Edema."]])
    assert [len(r.text) for r in read_records(reports)] == [12, len(long_report.strip()), 6]
    fake_openai.script = [Reply.good([])]  # EFFUSION's evidence is not in every report
    out = tmp_path / "o.jsonl"
    proc = run_cli(*llm_args(fake_openai, reports, out), env=LOCAL_KEY)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "c"]
    (failure,) = map(json.loads, (tmp_path / "o.failures.jsonl").read_text().splitlines())
    assert failure == {"id": "long", "reason": "report 'long' has 209,999 characters, more than the limit of 100,000 "
                       "(--max-report-chars); check that it is one report, then split it or raise the limit"}  # fmt: skip
    assert [r["json"]["messages"][-1]["content"] for r in fake_openai.requests] == ["No effusion.", "Edema."]
    proc = run_cli(*llm_args(fake_openai, reports, out), "--overwrite", "--max-report-chars", "300000", env=LOCAL_KEY)
    assert proc.returncode == 0 and "new 1, cache hits 2" in proc.stderr
    assert fake_openai.requests[-1]["json"]["messages"][-1]["content"] == long_report.strip()


def test_duplicate_ids_the_last_record_wins():
    records = [Record("a", "first a"), Record("b", "b"), RecordError("a", "empty"), Record("a", "last a"), Record("c", "c")]
    kept, duplicates = keep_last_per_id(records)
    assert kept == [Record("b", "b"), Record("a", "last a"), Record("c", "c")]
    assert duplicates == {"a": 2}


def test_cli_duplicate_ids_warn_with_a_count_and_are_written_once(tmp_path, fake_openai):
    reports = tmp_path / "r.jsonl"
    rows = [("a", "Old a."), ("b", "Old b."), ("a", "New a."), ("c", "C."), ("b", "New b.")]
    reports.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows))
    fake_openai.script = [Reply.good([])]  # EFFUSION's evidence is in none of these reports
    out = tmp_path / "o.jsonl"
    proc = run_cli(*llm_args(fake_openai, reports, out), env=LOCAL_KEY)
    assert proc.returncode == 0, proc.stderr
    assert (f"warning: skipped 2 records of {reports} whose id occurs again later (2 ids: 'a', 'b'); the last record "
            "with each id wins") in proc.stderr  # fmt: skip
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "c", "b"]
    assert [r["json"]["messages"][-1]["content"] for r in fake_openai.requests] == ["New a.", "C.", "New b."]


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
    key = CacheKey("llm", "m", "v1", "response_format=auto", "kb-sha")
    with FindingsCache(tmp_path / "c.sqlite") as cache:
        cache.put("report", key, result)
        assert cache.get("report", key).findings == result.findings
        assert cache.get("report", key._replace(prompt_version="v2")) is None and len(cache) == 1
        assert cache.get("report", key._replace(knowledge_base="other")) is None
        assert cache.get("report", key._replace(decoding="response_format=none")) is None
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="not a readable SQLite findings cache"):
        FindingsCache(bad)


def test_cache_from_before_content_keys_is_refused(tmp_path):
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE findings (text_sha256 TEXT, backend TEXT, model TEXT, prompt_version TEXT, triplets "
                   "TEXT, tokens_in INTEGER, tokens_out INTEGER, created REAL)")  # fmt: skip
    with pytest.raises(ValueError, match=f"cache {old} was written by an older version .* may be stale; delete it"):
        FindingsCache(old)


def test_cache_from_before_decoding_keys_is_refused(tmp_path):
    old = tmp_path / "v2.sqlite"
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE findings (text_sha256 TEXT, backend TEXT, model TEXT, prompt_version TEXT, knowledge_base "
                   "TEXT, triplets TEXT, tokens_in INTEGER, tokens_out INTEGER, created REAL)")  # fmt: skip
        db.execute("PRAGMA user_version=2")
    with pytest.raises(ValueError, match="structured-output mode, so its entries may be stale"):
        FindingsCache(old)


def test_another_structured_output_mode_is_a_cache_miss_and_the_same_one_a_hit(tmp_path, fake_openai):
    reports = tmp_path / "r.jsonl"
    reports.write_text('{"id": "1", "text": "Small left pleural effusion."}\n')
    effusion = [{"category": "pleural_effusion", "presence": "present", "evidence": "Small left pleural effusion."}]
    fake_openai.script = [Reply.good(effusion)] * 3
    out = tmp_path / "o.jsonl"
    runs = [("auto", "new 1, cache hits 0"), ("json_object", "new 1, cache hits 0"), ("json_object", "new 0, cache hits 1")]
    for mode, counts in runs:
        run = run_cli(*llm_args(fake_openai, reports, out), "--response-format", mode, "--overwrite", env=LOCAL_KEY)
        assert run.returncode == 0, run.stderr
        assert counts in run.stderr
    assert len(fake_openai.requests) == 2


def test_editing_the_knowledge_base_without_a_version_bump_is_a_cache_miss(tmp_path, fake_openai):
    data = yaml.safe_load(DEFAULT_KNOWLEDGE_BASE_PATH.read_text(encoding="utf-8"))
    kb = tmp_path / "kb.yaml"
    kb.write_text(yaml.safe_dump(data))
    reports = tmp_path / "r.jsonl"
    reports.write_text('{"id": "1", "text": "Small left zorblax."}\n')
    fake_openai.script = [Reply.good([{"category": "zorblax", "presence": "present", "evidence": "Small left zorblax."}])]
    out = tmp_path / "o.jsonl"
    first = run_cli(*llm_args(fake_openai, reports, out), "--knowledge-base", kb, env=LOCAL_KEY)
    assert first.returncode == 0, first.stderr
    assert json.loads(out.read_text())["triplets"] == []  # not a category of this knowledge base: dropped
    next(c for c in data["categories"] if c["id"] == "pneumothorax")["synonyms"].append("zorblax")
    kb.write_text(yaml.safe_dump(data))  # same version string
    second = run_cli(*llm_args(fake_openai, reports, out), "--knowledge-base", kb, "--overwrite", env=LOCAL_KEY)
    assert second.returncode == 0, second.stderr
    assert "new 1, cache hits 0" in second.stderr and len(fake_openai.requests) == 2
    assert [t["category"] for t in json.loads(out.read_text())["triplets"]] == ["pneumothorax"]


def test_cli_rules_end_to_end_and_rerun_hits_cache(tmp_path):
    reports = tmp_path / "REPORTS.csv"
    reports.write_text(
        "report_id,findings,impression\n"
        "a,Small left pleural effusion. No pneumothorax.,Possible pneumonia.\n"
        "b,,\n"
        "c,Heart size is normal.,No acute disease.\n"
    )
    out = tmp_path / "OUT.jsonl"
    cmd = ["--backend", "rules", "--input", reports, "--id-column", "report_id", "--text-columns", "findings,impression",
           "--output", out, "--chexpert-csv", tmp_path / "labels.csv"]  # fmt: skip
    first = run_cli(*cmd)
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
    second = run_cli(*cmd, "--overwrite")
    assert "new 0, cache hits 2" in second.stderr
    with sqlite3.connect(str(out) + ".cache.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM findings").fetchone()[0] == 2


def test_cli_missing_column_is_a_clear_error(tmp_path):
    reports = tmp_path / "r.csv"
    reports.write_text("id,text\n1,x\n")
    proc = run_cli("--input", reports, "--text-columns", "findings", "--output", tmp_path / "o.jsonl")
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


@pytest.mark.parametrize("spelling", ["same", "relative", "symlink", "hard link"])
def test_cli_refuses_to_write_over_its_input(tmp_path, spelling):
    reports = tmp_path / "reports.csv"
    reports.write_text("id,text\n1,No effusion.\n")
    output = {"same": "reports.csv", "relative": "sub/../reports.csv", "symlink": "link.csv", "hard link": "hard.csv"}[spelling]
    (tmp_path / "link.csv").symlink_to(reports)
    os.link(reports, tmp_path / "hard.csv")
    proc = run_cli("--input", "reports.csv", "--output", output, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"--output {output} is the same file as --input reports.csv: writing it would destroy the input" in proc.stderr
    assert reports.read_text() == "id,text\n1,No effusion.\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.csv", "link.csv", "reports.csv"]  # no work done


def test_cli_output_folder_is_reported_before_any_work(tmp_path, fake_openai):
    reports = tmp_path / "r.jsonl"
    reports.write_text('{"id": "1", "text": "No effusion."}\n')
    (tmp_path / "folder").mkdir()
    proc = run_cli(*llm_args(fake_openai, reports, tmp_path / "folder"), env=LOCAL_KEY)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"--output {tmp_path / 'folder'} is a folder; give the path of a file" in proc.stderr
    assert fake_openai.requests == [] and sorted(p.name for p in tmp_path.iterdir()) == ["folder", "r.jsonl"]


def test_cli_existing_output_is_replaced_only_with_overwrite_keeping_its_mode(tmp_path, fake_openai):
    reports = tmp_path / "r.jsonl"
    reports.write_text('{"id": "1", "text": "Small left effusion."}\n')
    out = tmp_path / "o.jsonl"
    fake_openai.script = [Reply.good([EFFUSION])]
    assert run_cli(*llm_args(fake_openai, reports, out), env=LOCAL_KEY).returncode == 0
    out.chmod(0o640)
    written = out.read_text()
    refused = run_cli(*llm_args(fake_openai, reports, out), env=LOCAL_KEY)
    assert refused.returncode == 2
    assert f"error: --output {out} already exists; pass --overwrite to replace it" in refused.stderr
    out.write_text("edited by hand\n")
    replaced = run_cli(*llm_args(fake_openai, reports, out), "--overwrite", env=LOCAL_KEY)
    assert replaced.returncode == 0 and "cache hits 1" in replaced.stderr
    assert out.read_text() == written and stat.S_IMODE(out.stat().st_mode) == 0o640
    assert len(fake_openai.requests) == 1


def test_a_failed_write_says_the_results_are_in_the_cache_and_a_rerun_writes_them(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("extract_findings_cli", CLI)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    reports = tmp_path / "r.jsonl"
    reports.write_text('{"id": "a", "text": "Small left pleural effusion."}\n')
    out = tmp_path / "o.jsonl"
    args = ["--backend", "rules", "--input", str(reports), "--output", str(out), "--no-progress"]

    def disk_full(path, rows):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cli, "write_jsonl", disk_full)
    assert cli.main(args) == 2
    said = capsys.readouterr().err
    assert "No space left on device" in said and f"in the cache {out}.cache.sqlite" in said and "Traceback" not in said
    assert not out.exists()
    monkeypatch.undo()
    rerun = run_cli(*args)
    assert rerun.returncode == 0 and "new 0, cache hits 1" in rerun.stderr, rerun.stderr
    assert json.loads(out.read_text())["id"] == "a"


def test_the_llm_extractor_closes_its_connections(fake_openai):
    extractor = LLMExtractor(default_knowledge_base(), fake_openai.base_url, "m", "key")
    extractor.close()
    with pytest.raises(RuntimeError, match="client has been closed"):
        extractor._client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
