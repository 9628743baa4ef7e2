"""Turn free-text radiology reports into findings (category, location, severity, presence, evidence).

Examples:
    python scripts/extract_findings.py --backend rules --input REPORTS.csv --id-column report_id \
        --text-columns findings,impression --output OUT.jsonl
    OPENAI_API_KEY=... python scripts/extract_findings.py --backend llm --base-url http://127.0.0.1:8000/v1 \
        --model my-model --input reports/ --output OUT.jsonl --workers 8

The llm backend negotiates the structured-output mode the endpoint takes (--response-format auto)
and logs it in one line; it stops the run, naming the fix, when the first reports all fail the same
way (a wrong setting), and keeps only findings whose evidence is in their report.

Results are cached (default: OUT.jsonl.cache.sqlite); a killed run resumes when rerun as it was,
and a rerun over an existing output (--overwrite) makes backend calls only for reports not in the
cache. Reports that fail are listed in OUT.failures.jsonl with the reason. Output paths are checked
before any work: never an input, never a folder, an existing file only with --overwrite.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundle.extraction.cache import FindingsCache  # noqa: E402
from bundle.extraction.llm import (  # noqa: E402
    DEFAULT_PROMPT_VERSION,
    RESPONSE_FORMATS,
    LLMExtractor,
    PrivacyError,
    Prompt,
    RetryPolicy,
)
from bundle.extraction.readers import FORMATS, InputError, keep_last_per_id, read_records  # noqa: E402
from bundle.extraction.rules import RulesExtractor  # noqa: E402
from bundle.extraction.runner import Price, RunStopped, RunSummary, run_extraction  # noqa: E402
from bundle.extraction.writers import check_output_paths, findings_rows, write_chexpert_csv, write_jsonl  # noqa: E402
from bundle.knowledge.base import DEFAULT_KNOWLEDGE_BASE_PATH, KnowledgeBase, KnowledgeBaseError  # noqa: E402
from bundle.findings import Finding  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("rules", "llm"), default="rules")
    parser.add_argument("--input", required=True, type=Path, help="CSV, JSONL, folder of .txt, MIMIC-CXR tree or Open-i XML folder")
    parser.add_argument("--input-format", default="auto", choices=("auto", *FORMATS))
    parser.add_argument("--id-column", default="id", help="CSV/JSONL id column (default: id)")
    parser.add_argument("--text-columns", default="text", help="comma-separated CSV/JSONL text columns (default: text)")
    parser.add_argument("--output", required=True, type=Path, help="JSONL output, one {id, triplets} line per report")
    parser.add_argument("--chexpert-csv", type=Path, help="also write CheXpert-style labels (1/0/-1/blank) here")
    parser.add_argument("--failures", type=Path, help="failed reports with reasons (default: OUTPUT stem + .failures.jsonl)")
    parser.add_argument("--cache", type=Path, help="SQLite cache (default: OUTPUT + .cache.sqlite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files (kept: their permissions, and the cache)")
    parser.add_argument("--max-report-chars", type=int, default=100_000,
                        help="a longer report is listed as a failure instead of extracted (default: 100000)")
    parser.add_argument("--knowledge-base", type=Path, default=DEFAULT_KNOWLEDGE_BASE_PATH)
    parser.add_argument("--workers", type=int, default=1, help="reports processed concurrently (llm: parallel requests)")
    parser.add_argument("--no-progress", action="store_true")
    llm = parser.add_argument_group("llm backend")
    llm.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="OpenAI-compatible endpoint")
    llm.add_argument("--model", default="gpt-4o-mini")
    llm.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    llm.add_argument("--allow-remote-endpoint", action="store_true",
                     help="allow a non-loopback endpoint: reports (patient data) leave this machine")
    llm.add_argument("--proxy", help="HTTP proxy for the endpoint; must be on this machine unless --allow-remote-endpoint "
                     "(without that opt-in HTTP(S)_PROXY / ALL_PROXY in the environment are ignored)")
    llm.add_argument("--prompt-version", default=DEFAULT_PROMPT_VERSION)
    llm.add_argument("--response-format", choices=RESPONSE_FORMATS, default="auto",
                     help="structured output: auto (default) tries json_schema, then json_object with the schema "
                     "attached (llama.cpp), then json_object, then none, keeping the first the endpoint takes; "
                     "another value fixes the mode")
    llm.add_argument("--max-tokens", type=int,
                     help="most tokens per reply; a reply cut there is a failure (default: sized from the findings "
                     "schema, 16 findings at the longest values the knowledge base allows; logged with the structured-output mode)")
    llm.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    llm.add_argument("--max-attempts", type=int, default=5)
    llm.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds (doubles each retry)")
    llm.add_argument("--price-table", type=Path, help='JSON {"MODEL": {"input_per_million": USD, "output_per_million": USD}}')
    return parser.parse_args(argv)


def build_extractor(args: argparse.Namespace, kb: KnowledgeBase):
    if args.backend == "rules":
        return RulesExtractor(kb)
    api_key = os.environ.get(args.api_key_env)
    if not api_key:
        raise InputError(f"the llm backend needs an API key in the environment variable {args.api_key_env}; "
                         "set it (any non-empty value for a local server) or name another one with --api-key-env")
    return LLMExtractor(
        kb, base_url=args.base_url, model=args.model, api_key=api_key, prompt=Prompt.load(args.prompt_version),
        allow_remote=args.allow_remote_endpoint, proxy=args.proxy, timeout=args.timeout,
        retry=RetryPolicy(max_attempts=args.max_attempts, base_delay=args.backoff), response_format=args.response_format,
        max_tokens=args.max_tokens,
    )  # fmt: skip


def load_price(path: Path | None, model: str) -> Price | None:
    if path is None:
        return None
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        entry = table.get(model)
        return None if entry is None else Price(float(entry["input_per_million"]), float(entry["output_per_million"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"price table {path} is unreadable ({error}); expected "
                         '{"MODEL": {"input_per_million": 0.15, "output_per_million": 0.6}}') from None


def warn_duplicates(duplicates: Counter[str], source: Path) -> None:
    examples = ", ".join(repr(record_id) for record_id in list(duplicates)[:5]) + (", ..." if len(duplicates) > 5 else "")
    print(f"warning: skipped {sum(duplicates.values())} records of {source} whose id occurs again later "
          f"({len(duplicates)} ids: {examples}); the last record with each id wins", file=sys.stderr)  # fmt: skip


def log_to_stderr() -> None:
    """The bundle's own log lines (the structured-output mode, ...) on stderr; not the HTTP client's."""
    bundle_logger = logging.getLogger("bundle")
    if not bundle_logger.handlers:  # main() may run more than once in a process
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        bundle_logger.addHandler(handler)
    bundle_logger.setLevel(logging.INFO)


def write_outputs(
    args: argparse.Namespace, results: list[tuple[str, list[Finding]]], summary: RunSummary, kb: KnowledgeBase,
    failures_path: Path,
) -> None:
    """The findings JSONL, the CheXpert CSV and the failures list (or no stale one), each written atomically."""
    write_jsonl(args.output, findings_rows(results))
    if args.chexpert_csv:
        write_chexpert_csv(args.chexpert_csv, results, kb)
    if summary.failures:
        write_jsonl(failures_path, summary.failures)
    elif failures_path.exists():
        failures_path.unlink()  # a stale list from an earlier run would mislead


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_to_stderr()
    failures_path = args.failures or args.output.with_name(args.output.stem + ".failures.jsonl")
    cache_path = args.cache or args.output.with_name(args.output.name + ".cache.sqlite")
    replaced = {"--output": args.output, "--chexpert-csv": args.chexpert_csv, "--failures": failures_path}
    inputs = {"--input": args.input, "--knowledge-base": args.knowledge_base, "--price-table": args.price_table}
    try:
        check_output_paths({k: v for k, v in replaced.items() if v}, {"--cache": cache_path},
                           {k: v for k, v in inputs.items() if v}, overwrite=args.overwrite)  # fmt: skip
        kb = KnowledgeBase.from_yaml(args.knowledge_base)
        with closing(build_extractor(args, kb)) as extractor:
            price = load_price(args.price_table, extractor.model)
            text_columns = [c.strip() for c in args.text_columns.split(",") if c.strip()]
            records, duplicates = keep_last_per_id(read_records(args.input, args.input_format, args.id_column, text_columns))
            if duplicates:
                warn_duplicates(duplicates, args.input)
            with FindingsCache(cache_path) as cache:
                results, summary = run_extraction(
                    records, extractor, cache, workers=args.workers, price=price, progress=not args.no_progress,
                    total=len(records), max_report_chars=args.max_report_chars,
                )  # fmt: skip
    except (InputError, KnowledgeBaseError, PrivacyError, RunStopped, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        write_outputs(args, results, summary, kb, failures_path)
    except OSError as error:
        print(f"error: could not write the outputs ({error}). Nothing extracted is lost: every result is in the "
              f"cache {cache_path}; free space or choose another --output and rerun (cached reports are not "
              "requested again)", file=sys.stderr)  # fmt: skip
        return 2
    if summary.failures:
        for failure in summary.failures[:10]:
            print(f"failed: {failure['id']}: {failure['reason']}", file=sys.stderr)
        if len(summary.failures) > 10:
            print(f"... {len(summary.failures) - 10} more in {failures_path}", file=sys.stderr)
    print(summary.format(), file=sys.stderr)
    print(f"wrote {len(results)} reports to {args.output}" + (f" and {failures_path}" if summary.failures else ""), file=sys.stderr)
    return 1 if summary.failures and not results else 0


if __name__ == "__main__":
    sys.exit(main())
