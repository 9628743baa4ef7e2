"""The llm backend against a real scripted OpenAI-compatible server on 127.0.0.1."""

import csv
import json
import logging
from pathlib import Path

import pytest

from bundle.extraction.backend import ExtractionFailure, RequestFailure
from bundle.extraction.cache import FindingsCache
from bundle.data.synthcxr import generate_study
from bundle.extraction.grounding import quoted_span
from bundle.extraction.llm import (
    CHARS_PER_TOKEN,
    DEFAULT_PROMPT_VERSION,
    INVALID,
    MAX_EVIDENCE_CHARS,
    MAX_FINDINGS_PER_REPLY,
    NOT_GROUNDED,
    OUTSIDE_KNOWLEDGE_BASE,
    LLMExtractor,
    PrivacyError,
    Prompt,
    RetryPolicy,
    check_endpoint_privacy,
    default_max_tokens,
    parse_retry_after,
    reply_schema,
)
from bundle.extraction.readers import Record, RecordError, compose_text
from bundle.extraction.runner import STOP_AFTER_IDENTICAL_FAILURES, Price, RunStopped, run_extraction
from bundle.knowledge.base import default_knowledge_base
from tests.extraction_cli import llm_args, run_cli
from tests.fake_openai import LLAMA_CPP_RESPONSE_FORMATS, Reply, fake_openai, http_recorder  # noqa: F401

KEY = "sk-test-SECRET-0123456789abcdef"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
EFFUSION = {"category": "Pleural effusion", "location": "LT base", "severity": "small", "presence": "present",
            "evidence": "Small left basal effusion."}  # fmt: skip
REPORT = "FINDINGS: Small left basal effusion."  # what EFFUSION quotes


def make(server, sleeps=None, key=KEY, **kwargs):
    kwargs.setdefault("retry", RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=5.0))
    return LLMExtractor(default_knowledge_base(), server.base_url, "fake-model", key,
                        sleep=(sleeps.append if sleeps is not None else lambda s: None), **kwargs)  # fmt: skip


def test_good_reply_is_validated_and_normalised(fake_openai):
    unknown = {"category": "no such thing", "presence": "present", "evidence": "Small left basal effusion."}
    unquoted = {"category": "pneumothorax", "presence": "absent"}  # no evidence: nothing to check it against
    fake_openai.script = [Reply.good([EFFUSION, unknown, unquoted])]
    result = make(fake_openai).extract("FINDINGS: Small left basal effusion.")
    assert [f.to_dict() for f in result.findings] == [
        {"category": "pleural_effusion", "location": "left base", "severity": "mild", "presence": "present",
         "evidence": "Small left basal effusion."}
    ]  # fmt: skip
    assert result.warnings == ["finding 1 dropped: category 'no such thing' is not in the knowledge base",
                               "finding 2 dropped: it quotes no evidence"]  # fmt: skip
    assert result.dropped == {OUTSIDE_KNOWLEDGE_BASE: 1, NOT_GROUNDED: 1}
    assert (result.tokens_in, result.tokens_out) == (100, 20)
    request = fake_openai.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["json"]["temperature"] == 0
    assert request["json"]["response_format"]["type"] == "json_schema"
    assert request["json"]["max_tokens"] == default_max_tokens(default_knowledge_base())
    assert request["json"]["messages"][-1]["content"] == "FINDINGS: Small left basal effusion."
    assert request["headers"]["authorization"] == f"Bearer {KEY}"


def test_fenced_reply_and_plain_list_are_repaired(fake_openai):
    fake_openai.script = [Reply.content("Here you go:\n```json\n" + json.dumps([EFFUSION]) + "\n```")]
    assert make(fake_openai, response_format="none").extract(REPORT).findings[0].category == "pleural_effusion"
    assert "response_format" not in fake_openai.requests[0]["json"]


def test_malformed_json_is_a_failure_record_and_the_run_goes_on(fake_openai):
    fake_openai.script = [Reply.content("{not json"), Reply.good([EFFUSION])]
    records = [Record("bad", "report one"), Record("good", REPORT)]
    results, summary = run_extraction(records, make(fake_openai), progress=False)
    assert [r[0] for r in results] == ["good"]
    assert summary.failures[0]["id"] == "bad" and "not valid JSON" in summary.failures[0]["reason"]
    assert summary.tokens_in == 200  # the failed reply's tokens are counted too
    assert len(fake_openai.requests) == 2  # a bad reply is not retried blindly


