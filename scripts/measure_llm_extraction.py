"""Measure the llm backend against a running OpenAI-compatible server on IU reports, next to the rules backend.

    python scripts/measure_llm_extraction.py --base-url http://127.0.0.1:8080/v1 --model gemma-3-270m \
        --limit 100 --workers 1 2 --max-tokens 256

One run per ``--workers`` value over the first ``--limit`` IU development reports that have text,
each with an empty cache. Printed as Markdown (docs/llm.md keeps the figures): seconds per report
per run and, from the first run, how the replies fared: schema-valid (a findings object whose
every item fits the findings schema, not cut by the token limit), evidence-grounded findings,
failures by reason, and macro-F1 over the 16 ``iu16`` categories against the MeSH major terms
(present findings, as ``evaluate_extraction.py`` scores the rules backend; a failed report counts
as one without findings), with the rules backend on the same reports.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundle.extraction.backend import ExtractionFailure, ExtractionResult  # noqa: E402
from bundle.extraction.evaluation import mesh_categories, positive_categories, score_labels  # noqa: E402
from bundle.extraction.llm import CUT, INVALID, NOT_FINDINGS, NOT_GROUNDED, NOT_JSON, REPLY_FAILURES, LLMExtractor  # noqa: E402
from bundle.extraction.readers import Record, compose_text  # noqa: E402
from bundle.extraction.rules import RulesExtractor  # noqa: E402
from bundle.extraction.runner import run_extraction  # noqa: E402
from bundle.knowledge.base import default_knowledge_base  # noqa: E402

DEFAULT_INPUT = REPO.parent / "shared" / "realdata" / "iu-xray-openi" / "iu_reports_dev.csv"


class RecordingExtractor:
    """An extractor that keeps every outcome (result or failure) of the one it wraps, by report text."""

    def __init__(self, inner: LLMExtractor) -> None:
        self.inner = inner
        self.backend, self.model, self.prompt_version, self.kb = inner.backend, inner.model, inner.prompt_version, inner.kb
        self.outcomes: dict[str, ExtractionResult | ExtractionFailure] = {}

    def extract(self, text: str) -> ExtractionResult:
        try:
            result = self.inner.extract(text)
        except ExtractionFailure as failure:
            self.outcomes[text] = failure
            raise
        self.outcomes[text] = result
        return result


def reply_figures(outcomes: dict[str, ExtractionResult | ExtractionFailure]) -> dict[str, str]:
    """Schema-valid replies, grounded findings and failures by reason, as printable figures."""
    answered = [o for o in outcomes.values() if isinstance(o, ExtractionResult) or str(o).startswith(REPLY_FAILURES)]
    valid = [o for o in answered if not str(o).startswith((CUT, NOT_JSON, NOT_FINDINGS)) and not o.dropped[INVALID]]
    items = sum(len(o.findings) if isinstance(o, ExtractionResult) else 0 for o in answered)
    items += sum(sum(o.dropped.values()) for o in answered)
    grounded = items - sum(o.dropped[NOT_GROUNDED] for o in answered)
    reasons = Counter(next((kind for kind in REPLY_FAILURES if str(o).startswith(kind)), str(o))
                      for o in outcomes.values() if isinstance(o, ExtractionFailure))  # fmt: skip
    return {
        "schema-valid replies": f"{len(valid)} / {len(answered)}",
        "evidence-grounded findings": f"{grounded} / {items}",
        "failed reports": ", ".join(f"{n} {why}" for why, n in reasons.most_common()) or "none",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="IU CSV with findings, impression, mesh_major")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--response-format", default="auto")
    args = parser.parse_args(argv)
    kb = default_knowledge_base()
    with args.input.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if compose_text(r, ["findings", "impression"]).strip()][: args.limit]
    records = [Record(r["report_id"], compose_text(r, ["findings", "impression"])) for r in rows]
    reference = [mesh_categories(r["mesh_major"]) for r in rows]
    categories = kb.ids_in_list("iu16")
    rules = RulesExtractor(kb)
    _, rules_f1 = score_labels([positive_categories(rules.extract_findings(r.text), False) for r in records], reference, categories)

    lines = ["| run | reports | seconds / report | macro-F1 (llm) | macro-F1 (rules, same reports) |", "|---|---:|---:|---:|---:|"]
    first_outcomes = None
    for workers in args.workers:
        extractor = RecordingExtractor(LLMExtractor(
            kb, args.base_url, args.model, os.environ.get("OPENAI_API_KEY", "local"), timeout=args.timeout,
            response_format=args.response_format, max_tokens=args.max_tokens,
        ))  # fmt: skip
        results, summary = run_extraction(records, extractor, None, workers=workers, progress=False, stop_after=None)
        found = dict(results)
        predicted = [positive_categories(found.get(r.id, []), False) for r in records]
        _, llm_f1 = score_labels(predicted, reference, categories)
        lines.append(f"| --workers {workers} | {len(records)} | {summary.seconds / len(records):.1f} | {llm_f1:.3f} | {rules_f1:.3f} |")
        first_outcomes = first_outcomes or extractor.outcomes
        print(summary.format(), file=sys.stderr)
    lines += ["", "| first run | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in reply_figures(first_outcomes).items()]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
