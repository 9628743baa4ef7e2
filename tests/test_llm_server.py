"""GPT-IE against a real OpenAI-compatible server: llama-cpp-python with Gemma 3 270M on 127.0.0.1.

The CLI runs on real IU reports in its default mode, so structured-output negotiation meets the
real server's rejection of ``json_schema``; the run is killed with SIGKILL and resumed. Only the
loopback address is contacted; wall time is bounded by few reports and ``--max-tokens``.
"""

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from bundle.extraction.grounding import quoted_span
from bundle.extraction.llm import REPLY_FAILURES
from bundle.extraction.readers import compose_text
from bundle.findings import REPORT_FINDINGS_SCHEMA
from bundle.knowledge.base import default_knowledge_base
from tests.extraction_cli import CLI
from tests.llm_server import LlamaServer, running_llama_server

N_REPORTS = 4  # the first run is killed once two are answered; the resumed run does the rest
MAX_TOKENS = 128  # two or three findings; a longer reply is cut, which is a failure with its reason
ANSWERED = '"POST /v1/chat/completions HTTP/1.1" 200'  # the server's access log line for a reply


def answered(server: LlamaServer) -> int:
    return server.log_path.read_text(encoding="utf-8", errors="replace").count(ANSWERED)


def cached_reports(cache: Path) -> int:
    with sqlite3.connect(cache) as db:
        return db.execute("SELECT COUNT(*) FROM findings").fetchone()[0]


@pytest.mark.timeout(1800)  # the first run builds the server's environment (minutes), then ~2 minutes of work
def test_real_server_default_mode_kill_and_resume(tmp_path, realdata):
    with (realdata / "iu-xray-openi" / "iu_reports_dev.csv").open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["findings"].strip()][:N_REPORTS]
    reports = tmp_path / "reports.csv"
    with reports.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["report_id", "findings", "impression"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    texts = {r["report_id"]: compose_text(r, ["findings", "impression"]) for r in rows}
    out = tmp_path / "out.jsonl"
    cache = Path(f"{out}.cache.sqlite")
    env = {**os.environ, "OPENAI_API_KEY": "local"}

    with running_llama_server(tmp_path) as server:
        command = [sys.executable, str(CLI), "--backend", "llm", "--base-url", server.base_url, "--model", server.model,
                   "--input", str(reports), "--id-column", "report_id", "--text-columns", "findings,impression",
                   "--output", str(out), "--no-progress", "--max-tokens", str(MAX_TOKENS), "--timeout", "120"]  # fmt: skip
        with (tmp_path / "first.log").open("w") as log:
            first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 600
            # killed once two reports are answered (done and cached, or failed: failures are not cached)
            while answered(server) < 2 and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        first_log = (tmp_path / "first.log").read_text()
        assert first.returncode == -signal.SIGKILL and not out.exists(), f"not killed mid-way; its log:\n{first_log}"
        kept = cached_reports(cache)
        # negotiation: the server answers json_schema with HTTP 500, and the run steps down once
        assert "structured output: json_object with the schema attached (llama.cpp style), accepted by the endpoint; " \
               "json_schema was rejected (HTTP 500: 1 validation error:" in first_log, first_log

        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert server.process.poll() is not None  # the server was stopped

    done = [json.loads(line) for line in out.read_text().splitlines()]
    assert rerun.returncode == (0 if done else 1), rerun.stderr  # 1: every report failed
    failures = tmp_path / "out.failures.jsonl"
    failed = [json.loads(line) for line in failures.read_text().splitlines()] if failures.exists() else []
    # nothing lost, nothing twice: every report once, done or failed; the cached ones were not sent again
    ids = [line["id"] for line in done] + [f["id"] for f in failed]
    assert sorted(ids) == sorted(texts) and len(set(ids)) == N_REPORTS
    assert f"cache hits {kept})" in rerun.stderr and f"(new {len(done) - kept}," in rerun.stderr, rerun.stderr
    # Gemma 3 270M (a base model) mostly copies the prompt's examples or runs to the token limit, so
    # few reports, often none, are done; those that are must be schema-valid and quote their report.
    kb = default_knowledge_base()
    for line in done:
        jsonschema.validate(line, REPORT_FINDINGS_SCHEMA)
        for triplet in line["triplets"]:
            assert triplet["category"] in kb.categories
            assert quoted_span(triplet["evidence"], texts[line["id"]]) == triplet["evidence"]
    for failure in failed:  # the endpoint answered every request: only the model's replies may fail
        assert failure["reason"].startswith(REPLY_FAILURES), failure
