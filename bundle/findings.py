"""The findings format: one structured finding per mention, used by every stage.

The extractor writes it, the SynthCXR generator writes it as ground truth, dataset adapters
write it, and the losses read it. ``FINDING_SCHEMA`` is the JSON-schema form of the same
record, used to validate LLM replies and cached files.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any, Mapping


class Presence(str, enum.Enum):
    """Whether the report asserts, denies or hedges a finding."""

    PRESENT = "present"
    ABSENT = "absent"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Finding:
    """One finding: a knowledge-base category with its normalised location and severity.

    Args:
        category: canonical category id from the knowledge base (e.g. ``"pleural_effusion"``).
        location: normalised location term (``"left base"``, ``"right upper lobe"``) or None.
        severity: normalised severity term (``"mild"``, ``"moderate"``...) or None.
        presence: ``present``, ``absent`` or ``uncertain``.
        evidence: the source sentence the finding was read from ("" when generated).
    """

    category: str
    location: str | None = None
    severity: str | None = None
    presence: Presence = Presence.PRESENT
    evidence: str = ""

    def __post_init__(self) -> None:
        if not self.category:
            raise ValueError("a finding needs a non-empty category id")
        object.__setattr__(self, "presence", Presence(self.presence))

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["presence"] = self.presence.value
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "Finding":
        unknown = set(record) - set(FINDING_SCHEMA["properties"])
        if unknown:
            raise ValueError(f"unknown finding field(s) {sorted(unknown)}; expected {sorted(FINDING_SCHEMA['required'])}")
        return cls(
            category=record["category"],
            location=record.get("location"),
            severity=record.get("severity"),
            presence=Presence(record.get("presence", Presence.PRESENT.value)),
            evidence=record.get("evidence", "") or "",
        )

    @property
    def is_positive(self) -> bool:
        return self.presence is Presence.PRESENT


FINDING_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Finding",
    "type": "object",
    "properties": {
        "category": {"type": "string", "minLength": 1},
        "location": {"type": ["string", "null"]},
        "severity": {"type": ["string", "null"]},
        "presence": {"type": "string", "enum": [p.value for p in Presence]},
        "evidence": {"type": "string"},
    },
    "required": ["category", "location", "severity", "presence", "evidence"],
    "additionalProperties": False,
}

REPORT_FINDINGS_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "ReportFindings",
    "type": "object",
    "properties": {"id": {"type": "string"}, "triplets": {"type": "array", "items": FINDING_SCHEMA}},
    "required": ["id", "triplets"],
}
