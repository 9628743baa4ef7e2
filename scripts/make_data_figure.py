"""Figures of SynthCXR for docs/data.md: example studies with their reports, and every category.

    python scripts/make_data_figure.py --out docs/synthcxr_grid.png \
        [--categories-out docs/synthcxr_categories.png] [--size 224] [--seed 0]

The grid shows 12 generated studies (chosen to cover many categories) with their reports. The
category figure has one row per category: the same patient without the finding, then the
finding small and large on one side, large on the other side (or in another zone), and the
lesion mask outlined in red.
"""

from __future__ import annotations

import argparse
import io
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from bundle.data.synthcxr import CATEGORY_RECIPES, FindingSpec, generate_study  # noqa: E402
from bundle.findings import Presence  # noqa: E402
from bundle.io import write_bytes_atomic  # noqa: E402

GRID_ROWS, GRID_COLUMNS = 3, 4


def pick_grid_seeds(seed: int, count: int) -> list[int]:
    """Seeds of ``count`` studies: one normal, then those adding a category not shown yet."""
    chosen: list[int] = []
    covered: set[str] = set()
    candidate = seed * 10_000
    while len(chosen) < count and candidate < seed * 10_000 + 2_000:
        categories = {spec.category for spec in generate_study(candidate, size=64).specs}
        first_normal = not categories and not any(not generate_study(c, size=64).specs for c in chosen)
        all_shown = covered >= set(CATEGORY_RECIPES)
        if first_normal or categories - covered or (all_shown and len(categories) >= 2):
            chosen.append(candidate)
            covered |= categories
        candidate += 1
    return chosen


def grid_figure(seed: int, size: int) -> plt.Figure:
    seeds = pick_grid_seeds(seed, GRID_ROWS * GRID_COLUMNS)
    figure, axes = plt.subplots(GRID_ROWS * 2, GRID_COLUMNS, figsize=(GRID_COLUMNS * 3.4, GRID_ROWS * 5.0),
                                gridspec_kw={"height_ratios": [1.0, 0.48] * GRID_ROWS})
    for index, study_seed in enumerate(seeds):
        study = generate_study(study_seed, size=size)
        row, column = divmod(index, GRID_COLUMNS)
        image_axis, text_axis = axes[2 * row, column], axes[2 * row + 1, column]
        image_axis.imshow(study.image, cmap="gray", vmin=0, vmax=255)
        image_axis.set_title(", ".join(_label(spec) for spec in study.specs) or "normal", fontsize=7)
        report = "\n".join(textwrap.fill(line, 58) for line in study.report.split("\n"))
        text_axis.text(0.0, 1.0, report, fontsize=5.8, va="top", ha="left")
    for axis in axes.ravel():
        axis.axis("off")
    figure.suptitle("SynthCXR: generated studies and their reports", fontsize=11)
    figure.tight_layout(rect=(0.0, 0.0, 1.0, 0.98))
    return figure


def _label(spec: FindingSpec) -> str:
    words = [spec.category.replace("_", " ")]
    if spec.presence is Presence.UNCERTAIN:
        words.insert(0, "?")
    return " ".join(words)


def category_variants(category: str) -> list[FindingSpec]:
    """Small and large on one side, large on the other side (or in another zone when one-sided)."""
    recipe = CATEGORY_RECIPES[category]
    severities = recipe.severities or (None,)
    low, high = severities[0], severities[-1]
    zones = recipe.zones or (None,)
    sides = [side for side in recipe.lateralities if side != "bilateral"] or list(recipe.lateralities) or [None]
    first_side = sides[0]
    second_side = sides[1] if len(sides) > 1 else first_side
    second_zone = zones[1] if len(sides) == 1 and len(zones) > 1 else zones[0]
    # an ungraded category shows another zone instead of a larger size
    middle_zone = zones[0] if low != high or len(zones) == 1 else zones[-1]
    return [
        FindingSpec(category, first_side, zones[0], low),
        FindingSpec(category, first_side, middle_zone, high),
        FindingSpec(category, second_side, second_zone, high),
    ]


def categories_figure(seed: int, size: int) -> plt.Figure:
    categories = list(CATEGORY_RECIPES)
    columns = 5
    figure, axes = plt.subplots(len(categories), columns, figsize=(columns * 1.9, len(categories) * 2.05))
    for row, category in enumerate(categories):
        study_seed = (seed, 7, row)
        normal = generate_study(study_seed, size=size, specs=[])
        variants = [generate_study(study_seed, size=size, specs=[spec]) for spec in category_variants(category)]
        panels = [(normal.image, "no finding")] + [
            (study.image, _variant_title(study.specs[0])) for study in variants
        ]
        for column, (image, title) in enumerate(panels):
            axes[row, column].imshow(image, cmap="gray", vmin=0, vmax=255)
            axes[row, column].set_title(title, fontsize=6.5)
        last = variants[-1]
        axes[row, 4].imshow(last.image, cmap="gray", vmin=0, vmax=255)
        if last.lesion_mask.any():
            axes[row, 4].contour(last.lesion_mask > 0, levels=[0.5], colors="red", linewidths=0.7)
        axes[row, 4].set_title("lesion mask", fontsize=6.5)
        axes[row, 0].text(-0.08, 0.5, category.replace("_", " "), transform=axes[row, 0].transAxes,
                          rotation=90, va="center", ha="right", fontsize=8)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle("SynthCXR categories: severity and location change the drawing", fontsize=10)
    figure.tight_layout(rect=(0.0, 0.0, 1.0, 0.99))
    return figure


def _variant_title(spec: FindingSpec) -> str:
    return " ".join(part for part in (spec.location, spec.severity) if part) or spec.category


def save_atomically(figure: plt.Figure, path: Path, dpi: int) -> None:
    """Save as a 256-colour PNG (a third of the RGBA size; the figures are grey plus a red outline)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    buffer.seek(0)
    palette = io.BytesIO()
    Image.open(buffer).convert("RGB").quantize(colors=256).save(palette, format="PNG", optimize=True)
    write_bytes_atomic(path, palette.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/synthcxr_grid.png"), help="grid figure path")
    parser.add_argument("--categories-out", type=Path, default=Path("docs/synthcxr_categories.png"),
                        help="per-category figure path")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the examples")
    parser.add_argument("--dpi", type=int, default=110)
    args = parser.parse_args(argv)
    save_atomically(grid_figure(args.seed, args.size), args.out, args.dpi)
    save_atomically(categories_figure(args.seed, args.size), args.categories_out, args.dpi)
    print(f"wrote {args.out} and {args.categories_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
