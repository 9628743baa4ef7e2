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

Writes DATALIST.json (splits ``training``/``validation``/``test``, read by configs/train.json and
configs/evaluate.json as they are) and DATALIST.summary.json (labels counted, labels without a
category, missing images, skipped rows) and prints the summary. Image paths under the datalist's
folder are written relative to it, others absolute. Missing images are counted and left out; a
missing table or column stops the run with exit code 2. docs/datasets.md describes each collection.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bundle.data.collections import COLLECTIONS, CollectionError, SplitFractions, adapter, write_datalist  # noqa: E402
from bundle.data.collections.common import check_output  # noqa: E402
from bundle.knowledge.base import DEFAULT_KNOWLEDGE_BASE_PATH, KnowledgeBase, KnowledgeBaseError  # noqa: E402

# Options that only some collections take: (flag, collection option name, argparse keywords).
SPECIFIC_OPTIONS = (
    ("--lung-masks", "lung_masks", {"choices": ("v7labs", "lungvae", "none"),
                                    "help": "covid-chestxray: lung mask source (default v7labs, see docs/datasets.md)"}),
    ("--masks-dir", "masks_dir", {"type": Path,
                                  "help": "siim-acr: folder for the decoded mask PNGs (default: masks/ beside the output)"}),
    ("--views", "views", {"choices": ("frontal", "all"),
                          "help": "chexpert, padchest: keep frontal images only (default) or all views"}),
    ("--physician-only", "physician_only", {"action": "store_true",
                                            "help": "padchest: keep only the rows labelled by physicians"}),
)  # fmt: skip


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
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        module = adapter(args.collection)
        if not args.root.is_dir():
            raise CollectionError(f"--root {args.root} is not a folder; pass the collection's folder")
        check_output(args.output, args.overwrite)
        options = {name: getattr(args, name) for _, name, _ in SPECIFIC_OPTIONS
                   if name in COLLECTIONS[args.collection].options and getattr(args, name) is not None}  # fmt: skip
        if "masks_dir" in COLLECTIONS[args.collection].options:
            options.setdefault("masks_dir", args.output.parent / "masks")
        knowledge_base = KnowledgeBase.from_yaml(args.knowledge_base)
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
