"""Adapters that turn public chest X-ray collections into the bundle's datalist.

One module per collection, each with ``prepare(root, knowledge_base, ...) -> PreparedCollection``;
``common`` holds what they share. ``COLLECTIONS`` names every collection the project plans for:
those whose adapter is not written yet raise :class:`CollectionError` ("not available yet") rather
than pretend. docs/datasets.md describes each layout and rule.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from .common import CollectionError, PreparedCollection, SplitFractions, Summary, write_datalist


@dataclass(frozen=True)
class Collection:
    """A registered collection: its adapter module (None until written) and the options it takes
    beyond root and split fractions."""

    name: str
    module: str | None
    options: tuple[str, ...] = ()


COLLECTIONS: dict[str, Collection] = {
    collection.name: collection
    for collection in (
        Collection("mimic-cxr", "mimic_cxr", ("views", "findings", "extraction_cache")),
        Collection("chexpert", "chexpert", ("views",)),
        Collection("chestx-ray14", "chestxray14"),
        Collection("rsna-pneumonia", "rsna_pneumonia"),
        Collection("siim-acr", "siim_acr", ("masks_dir",)),
        Collection("vindr-cxr", "vindr_cxr"),
        Collection("covidx", "covidx"),
        Collection("covid-chestxray", "covid_chestxray", ("lung_masks",)),
        Collection("iu-xray", "iu_xray", ("views", "findings", "extraction_cache")),
        Collection("tbx11k", "tbx11k"),
        Collection("padchest", "padchest", ("views", "physician_only")),
    )
}


def available() -> list[str]:
    return [name for name, collection in COLLECTIONS.items() if collection.module]


def adapter(name: str) -> ModuleType:
    """The adapter module of a collection.

    Raises:
        CollectionError: unknown name, or a planned collection whose adapter is not written yet.
    """
    if name not in COLLECTIONS:
        raise CollectionError(f"unknown collection {name!r}; choose one of {', '.join(COLLECTIONS)}")
    module = COLLECTIONS[name].module
    if module is None:
        raise CollectionError(
            f"collection {name!r} is not available yet (no adapter written); available now: {', '.join(available())}. "
            "Convert it to the datalist format yourself (docs/datasets.md) or use one of those."
        )
    return importlib.import_module(f"{__name__}.{module}")


__all__ = ["COLLECTIONS", "Collection", "CollectionError", "PreparedCollection", "SplitFractions", "Summary",
           "adapter", "available", "write_datalist"]  # fmt: skip
