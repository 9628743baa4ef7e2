"""What every extraction backend returns and raises, so the runner can drive any of them.

A backend has ``backend`` (name), ``model`` and ``prompt_version`` attributes (the cache key
parts besides the report hash) and ``extract(text) -> ExtractionResult``; it raises
``ExtractionFailure`` for a report it cannot process, and the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from bundle.findings import Finding


@dataclass
class ExtractionResult:
    """Findings of one report plus what producing them cost (tokens; 0 for rules)."""

    findings: list[Finding]
    tokens_in: int = 0
    tokens_out: int = 0
    warnings: list[str] = field(default_factory=list)


class ExtractionFailure(RuntimeError):
    """A report could not be turned into findings; ``str()`` is the reason recorded for it."""


class Extractor(Protocol):
    backend: str
    model: str
    prompt_version: str

    def extract(self, text: str) -> ExtractionResult: ...
