"""Findings cache keyed by the report text hash and everything else that determines a result.

The key (``CacheKey``): backend, model, prompt or rules version, decoding settings (the
requested structured-output mode: a grammar-constrained reply and a free one differ), and the
knowledge base's content fingerprint (``KnowledgeBase.fingerprint``), so editing the knowledge
base without bumping its version is a cache miss, never a stale result.

SQLite in WAL mode, one transaction per result. Why SQLite rather than an append-only JSONL:
a commit is atomic, so a process killed with ``kill -9`` (or a crash mid-write) leaves either
the whole row or nothing, never a torn line; lookups are indexed, so a rerun over millions of
reports stays fast; and the file is a standard format anyone can audit (``sqlite3 cache.db``).
``synchronous=NORMAL`` in WAL mode survives process death (only an OS crash / power loss can
drop the last commits, still without corruption).

Only successes are cached: a failed report is retried on the next run.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import NamedTuple

from bundle.extraction.backend import ExtractionResult, Extractor
from bundle.findings import Finding

# PRAGMA user_version of the layout below; earlier files (0: no knowledge_base column, 2: no decoding
# column) can serve stale results.
SCHEMA_VERSION = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS findings (
    text_sha256 TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    decoding TEXT NOT NULL,
    knowledge_base TEXT NOT NULL,
    triplets TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (text_sha256, backend, model, prompt_version, decoding, knowledge_base)
)
"""


class CacheKey(NamedTuple):
    """What determines a result besides the report text."""

    backend: str
    model: str
    prompt_version: str
    decoding: str
    knowledge_base: str  # content fingerprint (sha256), not the version string

    @classmethod
    def of(cls, extractor: Extractor) -> "CacheKey":
        return cls(extractor.backend, extractor.model, extractor.prompt_version, extractor.decoding, extractor.kb.fingerprint)


def text_hash(text: str) -> str:
    """SHA-256 hex digest of the report text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class FindingsCache:
    """Persistent cache of extraction results.

    Args:
        path: SQLite file (created with its folder if missing), or ``":memory:"``.

    Use from one thread (the runner's main thread); workers never touch it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            has_table = self._db.execute("SELECT 1 FROM sqlite_master WHERE name='findings'").fetchone() is not None
        except sqlite3.DatabaseError as error:
            raise ValueError(f"cache {self.path} is not a readable SQLite findings cache ({error}); "
                             "point --cache at a new file or delete this one") from None
        if has_table and version != SCHEMA_VERSION:
            self._db.close()
            raise ValueError(
                f"cache {self.path} was written by an older version whose key left out the knowledge base's content "
                "or the structured-output mode, so its entries may be stale; delete it (the next run re-extracts every "
                "report) or point --cache at a new file"
            )
        self._db.execute(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def get(self, text: str, key: CacheKey) -> ExtractionResult | None:
        row = self._db.execute(
            "SELECT triplets, tokens_in, tokens_out FROM findings "
            "WHERE text_sha256=? AND backend=? AND model=? AND prompt_version=? AND decoding=? AND knowledge_base=?",
            (text_hash(text), *key),
        ).fetchone()
        if row is None:
            return None
        findings = [Finding.from_dict(d) for d in json.loads(row[0])]
        return ExtractionResult(findings=findings, tokens_in=row[1], tokens_out=row[2])

    def put(self, text: str, key: CacheKey, result: ExtractionResult) -> None:
        """Store one result in its own transaction (atomic on disk)."""
        triplets = json.dumps([f.to_dict() for f in result.findings], ensure_ascii=False)
        self._db.execute(
            "INSERT OR REPLACE INTO findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (text_hash(text), *key, triplets, result.tokens_in, result.tokens_out, time.time()),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM findings").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "FindingsCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
