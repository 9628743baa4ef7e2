"""A segmentation datalist prepared from a public collection: its items that have a mask, split by patient.

A segmentation run on a collection as published (``configs/lung_covid.json``) prepares its own
datalist: the collection's adapter reads the folder (read-only) and splits it by patient, and the
items without a mask of the wanted kind are left out of every split, since they can neither train
nor score a segmentation network. The datalist is written into the run's own output folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..engines.errors import UserInputError
from ..knowledge.base import default_knowledge_base
from .collections import CollectionError, SplitFractions, adapter, write_datalist

LOGGER = logging.getLogger(__name__)


def masked_datalist(
    collection: str,
    root: str | Path,
    output_file: str | Path,
    mask_key: str = "lung_mask",
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    **options: Any,
) -> str:
    """Prepare ``collection`` under ``root`` and write the items that have ``mask_key`` to ``output_file``.

    Args:
        collection: a collection name of ``bundle.data.collections`` (e.g. ``covid-chestxray``).
        root: the collection's folder as published; only read.
        output_file: the datalist JSON to write (replaced if it exists; ``<stem>.summary.json``
            beside it tells what was read and left out).
        mask_key: the item key of the mask (``lung_mask``).
        validation_fraction, test_fraction: shares of patients in validation and test; every image
            of a patient lands in one split (a hash of the patient id, the adapter's split).
        options: the adapter's own options, e.g. ``lung_masks="v7labs"``.

    Returns:
        The datalist path, for ``load_datalist``.

    Raises:
        UserInputError: the folder is not the collection, or no item of training or validation
            has a mask.
    """
    try:
        prepared = adapter(collection).prepare(Path(root), default_knowledge_base(),
                                               SplitFractions(validation_fraction, test_fraction), **options)
    except (CollectionError, ValueError) as error:
        raise UserInputError(f"could not prepare {collection} from '{root}': {error}. Fix: pass --dataset_dir with "
                             "the collection's folder as published") from None
    counts = {}
    for split, items in prepared.splits.items():
        kept = [item for item in items if item.get(mask_key)]
        counts[split] = f"{len(kept)} of {len(items)}"
        prepared.splits[split] = kept
        prepared.summary.items[split] = len(kept)
    if not prepared.splits["training"] or not prepared.splits["validation"]:
        raise UserInputError(f"{collection} in '{root}': too few images with a {mask_key} to train on (training "
                             f"{counts['training']}, validation {counts['validation']}). Fix: pass --dataset_dir "
                             "with a copy that holds its masks, or choose another mask source than "
                             f"{options or 'the default'}")
    prepared.summary.notes.append(f"kept the images with a {mask_key}: " +
                                  ", ".join(f"{split} {count}" for split, count in counts.items()))
    LOGGER.info(f"{collection}: {prepared.summary.notes[-1]}")
    return str(write_datalist(prepared, Path(output_file), overwrite=True))
