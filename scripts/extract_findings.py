"""Turn free-text radiology reports into findings (category, location, severity, presence, evidence).

Examples:
    python scripts/extract_findings.py --backend rules --input REPORTS.csv --id-column report_id \
        --text-columns findings,impression --output OUT.jsonl
    OPENAI_API_KEY=... python scripts/extract_findings.py --backend llm --base-url http://127.0.0.1:8000/v1 \
        --model my-model --input reports/ --output OUT.jsonl --workers 8

Results are cached (default: OUT.jsonl.cache.sqlite); a rerun makes no new backend calls and a
killed run resumes. Reports that fail are listed in OUT.failures.jsonl with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundle.extraction.cache import FindingsCache  # noqa: E402
from bundle.extraction.llm import DEFAULT_PROMPT_VERSION, RESPONSE_FORMATS, LLMExtractor, PrivacyError, Prompt, RetryPolicy  # noqa: E402
from bundle.extraction.readers import FORMATS, InputError, read_records  # noqa: E402
from bundle.extraction.rules import RulesExtractor  # noqa: E402
from bundle.extraction.runner import Price, run_extraction  # noqa: E402
from bundle.extraction.writers import findings_rows, write_chexpert_csv, write_jsonl  # noqa: E402
from bundle.knowledge.base import DEFAULT_KNOWLEDGE_BASE_PATH, KnowledgeBase, KnowledgeBaseError  # noqa: E402


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
    parser.add_argument("--knowledge-base", type=Path, default=DEFAULT_KNOWLEDGE_BASE_PATH)
    parser.add_argument("--workers", type=int, default=1, help="reports processed concurrently (llm: parallel requests)")
    parser.add_argument("--no-progress", action="store_true")
    llm = parser.add_argument_group("llm backend")
    llm.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="OpenAI-compatible endpoint")
    llm.add_argument("--model", default="gpt-4o-mini")
    llm.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    llm.add_argument("--allow-remote-endpoint", action="store_true",
                     help="allow a non-loopback endpoint: reports (patient data) leave this machine")
    llm.add_argument("--prompt-version", default=DEFAULT_PROMPT_VERSION)
    llm.add_argument("--response-format", choices=RESPONSE_FORMATS, default="json_schema")
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
        allow_remote=args.allow_remote_endpoint, timeout=args.timeout,
        retry=RetryPolicy(max_attempts=args.max_attempts, base_delay=args.backoff), response_format=args.response_format,
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        kb = KnowledgeBase.from_yaml(args.knowledge_base)
        extractor = build_extractor(args, kb)
        price = load_price(args.price_table, extractor.model)
        text_columns = [c.strip() for c in args.text_columns.split(",") if c.strip()]
        records = list(read_records(args.input, args.input_format, args.id_column, text_columns))
        cache_path = args.cache or args.output.with_name(args.output.name + ".cache.sqlite")
        with FindingsCache(cache_path) as cache:
            results, summary = run_extraction(
                records, extractor, cache, workers=args.workers, price=price, progress=not args.no_progress, total=len(records)
            )
    except (InputError, KnowledgeBaseError, PrivacyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_jsonl(args.output, findings_rows(results))
    if args.chexpert_csv:
        write_chexpert_csv(args.chexpert_csv, results, kb)
    failures_path = args.failures or args.output.with_name(args.output.stem + ".failures.jsonl")
    if summary.failures:
        write_jsonl(failures_path, summary.failures)
        for failure in summary.failures[:10]:
            print(f"failed: {failure['id']}: {failure['reason']}", file=sys.stderr)
        if len(summary.failures) > 10:
            print(f"... {len(summary.failures) - 10} more in {failures_path}", file=sys.stderr)
    elif failures_path.exists():
        failures_path.unlink()  # a stale list from an earlier run would mislead
    print(summary.format(), file=sys.stderr)
    print(f"wrote {len(results)} reports to {args.output}" + (f" and {failures_path}" if summary.failures else ""), file=sys.stderr)
    return 1 if summary.failures and not results else 0


if __name__ == "__main__":
    sys.exit(main())