def test_429_honours_retry_after_then_succeeds(fake_openai):
    fake_openai.script = [Reply.error(429, retry_after="3"), Reply.good([EFFUSION])]
    sleeps = []
    result = make(fake_openai, sleeps).extract(REPORT)
    assert result.findings and len(fake_openai.requests) == 2
    assert sleeps == [3.0]


def test_503_backs_off_exponentially_with_jitter_then_gives_up(fake_openai):
    fake_openai.script = [Reply.error(503)]  # the same body every time: still worth waiting for
    sleeps = []
    records = [Record("r1", "x")]
    _, summary = run_extraction(records, make(fake_openai, sleeps, retry=RetryPolicy(4, 1.0, 60.0, 0.25)), progress=False)
    assert len(fake_openai.requests) == 4
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        assert 0.75 * 2**attempt <= delay <= 1.25 * 2**attempt
    assert summary.failures == [{"id": "r1", "reason": "gave up after 4 attempts; last error: HTTP 503: scripted 503"}]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_4xx_a_retry_cannot_fix_is_not_retried(fake_openai, status):
    fake_openai.script = [Reply.error(status)]
    with pytest.raises(RequestFailure, match=f"HTTP {status}: scripted {status}"):
        make(fake_openai).extract(REPORT)
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize("status", [408, 409])
def test_408_and_409_are_retried(fake_openai, status):
    fake_openai.script = [Reply.error(status), Reply.good([EFFUSION])]
    assert make(fake_openai).extract(REPORT).findings
    assert len(fake_openai.requests) == 2


def test_5xx_that_answers_the_same_twice_is_not_retried_further(fake_openai):
    fake_openai.script = [Reply.error(500)]
    with pytest.raises(RequestFailure, match="HTTP 500: scripted 500, the same answer twice, so it was not retried"):
        make(fake_openai).extract(REPORT)
    assert len(fake_openai.requests) == 2
    fake_openai.script = [Reply(500, "worker 1 crashed"), Reply(500, "worker 2 crashed"), Reply.good([EFFUSION])]
    assert make(fake_openai).extract(REPORT).findings  # a different answer each time: may be transient
    assert len(fake_openai.requests) == 5


def test_hang_past_timeout_is_retried_then_recorded(fake_openai):
    fake_openai.script = [Reply.good([EFFUSION], delay=1.5)]
    _, summary = run_extraction(
        [Record("slow", "x")], make(fake_openai, timeout=0.3, retry=RetryPolicy(2, 0.01)), progress=False
    )
    assert len(fake_openai.requests) == 2
    assert summary.failures[0]["reason"] == "gave up after 2 attempts; last error: request timed out"


