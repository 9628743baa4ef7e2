"""Drive a backend over a stream of records: cache first, bounded concurrency, progress, summary.

Results are cached as soon as each report completes (one SQLite transaction), so a run that is
killed loses at most the reports in flight (``workers`` of them) and a rerun resumes from the
cache with no repeated backend calls.

A run whose first reports sent to the backend all fail with the same ``RequestFailure`` (the
endpoint refused them or could not be reached: a wrong setting, not a hard report) stops with
``RunStopped``, naming the cause and the fix, instead of failing every report the same way.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Iterable

from tqdm.auto import tqdm

from bundle.extraction.backend import ExtractionFailure, ExtractionResult, Extractor, RequestFailure
from bundle.extraction.cache import CacheKey, FindingsCache
from bundle.extraction.readers import Record, RecordError
from bundle.findings import Finding


@dataclass(frozen=True)
class Price:
    """USD per million tokens in and out for one model."""

    input_per_million: float
    output_per_million: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_million + tokens_out * self.output_per_million) / 1e6


STOP_AFTER_IDENTICAL_FAILURES = 5


class RunStopped(RuntimeError):
    """The first reports all failed the same way; the message names the cause and the fix."""


@dataclass
class RunSummary:
    """What a run did. ``failures`` holds ``{"id", "reason"}`` records (input errors included).

    ``findings``: findings of the newly extracted reports; ``dropped``: items of the backend's
    replies (successful or not) that were not kept, per reason.
    """

    reports: int = 0
    extracted: int = 0
    cache_hits: int = 0
    failures: list[dict] = field(default_factory=list)
    findings: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    seconds: float = 0.0

    def format(self) -> str:
        cost = "n/a (no price for this model)" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        dropped = f", dropped: {', '.join(f'{n} {why}' for why, n in self.dropped.most_common())}" if self.dropped else ""
        return (
            f"reports: {self.reports} | done: {self.extracted + self.cache_hits} "
            f"(new {self.extracted}, cache hits {self.cache_hits}) | failures: {len(self.failures)} | "
            f"new findings: {self.findings}{dropped} | "
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
    max_report_chars: int | None = None,
    stop_after: int | None = STOP_AFTER_IDENTICAL_FAILURES,
) -> tuple[list[tuple[str, list[Finding]]], RunSummary]:
    """Extract findings for every record.

    Args:
        records: from ``readers.read_records``; ``RecordError`` items become failures.
        extractor: a backend (``RulesExtractor``, ``LLMExtractor``).
        cache: results cache; hits skip the backend, new results are stored at once.
        workers: reports processed concurrently (threads); 1 runs inline.
        price: token prices for the cost estimate (None: cost unknown unless no tokens were used).
        progress: show a tqdm bar. total: number of records, for the bar.
        max_report_chars: a longer report is a failure with the reason, not sent to the backend
            (None: no limit).
        stop_after: stop when this many reports, the first sent to the backend, all fail with one
            ``RequestFailure`` reason (None: never stop).

    Returns:
        ``[(id, findings)]`` for the successful reports in input order, and the run summary.

    Raises:
        RunStopped: see ``stop_after``; what was extracted before stays in the cache.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if max_report_chars is not None and max_report_chars < 1:
        raise ValueError(f"max_report_chars must be >= 1, got {max_report_chars}")
    started = time.perf_counter()
    summary = RunSummary()
    ordered: dict[int, tuple[str, list[Finding]]] = {}
    key = CacheKey.of(extractor)
    leading_failures: list[str] | None = []  # reasons of the first backend outcomes, while all alike
    bar = tqdm(total=total, disable=not progress, unit="report", desc=f"extract ({extractor.backend})")

    def finish(index: int, record: Record, future_or_result: Future | ExtractionResult) -> None:
        nonlocal leading_failures
        try:
            result = future_or_result.result() if isinstance(future_or_result, Future) else future_or_result
        except ExtractionFailure as failure:
            summary.failures.append({"id": record.id, "reason": str(failure)})
            summary.tokens_in += failure.tokens_in
            summary.tokens_out += failure.tokens_out
            summary.dropped.update(failure.dropped)
            leading_failures = _still_alike(leading_failures, failure)
            if stop_after is not None and leading_failures is not None and len(leading_failures) >= stop_after:
                raise RunStopped(
                    f"stopped: the first {len(leading_failures)} reports sent to the {extractor.backend} backend all "
                    f"failed the same way: {failure}. Fix: {failure.fix}; then rerun (reports already extracted are "
                    "in the cache)"
                )  # fmt: skip
        else:
            if cache is not None:
                cache.put(record.text, key, result)
            ordered[index] = (record.id, result.findings)
            summary.extracted += 1
            summary.findings += len(result.findings)
            summary.dropped.update(result.dropped)
            summary.tokens_in += result.tokens_in
            summary.tokens_out += result.tokens_out
            leading_failures = None
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
            if isinstance(record, Record) and max_report_chars is not None and len(record.text) > max_report_chars:
                record = RecordError(record.id, (
                    f"report {record.id!r} has {len(record.text):,} characters, more than the limit of "
                    f"{max_report_chars:,} (--max-report-chars); check that it is one report, then split it or "
                    "raise the limit"
                ))  # fmt: skip
            if isinstance(record, RecordError):
                summary.failures.append({"id": record.id, "reason": record.reason})
                bar.update(1)
                continue
            cached = cache.get(record.text, key) if cache is not None else None
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


def _still_alike(reasons: list[str] | None, failure: ExtractionFailure) -> list[str] | None:
    """The run of identical ``RequestFailure`` reasons since the start, extended by ``failure``;
    None once anything else happened (the run can work)."""
    if reasons is None or not isinstance(failure, RequestFailure) or (reasons and reasons[0] != str(failure)):
        return None
    return [*reasons, str(failure)]
