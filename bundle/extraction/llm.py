"""Backend ``llm`` (GPT-IE): findings from any OpenAI-compatible chat-completions endpoint.

- The ``openai`` client with its own retries off (``max_retries=0``): retries here honour
  ``Retry-After``, back off exponentially with jitter on 429 / 5xx / timeouts / connection
  errors, and end in a failure record for the report, never an exception for the run.
- A versioned prompt (``prompts/<version>.yaml``) with few-shot examples; temperature 0;
  structured output (``json_schema``) where the endpoint supports it, ``json_object`` or plain
  text otherwise. Every reply is parsed, validated and normalised to the knowledge base.
- Privacy: reports are patient data, so only a loopback endpoint is accepted unless the caller
  opts in with ``allow_remote=True``. The API key is passed in (never read here) and never
  appears in messages, logs or results.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import jsonschema
import openai
import yaml

from bundle.extraction.backend import ExtractionFailure, ExtractionResult
from bundle.findings import FINDING_SCHEMA, Finding, Presence
from bundle.knowledge.base import KnowledgeBase

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
DEFAULT_PROMPT_VERSION = "gpt-ie-v1"
REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"findings": {"type": "array", "items": {k: v for k, v in FINDING_SCHEMA.items() if k not in ("$schema", "title")}}},
    "required": ["findings"],
    "additionalProperties": False,
}
RESPONSE_FORMATS = ("json_schema", "json_object", "none")
PRESENCE_ALIASES = {
    "positive": "present", "yes": "present", "true": "present", "negative": "absent", "no": "absent",
    "false": "absent", "negated": "absent", "possible": "uncertain", "probable": "uncertain", "unknown": "uncertain",
}  # fmt: skip


class PrivacyError(ValueError):
    """The endpoint is not on this machine and remote endpoints were not allowed."""


def check_endpoint_privacy(base_url: str, allow_remote: bool) -> None:
    """Refuse a non-loopback endpoint unless ``allow_remote``.

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
            f"refusing to send reports to {host or base_url!r}: reports are patient data and this endpoint is not on "
            "the loopback address (127.0.0.1 / ::1 / localhost). If your data agreement allows sending them there, "
            "opt in explicitly with --allow-remote-endpoint."
        )


@dataclass(frozen=True)
class Prompt:
    """A versioned GPT-IE prompt: system text (with ``{categories}``-style slots) and few-shot examples."""

    version: str
    system: str
    examples: tuple[dict, ...]

    @classmethod
    def load(cls, version: str = DEFAULT_PROMPT_VERSION, folder: Path = PROMPT_DIR) -> "Prompt":
        path = folder / f"{version}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in folder.glob("*.yaml"))
            raise ValueError(f"prompt version {version!r} not found in {folder}; available: {known}")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return cls(version=data["version"], system=data["system"], examples=tuple(data["examples"]))

    def messages(self, report: str, knowledge_base: KnowledgeBase) -> list[dict[str, str]]:
        """Chat messages: system rules, then each example as a user/assistant turn, then the report."""
        system = (
            self.system.replace("{categories}", ", ".join(knowledge_base.category_ids))
            .replace("{lateralities}", ", ".join(knowledge_base.laterality))
            .replace("{regions}", ", ".join(knowledge_base.regions))
            .replace("{severities}", ", ".join(knowledge_base.severities))
        )
        messages = [{"role": "system", "content": system}]
        for example in self.examples:
            messages.append({"role": "user", "content": example["report"]})
            messages.append({"role": "assistant", "content": json.dumps({"findings": example["findings"]})})
        messages.append({"role": "user", "content": report})
        return messages


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


