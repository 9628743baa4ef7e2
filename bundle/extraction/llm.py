"""Backend ``llm`` (GPT-IE): findings from any OpenAI-compatible chat-completions endpoint.

- The ``openai`` client with its own retries off (``max_retries=0``). Retries here back off
  exponentially with jitter, or wait the server's ``Retry-After``, on errors that a later try can
  fix: timeouts, connection errors, 408 / 409 / 429 / 502 / 503 / 504, and another 5xx until it
  answers the same twice. Every other error fails the report at once, as a ``RequestFailure``
  carrying the fix, so that the runner can stop a run whose first reports all fail the same way.
- Structured output is negotiated once per run: ``json_schema`` (OpenAI, vLLM, Ollama) ->
  ``json_object`` with the schema attached as llama.cpp's servers take it -> plain
  ``json_object`` -> none. The first rejection whose message names ``response_format`` (whatever
  its status code) steps down one mode for the rest of the run, and the mode the endpoint accepts
  is logged in one line. A rejection naming ``max_completion_tokens`` switches the token limit
  from ``max_tokens`` to that parameter the same way. Until the endpoint has accepted a request,
  requests go one at a time, so that concurrent workers do not all meet the same rejection.
- Replies are bounded (``max_tokens``, by default sized from the reply schema) and a reply cut by
  the limit (``finish_reason`` ``length``) is a failure, never parsed.
- A versioned prompt (``prompts/<version>.yaml``) with few-shot examples; temperature 0. Every
  reply, whatever the mode, is parsed, validated against the findings schema, checked against its
  report (``grounding``: a finding whose evidence is not in the report is dropped and counted; a
  reply none of whose findings is grounded is a failure) and normalised to the knowledge base
  (a category outside it is dropped and counted, as the rules backend never reports one).
- Privacy: reports are patient data, so only a loopback endpoint is accepted unless the caller
  opts in with ``allow_remote=True``. Without that opt-in the proxy environment variables
  (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) are ignored, since they would route
  the reports off the machine; an explicit ``proxy`` passes the same loopback check. Redirects
  are never followed (a redirect could point anywhere).
- The API key is passed in (never read here). Everything the endpoint sends back (error bodies,
  replies, evidence) has the key and any ``Authorization`` / ``Bearer`` value replaced by
  ``[redacted]`` before it reaches a message, a warning, a result or the cache.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import json
import logging
import math
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import jsonschema
import openai
import yaml

from bundle.extraction.backend import ExtractionFailure, ExtractionResult, RequestFailure
from bundle.extraction.grounding import quoted_span
from bundle.findings import FINDING_SCHEMA, Finding, Presence
from bundle.knowledge.base import KnowledgeBase

logger = logging.getLogger(__name__)

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
DEFAULT_PROMPT_VERSION = "gpt-ie-v2"
FINDING_ITEM_SCHEMA: dict[str, Any] = {k: v for k, v in FINDING_SCHEMA.items() if k not in ("$schema", "title")}
# Structured-output modes, most to least constrained: negotiation starts at the first ("auto").
STRUCTURED_MODES = ("json_schema", "json_object_schema", "json_object", "none")
RESPONSE_FORMATS = ("auto", *STRUCTURED_MODES)
MODE_DESCRIPTIONS = {
    "json_schema": "json_schema (strict structured output)",
    "json_object_schema": "json_object with the schema attached (llama.cpp style)",
    "json_object": "json_object (any JSON; the schema is checked on arrival)",
    "none": "no response_format (plain text; the JSON is found and checked on arrival)",
}
# Errors a later try can fix; any other 5xx is retried only until it answers the same twice.
TRANSIENT_STATUSES = frozenset({408, 409, 429, 502, 503, 504})
# The default reply budget: this many findings, each as long as the schema and the knowledge base
# allow with an evidence sentence of MAX_EVIDENCE_CHARS, at CHARS_PER_TOKEN (JSON is dense in tokens).
MAX_FINDINGS_PER_REPLY = 16
MAX_EVIDENCE_CHARS = 160
CHARS_PER_TOKEN = 3
PRESENCE_ALIASES = {
    "positive": "present", "yes": "present", "true": "present", "negative": "absent", "no": "absent",
    "false": "absent", "negated": "absent", "possible": "uncertain", "probable": "uncertain", "unknown": "uncertain",
}  # fmt: skip
# Why an item of a reply is not kept (``ExtractionResult.dropped`` keys).
NOT_GROUNDED = "evidence not in the report"
OUTSIDE_KNOWLEDGE_BASE = "category outside the knowledge base"
INVALID = "not a valid finding"
# How a failure reason begins when the endpoint answered but the reply is unusable (the model's
# doing, not a wrong setting): cut by the token limit, not JSON, not findings, none kept.
CUT = "reply cut at the token limit"
NOT_JSON = "reply is not valid JSON"
NOT_FINDINGS = "reply is not a JSON object with a 'findings' list"
NONE_VALID = "no valid finding in the reply"
REPLY_FAILURES = (CUT, NOT_JSON, NOT_FINDINGS, NONE_VALID, NOT_GROUNDED)


class PrivacyError(ValueError):
    """The endpoint is not on this machine and remote endpoints were not allowed."""


def check_endpoint_privacy(base_url: str, allow_remote: bool, what: str = "endpoint") -> None:
    """Refuse a non-loopback endpoint (or proxy: ``what``) unless ``allow_remote``.

    Raises:
        PrivacyError: explaining that reports are patient data and how to opt in.
    """
    host = urlparse(base_url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    if not allow_remote:
        raise PrivacyError(
            f"refusing to send reports to {host or base_url!r}: reports are patient data and this {what} is not on "
            "the loopback address (127.0.0.1 / ::1 / localhost). If your data agreement allows sending them there, "
            "opt in explicitly with --allow-remote-endpoint."
        )


def reply_schema(knowledge_base: KnowledgeBase) -> dict[str, Any]:
    """The reply's JSON schema as sent to the endpoint: ``{"findings": [finding, ...]}``.

    Category ids are an enum, so constrained decoding cannot leave the knowledge base. The
    evidence stays free text on purpose: constrained to the report's sentences, a copied example
    would quote the report and pass the evidence check. Only keywords that OpenAI's strict mode,
    llama.cpp's grammars, vLLM and Ollama all take.
    """
    properties = {k: {"type": v["type"]} for k, v in FINDING_ITEM_SCHEMA["properties"].items()}
    properties["category"]["enum"] = list(knowledge_base.category_ids)
    properties["presence"]["enum"] = [p.value for p in Presence]
    finding = {"type": "object", "properties": properties, "required": list(FINDING_ITEM_SCHEMA["required"]),
               "additionalProperties": False}  # fmt: skip
    return {"type": "object", "properties": {"findings": {"type": "array", "items": finding}}, "required": ["findings"],
            "additionalProperties": False}  # fmt: skip


def default_max_tokens(knowledge_base: KnowledgeBase) -> int:
    """Reply budget: ``MAX_FINDINGS_PER_REPLY`` findings at the longest values the schema and the
    knowledge base allow, evidence of ``MAX_EVIDENCE_CHARS``, at ``CHARS_PER_TOKEN``."""
    widest = {
        "category": max(knowledge_base.category_ids, key=len),
        "location": f"{max(knowledge_base.laterality, key=len)} {max(knowledge_base.regions, key=len)}",
        "severity": max(knowledge_base.severities, key=len),
        "presence": max((p.value for p in Presence), key=len),
        "evidence": "x" * MAX_EVIDENCE_CHARS,
    }
    return math.ceil(len(json.dumps({"findings": [widest] * MAX_FINDINGS_PER_REPLY})) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Prompt:
    """A versioned GPT-IE prompt: instructions (with ``{categories}``-style slots) and few-shot examples."""

    version: str
    instructions: str
    examples: tuple[dict, ...]

    @classmethod
    def load(cls, version: str = DEFAULT_PROMPT_VERSION, folder: Path = PROMPT_DIR) -> "Prompt":
        path = folder / f"{version}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in folder.glob("*.yaml"))
            raise ValueError(f"prompt version {version!r} not found in {folder}; available: {known}")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return cls(version=data["version"], instructions=data["instructions"], examples=tuple(data["examples"]))

    def messages(self, report: str, knowledge_base: KnowledgeBase) -> list[dict[str, str]]:
        """Chat messages: each example as a user/assistant turn, then the report as the last user turn.

        The instructions head the first user turn rather than a system message, which some chat
        templates drop (llama-cpp-python's ``gemma``) or refuse.
        """
        instructions = (
            self.instructions.replace("{categories}", ", ".join(knowledge_base.category_ids))
            .replace("{lateralities}", ", ".join(knowledge_base.laterality))
            .replace("{regions}", ", ".join(knowledge_base.regions))
            .replace("{severities}", ", ".join(knowledge_base.severities))
        )
        turns = []
        for example in self.examples:
            turns.append({"role": "user", "content": example["report"]})
            turns.append({"role": "assistant", "content": json.dumps({"findings": example["findings"]})})
        turns.append({"role": "user", "content": report})
        turns[0] = {"role": "user", "content": f"{instructions}\nReport:\n{turns[0]['content']}"}
        return turns


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt k waits ``base * 2**k`` (capped) times U(1-jitter, 1+jitter),
    or the server's ``Retry-After`` when given (capped at ``max_delay``)."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.25

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        backoff = min(self.base_delay * 2**attempt, self.max_delay)
        return backoff * rng.uniform(1 - self.jitter, 1 + self.jitter)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Dropped(ValueError):
    """An item of a reply that is not kept: ``reason`` is one of the ``dropped`` keys."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class LLMExtractor:
    """GPT-IE over an OpenAI-compatible endpoint.

    Args:
        knowledge_base: vocabulary for the prompt and for normalising replies.
        base_url: endpoint, e.g. ``http://127.0.0.1:8000/v1``.
        model: model name sent to the endpoint (part of the cache key).
        api_key: the key itself (the CLI reads it from an environment variable).
        prompt: the prompt (default ``gpt-ie-v2``).
        allow_remote: allow a non-loopback endpoint or proxy (patient data leaves the machine); also
            lets the HTTP client honour the proxy environment variables.
        proxy: HTTP proxy URL for every request (checked like ``base_url``); None: no proxy, or
            the environment's when ``allow_remote``.
        timeout: seconds per request.
        retry: retry policy for the errors a later try can fix.
        response_format: ``auto`` (negotiate, see the module notes) or one of ``STRUCTURED_MODES``
            to pin it.
        max_tokens: most tokens per reply (None: ``default_max_tokens``).
        sleep, rng: injectable for tests.

    Thread-safe: one extractor serves all the runner's workers.
    """

    backend = "llm"

    def __init__(
        self,
        knowledge_base: KnowledgeBase,
        base_url: str,
        model: str,
        api_key: str,
        prompt: Prompt | None = None,
        allow_remote: bool = False,
        proxy: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        response_format: str = "auto",
        max_tokens: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        check_endpoint_privacy(base_url, allow_remote)
        if proxy is not None:
            check_endpoint_privacy(proxy, allow_remote, what="proxy")
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}, got {response_format!r}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.kb = knowledge_base
        self.model = model
        self.prompt = prompt or Prompt.load()
        self.prompt_version = self.prompt.version
        self.retry = retry
        self.max_tokens = max_tokens or default_max_tokens(knowledge_base)
        self._schema = reply_schema(knowledge_base)
        self._pinned = response_format != "auto"
        # The requested mode, not the negotiated one: lookups happen before negotiation, and "auto"
        # settles on the same mode against the same server, so a resumed run finds its results.
        self.decoding = f"response_format={response_format}"
        self._mode = STRUCTURED_MODES[0] if response_format == "auto" else response_format
        self._token_parameter = "max_tokens"
        self._rejected: list[str] = []  # why each mode was given up, for the one log line
        self._accepted = threading.Event()  # set once the endpoint has accepted a request
        self._lock = threading.Lock()  # guards the negotiated settings
        self._one_at_a_time = threading.Lock()  # held around requests until then
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._api_key = api_key  # only to redact it from what the endpoint sends back
        # trust_env=False: the environment's proxies (and its CA bundle) apply only after the opt-in
        http_client = openai.DefaultHttpxClient(proxy=proxy, trust_env=allow_remote, follow_redirects=False)
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout, http_client=http_client
        )

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"LLMExtractor(model={self.model!r}, prompt={self.prompt_version!r})"

    def close(self) -> None:
        """Close the HTTP connections (idempotent)."""
        self._client.close()

    @property
    def response_format(self) -> str:
        """The structured-output mode requests are sent with now."""
        return self._mode

    def _request_kwargs(self, mode: str, token_parameter: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "temperature": 0, token_parameter: self.max_tokens}
        if mode == "json_schema":
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "report_findings", "strict": True, "schema": self._schema},
            }
        elif mode == "json_object_schema":
            kwargs["response_format"] = {"type": "json_object", "schema": self._schema}
        elif mode == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        return kwargs

    def _gate(self) -> contextlib.AbstractContextManager[Any]:
        """Until the endpoint has accepted a request, one request at a time: concurrent workers
        would otherwise all meet the same rejection of a structured-output mode."""
        return contextlib.nullcontext() if self._accepted.is_set() else self._one_at_a_time

    def _announce(self, mode: str) -> None:
        """Log, once per run, the structured-output mode that the endpoint accepted."""
        with self._lock:
            if self._accepted.is_set():
                return
            how = "fixed by --response-format" if self._pinned else "accepted by the endpoint"
            logger.info("structured output: %s, %s%s; kept for this run, replies bounded by %s=%d",
                        MODE_DESCRIPTIONS[mode], how, "".join(f"; {why}" for why in self._rejected),
                        self._token_parameter, self.max_tokens)  # fmt: skip
            self._accepted.set()

    def _adapt(self, error: openai.APIStatusError, mode: str, token_parameter: str) -> bool:
        """Whether to resend at once: another worker already adapted the settings, or ``error``
        rejects the token-limit parameter or (when negotiating) the structured-output mode."""
        text = error.response.text.lower()
        with self._lock:
            if (mode, token_parameter) != (self._mode, self._token_parameter):
                return True
            if token_parameter == "max_tokens" and "max_completion_tokens" in text:
                self._token_parameter = "max_completion_tokens"
                logger.info("token limit: the endpoint wants max_completion_tokens instead of max_tokens; "
                            "using it for this run")  # fmt: skip
                return True
            if "response_format" in text and not self._pinned and mode != STRUCTURED_MODES[-1]:
                self._rejected.append(f"{mode} was rejected (HTTP {error.status_code}{self._server_words(error)})")
                self._mode = STRUCTURED_MODES[STRUCTURED_MODES.index(mode) + 1]
                return True
        return False

    def extract(self, text: str) -> ExtractionResult:
        """Findings of one report; raises ``ExtractionFailure`` with the reason when it cannot."""
        messages = self.prompt.messages(text, self.kb)
        last_problem, fix, previous_answer = "", "", None
        attempt = 0
        while attempt < self.retry.max_attempts:
            retry_after = None
            with self._gate():
                with self._lock:
                    mode, token_parameter = self._mode, self._token_parameter
                try:
                    completion = self._client.chat.completions.create(
                        messages=messages, **self._request_kwargs(mode, token_parameter)
                    )
                except openai.APITimeoutError:
                    last_problem = "request timed out"
                    fix = "raise --timeout, or use a faster server or a smaller model"
                except openai.APIConnectionError as error:
                    last_problem = f"connection error ({type(error.__cause__).__name__ if error.__cause__ else 'no detail'})"
                    fix = "check that the server is running and listening at --base-url"
                except openai.APIStatusError as error:
                    if self._adapt(error, mode, token_parameter):
                        continue  # not an attempt: the next request differs
                    status, said = error.status_code, self._server_words(error)
                    self._raise_unless_retryable(error, mode, status, said, previous_answer)
                    previous_answer = (status, error.response.text)
                    last_problem = f"HTTP {status}{said}"
                    fix = ("the endpoint is rate-limiting or busy: lower --workers, or raise --max-attempts / --backoff"
                           if status in TRANSIENT_STATUSES else "see the server's log")  # fmt: skip
                    retry_after = parse_retry_after(error.response.headers.get("retry-after"))
                except Exception as error:  # noqa: BLE001 - whatever the client raises may quote the server
                    raise ExtractionFailure(_short(self._redact(f"{type(error).__name__}: {error}"))) from None
                else:
                    self._announce(mode)
                    return self._result(completion, text, token_parameter)
            attempt += 1
            if attempt < self.retry.max_attempts:
                self._sleep(self.retry.delay(attempt - 1, retry_after, self._rng))
        raise RequestFailure(f"gave up after {self.retry.max_attempts} attempts; last error: {last_problem}", fix)

    def _raise_unless_retryable(
        self, error: openai.APIStatusError, mode: str, status: int, said: str, previous_answer: tuple[int, str] | None
    ) -> None:
        """Raise ``RequestFailure`` for an error no retry can fix; return for one worth retrying."""
        if 300 <= status < 400:
            target = self._redact(error.response.headers.get("location", "?"))
            raise RequestFailure(
                f"endpoint answered HTTP {status}, a redirect to {target!r}, which is not followed (it could lead off "
                "this machine)", "set --base-url to the final address"
            ) from None  # fmt: skip
        if "response_format" in error.response.text.lower():
            raise RequestFailure(
                f"endpoint rejected response_format {mode} with HTTP {status}{said}",
                "use --response-format auto, which steps down to a mode the endpoint takes"
                if self._pinned else "the endpoint takes no structured-output mode; see its documentation",
            ) from None
        if status in TRANSIENT_STATUSES:
            return
        if status >= 500:
            if previous_answer == (status, error.response.text):
                raise RequestFailure(f"endpoint failed with HTTP {status}{said}, the same answer twice, so it was not "
                                     "retried further", "see the server's log") from None  # fmt: skip
            return
        raise RequestFailure(f"endpoint rejected the request with HTTP {status}{said}", _fix_for_status(status)) from None

    def _redact(self, text: str, report: str = "") -> str:
        """Endpoint text with any Authorization value and the key replaced by ``[redacted]``.

        The key is kept where the report itself contains it (a placeholder key such as ``local``
        in "localized"): a reply quoting the report then reveals nothing about the key.
        """
        text = _AUTHORIZATION_VALUE.sub(lambda match: match.group(1) + REDACTED, text)
        return text.replace(self._api_key, REDACTED) if self._api_key and self._api_key not in report else text

    def _server_words(self, error: openai.APIStatusError) -> str:
        """``": <the server's message>"``, redacted then trimmed, or ``""`` when it said nothing."""
        body = error.body
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            words = body["message"]
        elif body:
            words = body if isinstance(body, str) else json.dumps(body)
        else:
            words = error.response.text
        return f": {_short(self._redact(words))}" if words.strip() else ""

    def _result(self, completion: Any, report: str, token_parameter: str) -> ExtractionResult:
        usage = getattr(completion, "usage", None)
        tokens_in = getattr(usage, "prompt_tokens", 0) or 0
        tokens_out = getattr(usage, "completion_tokens", 0) or 0
        try:
            choice = completion.choices[0]
            # redacted before parsing: findings, warnings and failure messages all quote the reply
            content = self._redact(choice.message.content or "", report)
        except (AttributeError, IndexError, TypeError):
            choice, content = None, ""
        if getattr(choice, "finish_reason", None) == "length":
            raise ExtractionFailure(
                f"{CUT} ({token_parameter}={self.max_tokens}) before it was complete, so it "
                "was not read; raise --max-tokens if replies are legitimately this long", tokens_in, tokens_out
            )  # fmt: skip
        try:
            findings, warnings, dropped = self.parse_reply(content, report)
        except ExtractionFailure as failure:
            failure.tokens_in, failure.tokens_out = tokens_in, tokens_out
            raise
        return ExtractionResult(findings, tokens_in, tokens_out, warnings, dropped)

    def parse_reply(self, content: str, report: str) -> tuple[list[Finding], list[str], Counter[str]]:
        """Validate a reply, check it against ``report`` and normalise it to knowledge-base findings.

        Repairs: a code fence or prose around the JSON, a bare list instead of
        ``{"findings": [...]}``, missing optional fields, category names or synonyms instead of
        ids, free-text locations/severities, presence aliases. An item is dropped, with a warning
        and counted per reason, when its evidence is not in the report (``grounding``), when it
        still does not fit the findings schema, or when its category is outside the knowledge base.
        A kept finding's evidence is the report's own text that it quotes.

        Returns:
            the findings, the warnings and the count of dropped items per reason.

        Raises:
            ExtractionFailure: no usable JSON; or items but none kept, and not all of them merely
                outside the knowledge base (the rules backend would report such a report as
                having no findings): "evidence not in the report" when any was ungrounded.
        """
        data = _load_json(content)
        if isinstance(data, list):
            data = {"findings": data}
        if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
            raise ExtractionFailure(f"{NOT_FINDINGS}: {_short(content)}")
        findings, warnings, dropped = [], [], Counter()
        for k, item in enumerate(data["findings"]):
            try:
                findings.append(self._checked_item(item, report))
            except _Dropped as problem:
                dropped[problem.reason] += 1
                warnings.append(f"finding {k} dropped: {problem}")
        if data["findings"] and not findings and set(dropped) != {OUTSIDE_KNOWLEDGE_BASE}:
            first = next((w for w in warnings if NOT_GROUNDED in w), warnings[0])
            reason = NOT_GROUNDED if dropped[NOT_GROUNDED] else NONE_VALID
            raise ExtractionFailure(f"{reason}: all {len(warnings)} findings dropped ({first})", dropped=dropped)
        return findings, warnings, dropped

    def _checked_item(self, item: Any, report: str) -> Finding:
        if not isinstance(item, dict):
            raise _Dropped(INVALID, f"not an object: {_short(json.dumps(item))}")
        record = {"location": None, "severity": None, "presence": "present", "evidence": ""}
        record.update({k: v for k, v in item.items() if k in FINDING_SCHEMA["properties"]})
        evidence = record["evidence"]
        if not isinstance(evidence, str) or not evidence.strip():
            raise _Dropped(NOT_GROUNDED, "it quotes no evidence")
        span = quoted_span(evidence, report)
        if span is None:
            raise _Dropped(NOT_GROUNDED, f"evidence {_short(evidence, 80)!r} is not in the report")
        if isinstance(record["presence"], str):
            presence = record["presence"].strip().lower()
            record["presence"] = PRESENCE_ALIASES.get(presence, presence)
        try:
            jsonschema.validate(record, FINDING_ITEM_SCHEMA)
        except jsonschema.ValidationError as error:
            raise _Dropped(INVALID, error.message) from None
        category = self.kb.category_for(record["category"])
        if category is None:
            raise _Dropped(OUTSIDE_KNOWLEDGE_BASE, f"category {record['category']!r} is not in the knowledge base")
        return Finding(
            category=category,
            location=self.kb.normalise_location(record["location"]),
            severity=self.kb.normalise_severity(record["severity"]),
            presence=Presence(record["presence"]),
            evidence=span,
        )


def _fix_for_status(status: int) -> str:
    if status in (401, 403):
        return "check the API key (the variable --api-key-env names) and that it may use --model"
    if status == 404:
        return "check --base-url (it usually ends in /v1) and --model"
    return "the server's message above says what it refused; change that setting"


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
# A credential after "Authorization:" / "authorization=" or "Bearer " (ends before a quote: JSON stays valid).
_AUTHORIZATION_VALUE = re.compile(
    r"""(?i)(authorization["']?\s*[:=]\s*["']?(?:(?:bearer|basic)\s+)?|\bbearer\s+)[^\s"',;}\]]+"""
)
REDACTED = "[redacted]"


def _load_json(content: str) -> Any:
    candidates = [content]
    fenced = _FENCE.search(content)
    if fenced:
        candidates.append(fenced.group(1))
    start, end = content.find("{"), content.rfind("}")
    if 0 <= start < end:
        candidates.append(content[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, TypeError):
            continue
    raise ExtractionFailure(f"{NOT_JSON}: {_short(content)}")


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."
