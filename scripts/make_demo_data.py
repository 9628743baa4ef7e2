"""Generate SynthCXR, the embedded synthetic chest X-ray data set (images, reports, findings, masks).

    python scripts/make_demo_data.py --out data/synthcxr --n 2000 --size 224 --seed 0 \
        [--unseen mass,bulla] [--val-fraction 0.1 --test-fraction 0.2] [--normal-fraction 0.25] [--workers 2] \
        [--overwrite] [--layout synthcxr|mimic-cxr]

Writes ``images/``, ``reports/``, ``masks/lung/``, ``masks/lesion/``, ``findings/``,
``synthcxr_manifest.json`` and ``datalist.json`` under ``--out`` (see docs/data.md). The same
arguments give byte-identical files whatever ``--workers`` is. ``--unseen`` categories are held
out of training and validation and appear only in the test split.

``--out`` must be new, empty, or written by this script with the same arguments (a complete data
set is then left as it is, an interrupted one is written again); ``--overwrite`` writes into any
folder, deleting only the files an earlier SynthCXR run recorded there.

``--layout mimic-cxr`` writes the same studies as MIMIC-CXR-JPG lays them out (image and report
trees, gzipped metadata/split/chexpert tables; ``bundle/data/synthcxr/mimic_layout.py``) for
``scripts/prepare_dataset.py --collection mimic-cxr``; ``--out`` must then be new or empty
(``--overwrite``: write into it anyway), and ``--unseen`` does not apply (the layout cannot record it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bundle.data.synthcxr import CATEGORY_RECIPES, write_dataset  # noqa: E402
from bundle.data.synthcxr.dataset import SPLITS  # noqa: E402
from bundle.data.synthcxr.mimic_layout import write_mimic_layout  # noqa: E402

LAYOUTS = ("synthcxr", "mimic-cxr")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--n", type=int, default=2000, help="number of studies (images)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole data set")
    parser.add_argument("--unseen", default="", help="comma-separated categories held out of training/validation")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of studies in validation")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of studies in test")
    parser.add_argument("--normal-fraction", type=float, default=0.25, help="share of studies without findings")
    parser.add_argument("--workers", type=int, default=2, help="processes drawing studies (1 = in this process)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a folder that holds other data or another SynthCXR data set; deletes only "
                             "the files an earlier SynthCXR run recorded there, keeps every other file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--layout", choices=LAYOUTS, default="synthcxr",
                        help="synthcxr (default: images, masks, datalist.json) or mimic-cxr (MIMIC-CXR-JPG's files, "
                             "reports and tables, for scripts/prepare_dataset.py --collection mimic-cxr)")
    args = parser.parse_args(argv)
    args.unseen = [name.strip() for name in args.unseen.split(",") if name.strip()]
    unknown = [name for name in args.unseen if name not in CATEGORY_RECIPES]
    if unknown:
        parser.error(
            f"--unseen {','.join(unknown)}: not a SynthCXR category; choose from {', '.join(CATEGORY_RECIPES)}"
        )
    if args.unseen and args.layout == "mimic-cxr":
        parser.error("--unseen does not apply to --layout mimic-cxr: its tables have no place for held-out categories")
    if args.n < 1:
        parser.error(f"--n must be at least 1, got {args.n}")
    if args.size < 32:
        parser.error(f"--size must be at least 32 pixels, got {args.size}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        if args.layout == "mimic-cxr":
            metadata = write_mimic_layout(
                args.out, n=args.n, size=args.size, seed=args.seed, val_fraction=args.val_fraction,
                test_fraction=args.test_fraction, normal_fraction=args.normal_fraction, workers=args.workers,
                progress=not args.quiet, overwrite=args.overwrite,
            )
            if not args.quiet:
                print(f"{args.out} holds {args.n} studies in the MIMIC-CXR-JPG layout ({metadata.name} and the other "
                      f"tables, files/, mimic-cxr-reports/) in {time.perf_counter() - start:.1f} s; next: "
                      f"python scripts/prepare_dataset.py --collection mimic-cxr --root {args.out} --output DATALIST.json")
            return 0
        datalist_path = write_dataset(
            args.out, n=args.n, size=args.size, seed=args.seed, unseen=args.unseen,
            val_fraction=args.val_fraction, test_fraction=args.test_fraction,
            normal_fraction=args.normal_fraction, workers=args.workers, progress=not args.quiet,
            overwrite=args.overwrite,
        )
    except ValueError as err:
        print(f"make_demo_data.py: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. no permission, or a path component that is a file
        print(f"make_demo_data.py: error: cannot write the data set under '{args.out}': {err}. "
              "Give --out a folder you can write to.", file=sys.stderr)
        return 2
    if not args.quiet:
        print(summary(datalist_path, time.perf_counter() - start))
    return 0


def summary(datalist_path: Path, seconds: float) -> str:
    """Studies per split and positive (present) studies per category and split."""
    datalist = json.loads(datalist_path.read_text(encoding="utf-8"))
    lines = [f"{datalist_path} ready in {seconds:.1f} s"]
    counts = {split: Counter() for split in SPLITS}
    for split in SPLITS:
        for item in datalist[split]:
            counts[split].update({f["category"] for f in item["findings"] if f["presence"] == "present"})
    lines.append(f"{'category':<20}" + "".join(f"{split:>12}" for split in SPLITS))
    lines.append(f"{'studies':<20}" + "".join(f"{len(datalist[split]):>12}" for split in SPLITS))
    for category in datalist["categories"]:
        held_out = " (unseen)" if category in datalist["unseen_categories"] else ""
        lines.append(f"{category + held_out:<20}" + "".join(f"{counts[split][category]:>12}" for split in SPLITS))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
