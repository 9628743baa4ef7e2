"""The llm backend against a real scripted OpenAI-compatible server on 127.0.0.1."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bundle.extraction.cache import FindingsCache
from bundle.extraction.llm import LLMExtractor, PrivacyError, RetryPolicy, check_endpoint_privacy, parse_retry_after
from bundle.extraction.readers import Record
from bundle.extraction.runner import Price, run_extraction
from bundle.knowledge.base import default_knowledge_base
from tests.fake_openai import Reply, fake_openai  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-test-SECRET-0123456789abcdef"
EFFUSION = {"category": "Pleural effusion", "location": "LT base", "severity": "small", "presence": "present",
            "evidence": "Small left basal effusion."}  # fmt: skip


def make(server, sleeps=None, **kwargs):
    kwargs.setdefault("retry", RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=5.0))
    return LLMExtractor(default_knowledge_base(), server.base_url, "fake-model", KEY,
                        sleep=(sleeps.append if sleeps is not None else lambda s: None), **kwargs)  # fmt: skip


def test_good_reply_is_validated_and_normalised(fake_openai):
    fake_openai.script = [Reply.good([EFFUSION, {"category": "no such thing", "presence": "present"}])]
    result = make(fake_openai).extract("FINDINGS: Small left basal effusion.")
    assert [f.to_dict() for f in result.findings] == [
        {"category": "pleural_effusion", "location": "left base", "severity": "mild", "presence": "present",
         "evidence": "Small left basal effusion."}
    ]  # fmt: skip
    assert "not in the knowledge base" in result.warnings[0]
    assert (result.tokens_in, result.tokens_out) == (100, 20)
    request = fake_openai.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["json"]["temperature"] == 0
    assert request["json"]["response_format"]["type"] == "json_schema"
    assert request["json"]["messages"][-1]["content"] == "FINDINGS: Small left basal effusion."
    assert request["headers"]["authorization"] == f"Bearer {KEY}"


def test_fenced_reply_and_plain_list_are_repaired(fake_openai):
    fake_openai.script = [Reply.content("Here you go:\n```json\n" + json.dumps([EFFUSION]) + "\n```")]
    assert make(fake_openai, response_format="none").extract("x").findings[0].category == "pleural_effusion"
    assert "response_format" not in fake_openai.requests[0]["json"]


def test_malformed_json_is_a_failure_record_and_the_run_goes_on(fake_openai):
    fake_openai.script = [Reply.content("{not json"), Reply.good([EFFUSION])]
    records = [Record("bad", "report one"), Record("good", "report two")]
    results, summary = run_extraction(records, make(fake_openai), progress=False)
    assert [r[0] for r in results] == ["good"]
    assert summary.failures[0]["id"] == "bad" and "not valid JSON" in summary.failures[0]["reason"]
    assert summary.tokens_in == 200  # the failed reply's tokens are counted too
    assert len(fake_openai.requests) == 2  # a bad reply is not retried blindly


def test_429_honours_retry_after_then_succeeds(fake_openai):
    fake_openai.script = [Reply.error(429, retry_after="3"), Reply.good([EFFUSION])]
    sleeps = []
    result = make(fake_openai, sleeps).extract("x")
    assert result.findings and len(fake_openai.requests) == 2
    assert sleeps == [3.0]


def test_500_backs_off_exponentially_with_jitter_then_gives_up(fake_openai):
    fake_openai.script = [Reply.error(500)]
    sleeps = []
    records = [Record("r1", "x")]
    _, summary = run_extraction(records, make(fake_openai, sleeps, retry=RetryPolicy(4, 1.0, 60.0, 0.25)), progress=False)
    assert len(fake_openai.requests) == 4
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        assert 0.75 * 2**attempt <= delay <= 1.25 * 2**attempt
    assert summary.failures == [{"id": "r1", "reason": "gave up after 4 attempts; last error: HTTP 500"}]


def test_4xx_is_not_retried(fake_openai):
    fake_openai.script = [Reply.error(400)]
    with pytest.raises(Exception, match="HTTP 400"):
        make(fake_openai).extract("x")
    assert len(fake_openai.requests) == 1


def test_hang_past_timeout_is_retried_then_recorded(fake_openai):
    fake_openai.script = [Reply.good([EFFUSION], delay=1.5)]
    _, summary = run_extraction(
        [Record("slow", "x")], make(fake_openai, timeout=0.3, retry=RetryPolicy(2, 0.01)), progress=False
    )
    assert len(fake_openai.requests) == 2
    assert summary.failures[0]["reason"] == "gave up after 2 attempts; last error: request timed out"


def test_cache_rerun_makes_zero_requests_and_summary(fake_openai, tmp_path):
    fake_openai.script = [Reply.good([EFFUSION])]
    records = [Record(f"r{i}", f"report {i}") for i in range(6)]
    price = Price(input_per_million=1.0, output_per_million=2.0)
    with FindingsCache(tmp_path / "c.sqlite") as cache:
        first, s1 = run_extraction(records, make(fake_openai), cache, workers=3, price=price, progress=False)
    assert len(fake_openai.requests) == 6 and s1.extracted == 6
    assert s1.cost_usd == pytest.approx((600 * 1.0 + 120 * 2.0) / 1e6)
    with FindingsCache(tmp_path / "c.sqlite") as cache:
        second, s2 = run_extraction(records, make(fake_openai), cache, workers=3, progress=False)
    assert len(fake_openai.requests) == 6  # no new request
    assert (s2.cache_hits, s2.extracted, s2.tokens_in) == (6, 0, 0)
    assert second == first and [r[0] for r in second] == [r.id for r in records]


def test_privacy_refuses_remote_endpoints():
    for url in ("http://127.0.0.1:8000/v1", "http://localhost/v1", "http://[::1]:9/v1"):
        check_endpoint_privacy(url, allow_remote=False)
    with pytest.raises(PrivacyError, match="patient data.*--allow-remote-endpoint"):
        check_endpoint_privacy("https://api.openai.com/v1", allow_remote=False)
    check_endpoint_privacy("https://api.openai.com/v1", allow_remote=True)


def test_retry_after_parsing():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None


def test_cli_never_leaks_the_key(fake_openai, tmp_path):
    fake_openai.script = [Reply.error(429, retry_after="0"), Reply.content("{broken"), Reply.good([EFFUSION])]
    reports = tmp_path / "in.csv"
    reports.write_text("report_id,findings,impression\n1,Small left effusion.,\n2,No pneumothorax.,Normal.\n3,,\n")
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "MY_KEY": KEY, "OPENAI_LOG": "debug"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "extract_findings.py"), "--backend", "llm", "--base-url", fake_openai.base_url,
         "--model", "fake-model", "--api-key-env", "MY_KEY", "--input", str(reports), "--id-column", "report_id",
         "--text-columns", "findings,impression", "--output", str(out), "--backoff", "0.01"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "failures: 2" in proc.stderr  # one malformed reply, one empty report
    everything = proc.stdout + proc.stderr + "".join(p.read_bytes().decode("utf-8", "replace") for p in tmp_path.iterdir())
    assert KEY not in everything
    assert any(r["headers"].get("authorization") == f"Bearer {KEY}" for r in fake_openai.requests)


def test_cli_refuses_remote_endpoint_without_opt_in(tmp_path):
    reports = tmp_path / "in.jsonl"
    reports.write_text('{"id": "1", "text": "No effusion."}\n')
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "extract_findings.py"), "--backend", "llm", "--base-url",
         "https://api.example.com/v1", "--input", str(reports), "--output", str(tmp_path / "o.jsonl")],
        env={**os.environ, "OPENAI_API_KEY": KEY}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "patient data" in proc.stderr and "--allow-remote-endpoint" in proc.stderr
    assert not (tmp_path / "o.jsonl").exists()
