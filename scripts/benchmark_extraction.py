"""Throughput of the rules backend on one core (reports per second).

    python scripts/benchmark_extraction.py [--input IU.csv] [--repeats 5]

Runs the extractor in this single process (one thread) over the IU development reports
(FINDINGS + IMPRESSION) and prints a Markdown table; the best of ``--repeats`` passes is
reported, after one warm-up pass.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundle.extraction.readers import compose_text  # noqa: E402
from bundle.extraction.rules import RulesExtractor  # noqa: E402
from bundle.knowledge.base import default_knowledge_base  # noqa: E402

DEFAULT_INPUT = REPO.parent / "shared" / "realdata" / "iu-xray-openi" / "iu_reports_dev.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with args.input.open(newline="", encoding="utf-8") as handle:
        texts = [compose_text(r, ["findings", "impression"]) for r in csv.DictReader(handle)]
    texts = [t for t in texts if t.strip()]
    rules = RulesExtractor(default_knowledge_base())
    for text in texts:  # warm-up
        rules.extract(text)
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for text in texts:
            rules.extract(text)
        rates.append(len(texts) / (time.perf_counter() - start))
    chars = sum(map(len, texts)) / len(texts)
    print("| backend | reports | mean length (chars) | reports/s, 1 core (best) | median |")
    print("|---|---:|---:|---:|---:|")
    print(f"| rules | {len(texts)} | {chars:.0f} | {max(rates):,.0f} | {statistics.median(rates):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