def test_cache_rerun_makes_zero_requests_and_summary(fake_openai, tmp_path):
    fake_openai.script = [Reply.good([EFFUSION])]
    records = [Record(f"r{i}", f"Film {i}. Small left basal effusion.") for i in range(6)]
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
    reports.write_text("report_id,findings,impression\n1,Small left effusion.,\n2,Small left basal effusion.,Normal.\n3,,\n")
    proc = run_cli(*llm_args(fake_openai, reports, tmp_path / "out.jsonl"), "--api-key-env", "MY_KEY", "--id-column",
                   "report_id", "--text-columns", "findings,impression", env={"MY_KEY": KEY, "OPENAI_LOG": "debug"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "failures: 2" in proc.stderr  # one malformed reply, one empty report
    everything = proc.stdout + proc.stderr + "".join(p.read_bytes().decode("utf-8", "replace") for p in tmp_path.iterdir())
    assert KEY not in everything
    assert any(r["headers"].get("authorization") == f"Bearer {KEY}" for r in fake_openai.requests)


@pytest.mark.parametrize("where", [["--base-url", "https://api.example.com/v1"],
                                   ["--base-url", "http://127.0.0.1:9/v1", "--proxy", "http://proxy.example.com:3128"]])
def test_cli_refuses_remote_endpoint_or_proxy_without_opt_in(tmp_path, where):
    reports = tmp_path / "in.jsonl"
    reports.write_text('{"id": "1", "text": "No effusion."}\n')
    proc = run_cli("--backend", "llm", *where, "--input", reports, "--output", tmp_path / "o.jsonl",
                   env={"OPENAI_API_KEY": KEY})  # fmt: skip
    assert proc.returncode == 2
    assert "patient data" in proc.stderr and "--allow-remote-endpoint" in proc.stderr
    assert ("proxy is not on the loopback" in proc.stderr) == ("--proxy" in where)
    assert not (tmp_path / "o.jsonl").exists()


def test_environment_proxies_never_see_reports(fake_openai, http_recorder, monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, http_recorder.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    fake_openai.script = [Reply.good([EFFUSION])]
    assert make(fake_openai).extract("Small left basal effusion.").findings
    assert http_recorder.requests == []
    assert fake_openai.requests[0]["json"]["messages"][-1]["content"] == "Small left basal effusion."


def test_proxies_are_used_after_the_opt_in_or_when_given_explicitly(fake_openai, http_recorder, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", http_recorder.url)
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ExtractionFailure, match="HTTP 502"):
        make(fake_openai, allow_remote=True, retry=RetryPolicy(1)).extract("report one")
    monkeypatch.delenv("HTTP_PROXY")
    with pytest.raises(ExtractionFailure, match="HTTP 502"):
        make(fake_openai, proxy=http_recorder.url, retry=RetryPolicy(1)).extract("report two")
    assert [request[0] for request in http_recorder.requests] == ["POST", "POST"]
    assert b"report two" in http_recorder.requests[1][3] and fake_openai.requests == []
    with pytest.raises(PrivacyError, match="proxy is not on the loopback"):
        make(fake_openai, proxy="http://proxy.example.com:3128")


def test_redirect_is_not_followed(fake_openai, http_recorder):
    fake_openai.script = [Reply(307, "", {"Location": f"{http_recorder.url}/v1/chat/completions"})]
    with pytest.raises(ExtractionFailure, match="HTTP 307, a redirect to .* not followed"):
        make(fake_openai).extract("Small left basal effusion.")
    assert http_recorder.requests == []


def test_echoed_key_is_redacted_from_messages_failures_results_and_cache(fake_openai, tmp_path):
    echo = f"Incorrect API key provided: {KEY}; you sent Authorization: Bearer {KEY}"
    fake_openai.script = [
        Reply(401, json.dumps({"error": {"message": echo}}), {"Content-Type": "application/json"}),
        Reply(500, f"upstream failed for key {KEY}"), Reply(500, "x" * 192 + KEY),  # the key across the trim at 200
        Reply.content(f"Sorry, no JSON. Your key: {KEY}"),
        Reply.good([{**EFFUSION, "evidence": f"Small left basal effusion. {KEY}"}, EFFUSION]),
    ]  # fmt: skip
    reports = tmp_path / "in.jsonl"
    reports.write_text("".join(json.dumps({"id": str(i), "text": f"Report {i}. {REPORT}"}) + "\n" for i in range(1, 5)))
    out = tmp_path / "out.jsonl"
    proc = run_cli(*llm_args(fake_openai, reports, out), "--max-attempts", "2",
                   env={"OPENAI_API_KEY": KEY, "OPENAI_LOG": "debug"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    everything = proc.stdout + proc.stderr + "".join(p.read_bytes().decode("utf-8", "replace") for p in tmp_path.iterdir())
    assert KEY[:8] not in everything  # not even the part before a trim
    failures = {f["id"]: f["reason"] for f in map(json.loads, (tmp_path / "out.failures.jsonl").read_text().splitlines())}
    assert failures == {
        "1": "endpoint rejected the request with HTTP 401: Incorrect API key provided: [redacted]; you sent "
             "Authorization: Bearer [redacted]",
        "2": "gave up after 2 attempts; last error: HTTP 500: " + "x" * 192 + "[redacte...",
        "3": "reply is not valid JSON: Sorry, no JSON. Your key: [redacted]",
    }  # fmt: skip
    assert f"failed: 1: {failures['1']}" in proc.stderr  # the log line carries the server's words too
    (line,) = map(json.loads, out.read_text().splitlines())
    # the finding quoting the key is not in the report: dropped; the other keeps the report's own words
    assert [t["evidence"] for t in line["triplets"]] == ["Small left basal effusion."]
    assert "dropped: 1 evidence not in the report" in proc.stderr


def test_placeholder_key_that_is_a_word_of_the_report_is_left_in_results(fake_openai):
    fake_openai.script = [Reply.good([{**EFFUSION, "evidence": "Small localized left basal effusion."}])]
    result = make(fake_openai, key="local").extract("FINDINGS: Small localized left basal effusion.")
    assert result.findings[0].evidence == "Small localized left basal effusion."


# --- structured-output negotiation -----------------------------------------------------------------


def response_format_types(server):
    """What each request asked for: the response_format type, ``+schema`` when a schema rides along."""
    kinds = []
    for request in server.requests:
        response_format = request["json"].get("response_format")
        kinds.append("none" if response_format is None else response_format["type"] + ("+schema" if "schema" in response_format else ""))
    return kinds


def test_llama_cpp_server_steps_down_to_json_object_with_schema_once_per_run(fake_openai, caplog):
    fake_openai.response_formats = LLAMA_CPP_RESPONSE_FORMATS  # HTTP 500 with a validation message otherwise
    fake_openai.script = [Reply.good([EFFUSION])]
    records = [Record(f"r{i}", f"Film {i}. {REPORT}") for i in range(8)]
    with caplog.at_level(logging.INFO, logger="bundle.extraction.llm"):
        results, summary = run_extraction(records, make(fake_openai), workers=4, progress=False)
    assert len(results) == 8 and summary.failures == []
    # one rejected request for the whole run, although four workers started at once
    assert response_format_types(fake_openai) == ["json_schema"] + ["json_object+schema"] * 8
    schema = fake_openai.requests[1]["json"]["response_format"]["schema"]
    assert schema["properties"]["findings"]["items"]["properties"]["category"]["enum"][0] == "cardiomegaly"
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("structured output: json_object with the schema attached (llama.cpp style), accepted by "
                           "the endpoint; json_schema was rejected (HTTP 500: 1 validation error:")  # fmt: skip
    assert "'loc': ('body', 'response_format', 'type')" in line


def test_negotiation_goes_down_to_no_response_format_and_still_validates(fake_openai, caplog):
    fake_openai.response_formats = frozenset({"text"})
    bad_item = {"category": "pneumothorax", "presence": "sometimes", "evidence": "Small left basal effusion."}
    fake_openai.script = [Reply.content("Findings:\n" + json.dumps({"findings": [EFFUSION, bad_item]}))]
    extractor = make(fake_openai)
    with caplog.at_level(logging.INFO, logger="bundle.extraction.llm"):
        result = extractor.extract(REPORT)
    assert response_format_types(fake_openai) == ["json_schema", "json_object+schema", "json_object", "none"]
    assert extractor.response_format == "none"
    assert [f.category for f in result.findings] == ["pleural_effusion"]
    assert result.dropped == {INVALID: 1} and "'sometimes' is not one of" in result.warnings[0]
    (line,) = [r.getMessage() for r in caplog.records]
    assert "json_schema was rejected" in line and "json_object_schema was rejected" in line
    assert "json_object was rejected" in line and line.startswith("structured output: no response_format")


def test_a_4xx_naming_response_format_steps_down_too(fake_openai):
    rejection = Reply(400, json.dumps({"error": {"message": "Invalid parameter: 'response_format' of type "
                                                 "'json_schema' is not supported with this model.",
                                                 "param": "response_format"}}))  # fmt: skip
    fake_openai.script = [rejection, Reply.good([EFFUSION])]
    assert make(fake_openai).extract(REPORT).findings
    assert response_format_types(fake_openai) == ["json_schema", "json_object+schema"]


def test_a_pinned_mode_is_never_changed_and_its_rejection_is_not_retried(fake_openai):
    fake_openai.response_formats = LLAMA_CPP_RESPONSE_FORMATS
    with pytest.raises(RequestFailure, match="endpoint rejected response_format json_schema with HTTP 500") as caught:
        make(fake_openai, response_format="json_schema").extract(REPORT)
    assert "--response-format auto" in caught.value.fix
    assert response_format_types(fake_openai) == ["json_schema"]
    fake_openai.script = [Reply.good([EFFUSION])]
    assert make(fake_openai, response_format="json_object").extract(REPORT).findings
    assert response_format_types(fake_openai)[1:] == ["json_object"]


def test_cli_pinned_mode_the_server_refuses_stops_the_run_naming_the_fix(fake_openai, tmp_path):
    fake_openai.response_formats = LLAMA_CPP_RESPONSE_FORMATS
    reports = tmp_path / "in.jsonl"
    reports.write_text("".join(json.dumps({"id": str(i), "text": f"{REPORT} Film {i}."}) + "\n" for i in range(20)))
    out = tmp_path / "out.jsonl"
    proc = run_cli(*llm_args(fake_openai, reports, out), "--response-format", "json_schema", env={"OPENAI_API_KEY": KEY})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(fake_openai.requests) == STOP_AFTER_IDENTICAL_FAILURES  # one request per report, then the stop
    assert (f"error: stopped: the first {STOP_AFTER_IDENTICAL_FAILURES} reports sent to the llm backend all failed the "
            "same way: endpoint rejected response_format json_schema with HTTP 500: 1 validation error:") in proc.stderr
    assert "Fix: use --response-format auto, which steps down to a mode the endpoint takes" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl.cache.sqlite"]  # nothing written


def test_cli_default_mode_works_against_the_llama_cpp_server_and_logs_the_mode(fake_openai, tmp_path):
    fake_openai.response_formats = LLAMA_CPP_RESPONSE_FORMATS
    fake_openai.script = [Reply.good([EFFUSION])]
    reports = tmp_path / "in.jsonl"
    reports.write_text("".join(json.dumps({"id": str(i), "text": f"{REPORT} Film {i}."}) + "\n" for i in range(3)))
    proc = run_cli(*llm_args(fake_openai, reports, tmp_path / "out.jsonl"), "--workers", "2", env={"OPENAI_API_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("structured output: ") == 1
    assert "structured output: json_object with the schema attached (llama.cpp style)" in proc.stderr
    assert f"max_tokens={default_max_tokens(default_knowledge_base())}" in proc.stderr
    assert "done: 3 (new 3, cache hits 0) | failures: 0 | new findings: 3" in proc.stderr


# --- bounded replies ---------------------------------------------------------------------------------


def test_cli_max_tokens_is_sent(fake_openai, tmp_path):
    reports = tmp_path / "in.jsonl"
    reports.write_text(json.dumps({"id": "1", "text": REPORT}) + "\n")
    proc = run_cli(*llm_args(fake_openai, reports, tmp_path / "out.jsonl"), "--max-tokens", "300", env={"OPENAI_API_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    assert fake_openai.requests[0]["json"]["max_tokens"] == 300


def test_default_max_tokens_fits_the_longest_reply_the_schema_allows():
    kb = default_knowledge_base()
    widest = {"category": "enlarged_cardiomediastinum", "location": "bilateral costophrenic angle", "severity": "moderate",
              "presence": "uncertain", "evidence": "x" * MAX_EVIDENCE_CHARS}  # fmt: skip
    assert max(kb.category_ids, key=len) == widest["category"]
    longest_reply = json.dumps({"findings": [widest] * MAX_FINDINGS_PER_REPLY})
    assert default_max_tokens(kb) == -(-len(longest_reply) // CHARS_PER_TOKEN)


def test_endpoint_that_wants_max_completion_tokens_gets_it_for_the_rest_of_the_run(fake_openai, caplog):
    fake_openai.wants_max_completion_tokens = True
    fake_openai.script = [Reply.good([EFFUSION])]
    extractor = make(fake_openai, max_tokens=500)
    with caplog.at_level(logging.INFO, logger="bundle.extraction.llm"):
        assert extractor.extract(REPORT).findings and extractor.extract(REPORT).findings
    sent = [{k: r["json"].get(k) for k in ("max_tokens", "max_completion_tokens")} for r in fake_openai.requests]
    assert sent == [{"max_tokens": 500, "max_completion_tokens": None}] + [{"max_tokens": None, "max_completion_tokens": 500}] * 2
    assert "token limit: the endpoint wants max_completion_tokens instead of max_tokens" in caplog.text


def test_reply_cut_by_the_token_limit_is_a_failure_never_parsed(fake_openai, tmp_path):
    complete_json = json.dumps({"findings": [EFFUSION]})  # valid, yet cut: the rest is unknown
    fake_openai.script = [Reply.content(complete_json, tokens=(100, 64), finish_reason="length")]
    with FindingsCache(tmp_path / "c.sqlite") as cache:
        results, summary = run_extraction([Record("r1", REPORT)], make(fake_openai, max_tokens=64), cache, progress=False)
        assert len(cache) == 0
    assert results == [] and summary.tokens_out == 64
    assert summary.failures == [{"id": "r1", "reason": "reply cut at the token limit (max_tokens=64) before it was "
                                 "complete, so it was not read; raise --max-tokens if replies are legitimately this long"}]
    assert len(fake_openai.requests) == 1  # not retried: the same request would be cut again


# --- fail fast ---------------------------------------------------------------------------------------


def test_run_stops_after_identical_request_failures_at_the_start(fake_openai, tmp_path):
    fake_openai.script = [Reply.error(401)]
    records = [RecordError("empty", "empty report")] + [Record(f"r{i}", REPORT + f" Film {i}.") for i in range(30)]
    with pytest.raises(RunStopped) as stopped:
        run_extraction(records, make(fake_openai), workers=2, progress=False)
    assert len(fake_openai.requests) <= STOP_AFTER_IDENTICAL_FAILURES + 1  # + at most the other worker's request
    assert str(stopped.value) == (
        "stopped: the first 5 reports sent to the llm backend all failed the same way: endpoint rejected the request "
        "with HTTP 401: scripted 401. Fix: check the API key (the variable --api-key-env names) and that it may use "
        "--model; then rerun (reports already extracted are in the cache)"
    )


def test_run_goes_on_when_failures_differ_or_follow_a_success(fake_openai):
    records = [Record(f"r{i}", REPORT + f" Film {i}.") for i in range(12)]
    fake_openai.script = [Reply.good([EFFUSION])] + [Reply.error(401)] * 11
    _, summary = run_extraction(records, make(fake_openai), progress=False)
    assert summary.extracted == 1 and len(summary.failures) == 11
    fake_openai.script = [Reply.error(401), Reply.error(403)] * 6
    _, summary = run_extraction(records, make(fake_openai), progress=False)
    assert len(summary.failures) == 12
    fake_openai.script = [Reply.content("{not json")]  # a bad reply is the model's doing, not a wrong setting
    _, summary = run_extraction(records, make(fake_openai), progress=False)
    assert len(summary.failures) == 12


# --- evidence grounding ------------------------------------------------------------------------------


@pytest.mark.parametrize("evidence, found", [
    ("Small left basal effusion.", "Small left basal effusion."),
    ("small  LEFT basal effusion", "Small left basal effusion."),  # case and whitespace
    ("Small left basal effusion!!", "Small left basal effusion."),  # punctuation
    ("heart is mildly enlarged", "heart is   mildly\nenlarged,"[:-1]),
    ("Small left basilar effusion.", None),  # under ten words: no word may differ
    ("The heart is mildly enlarged with calcified granuloma in the right upper lobe",  # 14 words, one missing
     "The heart is   mildly\nenlarged, with a calcified granuloma in the right upper lobe"),
    ("The heart is moderately enlarged with calcified granuloma in the right upper lobe", None),  # two edits
    ("Small left pleural effusion.", None),
    ("<br/>Small left basal effusion.</p>", None),  # HTML debris: three words more
    ("", None),
])  # fmt: skip
def test_grounding_tolerance(evidence, found):
    report = ("FINDINGS: Small left basal effusion.  No pneumothorax. The heart is   mildly\nenlarged, with a calcified "
              "granuloma in the right upper lobe near the hilum.")  # fmt: skip
    assert quoted_span(evidence, report) == found


def test_ten_word_evidence_may_differ_by_one_word():
    report = "There is a small left pleural effusion with adjacent basilar atelectasis today."
    assert quoted_span("There is a small left pleural effusion with adjacent atelectasis", report)  # 10 words, 1 missing
    assert quoted_span("There is a small left pleural effusion with adjacent lingular atelectasis", report)  # 1 changed
    assert quoted_span("There is a small left effusion with adjacent lingular atelectasis", report) is None  # 2


def test_ungrounded_findings_are_dropped_counted_and_a_reply_of_only_those_fails(fake_openai, tmp_path):
    made_up = {**EFFUSION, "category": "pneumothorax", "evidence": "Large right pneumothorax."}
    outside = {**EFFUSION, "category": "zorblax"}
    fake_openai.script = [Reply.good([EFFUSION, made_up]), Reply.good([made_up, made_up]), Reply.good([outside])]
    reports = tmp_path / "in.jsonl"
    reports.write_text("".join(json.dumps({"id": str(i), "text": f"{REPORT} Film {i}."}) + "\n" for i in range(3)))
    out = tmp_path / "out.jsonl"
    proc = run_cli(*llm_args(fake_openai, reports, out), env={"OPENAI_API_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    # a category outside the knowledge base is no finding, as with the rules backend: report 2 has none
    assert [(line["id"], [t["category"] for t in line["triplets"]]) for line in lines] == [("0", ["pleural_effusion"]),
                                                                                             ("2", [])]  # fmt: skip
    (failure,) = map(json.loads, (tmp_path / "out.failures.jsonl").read_text().splitlines())
    assert failure == {"id": "1", "reason": "evidence not in the report: all 2 findings dropped (finding 0 dropped: "
                       "evidence 'Large right pneumothorax.' is not in the report)"}  # fmt: skip
    assert ("failures: 1 | new findings: 1, dropped: 3 evidence not in the report, 1 category outside the knowledge "
            "base") in proc.stderr
    with FindingsCache(Path(f"{out}.cache.sqlite")) as cache:
        assert len(cache) == 2  # the failed report is retried on the next run


def test_a_reply_copying_a_few_shot_example_is_caught(fake_openai, realdata):
    """The 270M model copied the prompt's example; the examples are written so that such a copy never passes."""
    prompt = Prompt.load()
    copied = prompt.messages("", default_knowledge_base())[1]["content"]  # the first example's answer, verbatim
    fake_openai.script = [Reply.content(copied)]
    with (realdata / "iu-xray-openi" / "iu_reports_dev.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:5]
    records = [Record(r["uId"], compose_text(r, ["findings", "impression"])) for r in rows]
    results, summary = run_extraction(records, make(fake_openai), progress=False)
    assert results == [] and len(summary.failures) == 5
    assert all(f["reason"].startswith("evidence not in the report: all 4 findings dropped") for f in summary.failures)


def test_no_example_sentence_occurs_in_a_real_or_synthetic_report(realdata):
    prompt = Prompt.load()
    evidence = {f["evidence"] for example in prompt.examples for f in example["findings"]}
    assert len(evidence) >= 6
    with (realdata / "iu-xray-openi" / "iu_reports_dev.csv").open(newline="", encoding="utf-8") as handle:
        reports = [compose_text(r, ["findings", "impression"]) for r in csv.DictReader(handle)]
    reports += [generate_study(seed=s, size=32).report for s in range(100)]
    assert len(reports) > 1000
    assert [(e, r) for e in evidence for r in reports if quoted_span(e, r)] == []
    # and each example's answer quotes its own report, as the model is asked to
    for example in prompt.examples:
        assert all(quoted_span(f["evidence"], example["report"]) == f["evidence"] for f in example["findings"])


def test_prompt_puts_instructions_in_the_first_user_turn_and_is_versioned():
    messages = Prompt.load().messages("FINDINGS: No effusion.", default_knowledge_base())
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"].startswith("You are a radiologist") and "pleural_effusion, pericardial" in messages[0]["content"]
    assert messages[-1]["content"] == "FINDINGS: No effusion."
    assert DEFAULT_PROMPT_VERSION == "gpt-ie-v2"  # bumped with the examples: v1 results are not reused from the cache


def test_reply_schema_suits_strict_structured_output():
    """OpenAI's strict mode: every object closed, every property required, no unsupported keyword."""
    schema = reply_schema(default_knowledge_base())
    objects = [schema, schema["properties"]["findings"]["items"]]
    for node in objects:
        assert node["additionalProperties"] is False and sorted(node["required"]) == sorted(node["properties"])
    assert "minLength" not in json.dumps(schema)
