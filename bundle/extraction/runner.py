"""Drive a backend over a stream of records: cache first, bounded concurrency, progress, summary.

Results are cached as soon as each report completes (one SQLite transaction), so a run that is
killed loses at most the reports in flight (``workers`` of them) and a rerun resumes from the
cache with no repeated backend calls.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Iterable

from tqdm.auto import tqdm

from bundle.extraction.backend import ExtractionFailure, ExtractionResult, Extractor
from bundle.extraction.cache import FindingsCache
from bundle.extraction.readers import Record, RecordError
from bundle.findings import Finding


@dataclass(frozen=True)
class Price:
    """USD per million tokens in and out for one model."""

    input_per_million: float
    output_per_million: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_million + tokens_out * self.output_per_million) / 1e6


@dataclass
class RunSummary:
    """What a run did. ``failures`` holds ``{"id", "reason"}`` records (input errors included)."""

    reports: int = 0
    extracted: int = 0
    cache_hits: int = 0
    failures: list[dict] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    seconds: float = 0.0

    def format(self) -> str:
        cost = "n/a (no price for this model)" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        return (
            f"reports: {self.reports} | done: {self.extracted + self.cache_hits} "
            f"(new {self.extracted}, cache hits {self.cache_hits}) | failures: {len(self.failures)} | "
            f"tokens in/out: {self.tokens_in}/{self.tokens_out} | estimated cost: {cost} | {self.seconds:.1f} s"
        )


def run_extraction(
    records: Iterable[Record | RecordError],
    extractor: Extractor,
    cache: FindingsCache | None = None,
    workers: int = 1,
    price: Price | None = None,
    progress: bool = True,
    total: int | None = None,
) -> tuple[list[tuple[str, list[Finding]]], RunSummary]:
    """Extract findings for every record.

    Args:
        records: from ``readers.read_records``; ``RecordError`` items become failures.
        extractor: a backend (``RulesExtractor``, ``LLMExtractor``).
        cache: results cache; hits skip the backend, new results are stored at once.
        workers: reports processed concurrently (threads); 1 runs inline.
        price: token prices for the cost estimate (None: cost unknown unless no tokens were used).
        progress: show a tqdm bar. total: number of records, for the bar.

    Returns:
        ``[(id, findings)]`` for the successful reports in input order, and the run summary.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    started = time.perf_counter()
    summary = RunSummary()
    ordered: dict[int, tuple[str, list[Finding]]] = {}
    key = (extractor.backend, extractor.model, extractor.prompt_version)
    bar = tqdm(total=total, disable=not progress, unit="report", desc=f"extract ({extractor.backend})")

    def finish(index: int, record: Record, future_or_result: Future | ExtractionResult) -> None:
        try:
            result = future_or_result.result() if isinstance(future_or_result, Future) else future_or_result
        except ExtractionFailure as failure:
            summary.failures.append({"id": record.id, "reason": str(failure)})
            summary.tokens_in += getattr(failure, "tokens_in", 0)
            summary.tokens_out += getattr(failure, "tokens_out", 0)
        else:
            if cache is not None:
                cache.put(record.text, *key, result)
            ordered[index] = (record.id, result.findings)
            summary.extracted += 1
            summary.tokens_in += result.tokens_in
            summary.tokens_out += result.tokens_out
        bar.update(1)

    def safe_extract(text: str) -> ExtractionResult:
        try:
            return extractor.extract(text)
        except ExtractionFailure:
            raise
        except Exception as error:  # a backend bug on one report must not stop the run
            raise ExtractionFailure(f"{type(error).__name__}: {error}") from error

    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    in_flight: dict[Future, tuple[int, Record]] = {}
    try:
        for index, record in enumerate(records):
            summary.reports += 1
            if isinstance(record, RecordError):
                summary.failures.append({"id": record.id, "reason": record.reason})
                bar.update(1)
                continue
            cached = cache.get(record.text, *key) if cache is not None else None
            if cached is not None:
                ordered[index] = (record.id, cached.findings)
                summary.cache_hits += 1
                bar.update(1)
                continue
            if pool is None:
                try:
                    outcome: Future | ExtractionResult = safe_extract(record.text)
                except ExtractionFailure as failure:
                    outcome = Future()
                    outcome.set_exception(failure)
                finish(index, record, outcome)
                continue
            in_flight[pool.submit(safe_extract, record.text)] = (index, record)
            if len(in_flight) >= workers:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    finish(*in_flight.pop(future), future)
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                finish(*in_flight.pop(future), future)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    summary.seconds = time.perf_counter() - started
    if price is not None:
        summary.cost_usd = price.cost(summary.tokens_in, summary.tokens_out)
    elif summary.tokens_in == summary.tokens_out == 0:
        summary.cost_usd = 0.0
    return [ordered[i] for i in sorted(ordered)], summary
