"""Turn a public chest X-ray collection, in its published layout, into the bundle's datalist.

    python scripts/prepare_dataset.py --collection chestx-ray14 --root /data/nih --output data/cxr14/datalist.json
    python scripts/prepare_dataset.py --collection covid-chestxray --root covid-chestxray-dataset \
        --output data/covid/datalist.json --lung-masks v7labs
    python scripts/prepare_dataset.py --collection siim-acr --root /data/siim --output data/siim/datalist.json \
        [--masks-dir data/siim/masks]
    python scripts/prepare_dataset.py --collection rsna-pneumonia --root /data/rsna --output data/rsna/datalist.json
    python scripts/prepare_dataset.py --collection chexpert --root /data/CheXpert-v1.0-small \
        --output data/chexpert/datalist.json [--views frontal|all]
    python scripts/prepare_dataset.py --collection padchest --root /data/padchest --output data/padchest/datalist.json \
        [--views frontal|all] [--physician-only]
    python scripts/prepare_dataset.py --collection vindr-cxr --root /data/vindr-cxr/1.0.0 --output data/vindr/datalist.json
    python scripts/prepare_dataset.py --collection covidx --root /data/covidx --output data/covidx/datalist.json
    python scripts/prepare_dataset.py --collection tbx11k --root /data/TBX11K --output data/tbx11k/datalist.json
    python scripts/prepare_dataset.py --collection mimic-cxr --root /data/mimic-cxr-jpg/2.1.0 \
        --output data/mimic/datalist.json [--views frontal|all] [--findings FINDINGS.jsonl | --extraction-cache DB]
    python scripts/prepare_dataset.py --collection iu-xray --root /data/iu-xray --output data/iu/datalist.json \
        [--views frontal|all] [--findings FINDINGS.jsonl | --extraction-cache DB]

Writes DATALIST.json (splits ``training``/``validation``/``test``, read by configs/train.json and
configs/evaluate.json as they are) and DATALIST.summary.json (labels counted, labels without a
category, missing images, skipped rows) and prints the summary. Image paths under the datalist's
folder are written relative to it, others absolute. Missing images are counted and left out; a
missing table or column stops the run with exit code 2. docs/datasets.md describes each collection.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bundle.data.collections import COLLECTIONS, CollectionError, SplitFractions, adapter, write_datalist  # noqa: E402
from bundle.data.collections.common import ReportFindings, check_output, read_findings_jsonl  # noqa: E402
from bundle.extraction.cache import FindingsCache  # noqa: E402
from bundle.extraction.rules import RulesExtractor  # noqa: E402
from bundle.knowledge.base import DEFAULT_KNOWLEDGE_BASE_PATH, KnowledgeBase, KnowledgeBaseError  # noqa: E402

# Options that only some collections take: (flag, collection option name, argparse keywords).
SPECIFIC_OPTIONS = (
    ("--lung-masks", "lung_masks", {"choices": ("v7labs", "lungvae", "none"),
                                    "help": "covid-chestxray: lung mask source (default v7labs, see docs/datasets.md)"}),
    ("--masks-dir", "masks_dir", {"type": Path,
                                  "help": "siim-acr: folder for the decoded mask PNGs (default: masks/ beside the output)"}),
    ("--views", "views", {"choices": ("frontal", "all"),
                          "help": "chexpert, padchest, mimic-cxr, iu-xray: keep frontal images only (default) or all views"}),
    ("--findings", "findings", {"type": Path,
                                "help": "mimic-cxr, iu-xray: the reports' findings from an earlier scripts/extract_findings.py "
                                        "run (any backend), keyed by report id, instead of extracting them here"}),
    ("--extraction-cache", "extraction_cache", {"type": Path,
                                                "help": "mimic-cxr, iu-xray: SQLite cache of the rules extraction "
                                                        "(default: DATALIST.extraction-cache.sqlite beside the output)"}),
    ("--physician-only", "physician_only", {"action": "store_true",
                                            "help": "padchest: keep only the rows labelled by physicians"}),
)  # fmt: skip
# Flags of the collections with reports, turned into one ReportFindings object.
REPORT_OPTIONS = ("findings", "extraction_cache")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", required=True, choices=list(COLLECTIONS), help="collection name")
    parser.add_argument("--root", type=Path, required=True, help="the collection's folder, as published")
    parser.add_argument("--output", type=Path, required=True, help="datalist JSON to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of patients in validation")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of patients in test (collections without an official test split)")
    parser.add_argument("--knowledge-base", type=Path, default=DEFAULT_KNOWLEDGE_BASE_PATH,
                        help="knowledge base YAML that names the labels' categories")
    parser.add_argument("--quiet", action="store_true", help="print only errors")
    for flag, _, keywords in SPECIFIC_OPTIONS:
        parser.add_argument(flag, default=None, **keywords)
    args = parser.parse_args(argv)
    try:
        args.fractions = SplitFractions(args.val_fraction, args.test_fraction)
    except ValueError as error:
        parser.error(str(error))
    takes = COLLECTIONS[args.collection].options
    for flag, name, _ in SPECIFIC_OPTIONS:
        if getattr(args, name) is not None and name not in takes:
            parser.error(f"{flag} does not apply to {args.collection}")
    if args.findings is not None and args.extraction_cache is not None:
        parser.error("--extraction-cache caches the extraction that --findings replaces; pass one of them")
    return args


def report_findings_source(args: argparse.Namespace, knowledge_base: KnowledgeBase, stack: ExitStack) -> ReportFindings:
    """Where a report collection's findings come from: the --findings file, or the rules backend through
    its cache (--extraction-cache, default beside the output), closed by ``stack``."""
    if args.findings is not None:
        return ReportFindings(precomputed=read_findings_jsonl(args.findings, knowledge_base), source=str(args.findings))
    cache_path = args.extraction_cache or args.output.with_name(args.output.stem + ".extraction-cache.sqlite")
    try:
        cache = stack.enter_context(FindingsCache(cache_path))
    except ValueError as error:
        raise CollectionError(str(error)) from None
    return ReportFindings(extractor=RulesExtractor(knowledge_base), cache=cache, progress=not args.quiet)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    takes = COLLECTIONS[args.collection].options
    try:
        module = adapter(args.collection)
        if not args.root.is_dir():
            raise CollectionError(f"--root {args.root} is not a folder; pass the collection's folder")
        check_output(args.output, args.overwrite)
        options = {name: getattr(args, name) for _, name, _ in SPECIFIC_OPTIONS
                   if name in takes and name not in REPORT_OPTIONS and getattr(args, name) is not None}  # fmt: skip
        if "masks_dir" in takes:
            options.setdefault("masks_dir", args.output.parent / "masks")
        knowledge_base = KnowledgeBase.from_yaml(args.knowledge_base)
        with ExitStack() as stack:
            if "findings" in takes:
                options["reports"] = report_findings_source(args, knowledge_base, stack)
            prepared = module.prepare(args.root, knowledge_base, args.fractions, **options)
        path = write_datalist(prepared, args.output, args.overwrite)
    except (CollectionError, KnowledgeBaseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        print("\n".join(prepared.summary.lines()))
        print(f"wrote {path} (summary: {path.with_name(path.stem + '.summary.json')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
