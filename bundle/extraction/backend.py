"""What every extraction backend returns and raises, so the runner can drive any of them.

A backend has ``backend`` (name), ``model``, ``prompt_version``, ``decoding`` (the settings that
shape a reply besides the prompt: the requested structured-output mode for the LLM) and ``kb``
(its knowledge base) attributes, which with the report hash make the cache key
(``cache.CacheKey``), ``close()`` for what it holds open, and
``extract(text) -> ExtractionResult``; it raises ``ExtractionFailure`` for a report it cannot
process, and the run goes on, or ``RequestFailure`` when it got no answer at all (the runner
stops a run whose first reports all fail that same way).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from bundle.findings import Finding
from bundle.knowledge.base import KnowledgeBase


@dataclass
class ExtractionResult:
    """Findings of one report plus what producing them cost (tokens; 0 for rules).

    ``dropped`` counts the items of a reply that were not kept, per reason (``"evidence not in
    the report"``, ``"category outside the knowledge base"``...); ``warnings`` says which and why.
    """

    findings: list[Finding]
    tokens_in: int = 0
    tokens_out: int = 0
    warnings: list[str] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)


class ExtractionFailure(RuntimeError):
    """A report could not be turned into findings; ``str()`` is the reason recorded for it.

    ``tokens_in`` / ``tokens_out`` and ``dropped`` are what the failed attempt cost and rejected,
    as in ``ExtractionResult``.
    """

    def __init__(self, reason: str, tokens_in: int = 0, tokens_out: int = 0, dropped: Counter[str] | None = None) -> None:
        super().__init__(reason)
        self.tokens_in, self.tokens_out = tokens_in, tokens_out
        self.dropped = dropped if dropped is not None else Counter()


class RequestFailure(ExtractionFailure):
    """The backend got no answer for a report (the endpoint refused the request or could not be
    reached), so later reports are likely to fail the same way; ``fix`` says what to change."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.fix = fix


class Extractor(Protocol):
    backend: str
    model: str
    prompt_version: str
    decoding: str
    kb: KnowledgeBase

    def extract(self, text: str) -> ExtractionResult: ...

    def close(self) -> None: ...
