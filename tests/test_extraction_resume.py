"""A run killed with SIGKILL resumes from the cache: no lost results beyond those in flight, no corruption."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.fake_openai import Reply, fake_openai  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
N_REPORTS, WORKERS = 24, 2


def cli(server, reports, out):
    return [sys.executable, str(REPO / "scripts" / "extract_findings.py"), "--backend", "llm", "--base-url", server.base_url,
            "--model", "fake-model", "--input", str(reports), "--output", str(out), "--workers", str(WORKERS), "--no-progress"]  # fmt: skip


def test_kill_9_then_resume(fake_openai, tmp_path):
    reports = tmp_path / "reports.jsonl"
    reports.write_text("".join(json.dumps({"id": f"r{i}", "text": f"Small left effusion number {i}."}) + "\n" for i in range(N_REPORTS)))
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "OPENAI_API_KEY": "local"}
    fake_openai.script = [Reply.good([{"category": "pleural_effusion", "location": "left", "severity": "mild",
                                        "presence": "present", "evidence": "Small left effusion."}], delay=0.25)]  # fmt: skip
    proc = subprocess.Popen(cli(fake_openai, reports, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(fake_openai.requests) < 8 and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    requests_before = len(fake_openai.requests)
    assert 8 <= requests_before < N_REPORTS, "the run should have been killed mid-way"
    assert not out.exists()  # the output is only written, atomically, at the end

    cache_path = Path(str(out) + ".cache.sqlite")
    with sqlite3.connect(cache_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        cached = db.execute("SELECT COUNT(*) FROM findings").fetchone()[0]
    assert cached >= requests_before - WORKERS  # lost at most the reports in flight

    fake_openai.script = [Reply.good([{"category": "pleural_effusion", "presence": "present",
                                        "evidence": "Small left effusion."}])]  # fmt: skip
    rerun = subprocess.run(cli(fake_openai, reports, out), env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    new_requests = len(fake_openai.requests) - requests_before
    assert new_requests == N_REPORTS - cached <= N_REPORTS - requests_before + WORKERS
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [f"r{i}" for i in range(N_REPORTS)]
    assert all(line["triplets"][0]["category"] == "pleural_effusion" for line in lines)
    assert f"cache hits {cached}" in rerun.stderr