class LLMExtractor:
    """GPT-IE over an OpenAI-compatible endpoint.

    Args:
        knowledge_base: vocabulary for the prompt and for normalising replies.
        base_url: endpoint, e.g. ``http://127.0.0.1:8000/v1``.
        model: model name sent to the endpoint (part of the cache key).
        api_key: the key itself (the CLI reads it from an environment variable).
        prompt: the prompt (default ``gpt-ie-v1``).
        allow_remote: allow a non-loopback endpoint (patient data leaves the machine).
        timeout: seconds per request.
        retry: retry policy for 429 / 5xx / timeouts / connection errors.
        response_format: ``json_schema`` (structured output), ``json_object`` or ``none``.
        sleep, rng: injectable for tests.
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
        timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        response_format: str = "json_schema",
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        check_endpoint_privacy(base_url, allow_remote)
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}, got {response_format!r}")
        self.kb = knowledge_base
        self.model = model
        self.prompt = prompt or Prompt.load()
        self.prompt_version = self.prompt.version
        self.retry = retry
        self.response_format = response_format
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout)

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"LLMExtractor(model={self.model!r}, prompt={self.prompt_version!r})"

    def _request_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "temperature": 0}
        if self.response_format == "json_schema":
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "report_findings", "strict": True, "schema": REPLY_SCHEMA},
            }
        elif self.response_format == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        return kwargs

    def extract(self, text: str) -> ExtractionResult:
        """Findings of one report; raises ``ExtractionFailure`` with the reason when it cannot."""
        messages = self.prompt.messages(text, self.kb)
        last_problem = ""
        for attempt in range(self.retry.max_attempts):
            retry_after = None
            try:
                completion = self._client.chat.completions.create(messages=messages, **self._request_kwargs())
            except openai.APITimeoutError:
                last_problem = "request timed out"
            except openai.APIConnectionError as error:
                last_problem = f"connection error ({type(error.__cause__).__name__ if error.__cause__ else 'no detail'})"
            except openai.APIStatusError as error:
                status = error.status_code
                if status != 429 and status < 500:
                    raise ExtractionFailure(f"endpoint rejected the request with HTTP {status}: {_short(error.message)}") from None
                last_problem = f"HTTP {status}"
                retry_after = parse_retry_after(error.response.headers.get("retry-after"))
            else:
                return self._result(completion)
            if attempt + 1 < self.retry.max_attempts:
                self._sleep(self.retry.delay(attempt, retry_after, self._rng))
        raise ExtractionFailure(f"gave up after {self.retry.max_attempts} attempts; last error: {last_problem}")

    def _result(self, completion: Any) -> ExtractionResult:
        usage = getattr(completion, "usage", None)
        tokens_in = getattr(usage, "prompt_tokens", 0) or 0
        tokens_out = getattr(usage, "completion_tokens", 0) or 0
        try:
            content = completion.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            content = ""
        try:
            findings, warnings = self.parse_reply(content)
        except ExtractionFailure as failure:
            failure.tokens_in, failure.tokens_out = tokens_in, tokens_out
            raise
        return ExtractionResult(findings, tokens_in, tokens_out, warnings)

    def parse_reply(self, content: str) -> tuple[list[Finding], list[str]]:
        """Validate and normalise a reply to knowledge-base findings.

        Repairs: a code fence or prose around the JSON, a bare list instead of
        ``{"findings": [...]}``, missing optional fields, category names or synonyms instead
        of ids, free-text locations/severities, presence aliases. Items that still do not fit
        are dropped with a warning; a reply with no usable JSON raises ``ExtractionFailure``.
        """
        data = _load_json(content)
        if isinstance(data, list):
            data = {"findings": data}
        if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
            raise ExtractionFailure(f"reply is not a JSON object with a 'findings' list: {_short(content)}")
        findings, warnings = [], []
        for k, item in enumerate(data["findings"]):
            try:
                findings.append(self._normalise_item(item))
            except ValueError as problem:
                warnings.append(f"finding {k} dropped: {problem}")
        return findings, warnings

    def _normalise_item(self, item: Any) -> Finding:
        if not isinstance(item, dict):
            raise ValueError(f"not an object: {_short(json.dumps(item))}")
        record = {"location": None, "severity": None, "presence": "present", "evidence": ""}
        record.update({k: v for k, v in item.items() if k in FINDING_SCHEMA["properties"]})
        if isinstance(record["presence"], str):
            presence = record["presence"].strip().lower()
            record["presence"] = PRESENCE_ALIASES.get(presence, presence)
        try:
            jsonschema.validate(record, REPLY_SCHEMA["properties"]["findings"]["items"])
        except jsonschema.ValidationError as error:
            raise ValueError(error.message) from None
        category = self.kb.category_for(record["category"])
        if category is None:
            raise ValueError(f"category {record['category']!r} is not in the knowledge base")
        return Finding(
            category=category,
            location=self.kb.normalise_location(record["location"]),
            severity=self.kb.normalise_severity(record["severity"]),
            presence=Presence(record["presence"]),
            evidence=record["evidence"],
        )


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


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
    raise ExtractionFailure(f"reply is not valid JSON: {_short(content)}")


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."
