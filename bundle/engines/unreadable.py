"""Skipping unreadable images: a Compose that marks the item, a collate that drops it, a handler that counts.

Real collections hold a few corrupt or truncated files, and one of them should not end a
training run of days. MONAI, Ignite and torch have no switch for this (a transform error
always propagates, and a DataLoader cannot return fewer items), so the pieces are here:

- ``SkipUnreadableCompose`` runs the transforms and, when ``skip_unreadable`` is on, turns a
  ``ChestXRayReadError`` into an ``UnreadableImage`` marker. Being a ``Compose``, it works
  for ``Dataset`` and for ``CacheDataset``, which caches the marker (the file is read once);
- ``collate_readable`` drops the markers from a batch and passes them on under
  ``UNREADABLE_KEY``, since the count has to leave the DataLoader worker with the batch;
- ``UnreadableImagesHandler`` takes them off the batch before the iteration, logs each epoch's
  skipped files and puts their count in ``engine.state.metrics`` (so ``StatsHandler`` and
  ``MLFlowHandler`` report it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from ignite.engine import Engine, Events
from monai.data import list_data_collate
from monai.transforms import Compose

from bundle.transforms.image import ChestXRayReadError

from .errors import UserInputError, error_chain

UNREADABLE_KEY = "unreadable_images"


@dataclass(frozen=True)
class UnreadableImage:
    """Stands for an item whose image could not be read; what the transforms return instead of it."""

    filename: str
    problem: str

    def __str__(self) -> str:
        return f"{self.filename}: {self.problem}"


class SkipUnreadableCompose(Compose):
    """MONAI ``Compose`` that, with ``skip_unreadable``, returns an ``UnreadableImage`` for an unreadable image.

    Off (the default), the ``ChestXRayReadError`` that names the file ends the run, its fix
    extended by the switch. A marker given back to it (a ``CacheDataset`` replaying its cache)
    passes through untouched.

    Args:
        transforms: the transforms, as for ``Compose``.
        skip_unreadable: turn unreadable images into markers instead of errors.
        kwargs: other ``Compose`` arguments.
    """

    def __init__(self, transforms: Sequence[Any] | Any = None, skip_unreadable: bool = False, **kwargs: Any) -> None:
        super().__init__(transforms, **kwargs)
        self.skip_unreadable = skip_unreadable

    def __call__(self, input_: Any, start: int = 0, end: int | None = None, threading: bool = False,
                 lazy: bool | None = None) -> Any:
        if isinstance(input_, UnreadableImage):
            return input_
        try:
            return super().__call__(input_, start=start, end=end, threading=threading, lazy=lazy)
        except Exception as err:  # MONAI wraps a transform's error in RuntimeError("applying transform ...")
            cause = next((e for e in error_chain(err) if isinstance(e, ChestXRayReadError)), None)
            if cause is None:
                raise
            if self.skip_unreadable:
                return UnreadableImage(cause.filename, cause.problem)
            fix = f"{cause.fix}; or skip unreadable images (they are counted and logged): --skip_unreadable_images true"
            raise ChestXRayReadError(cause.filename, cause.problem, fix) from err


def collate_readable(items: Sequence[Any]) -> Any:
    """MONAI's ``list_data_collate`` of the readable items; the markers go under ``UNREADABLE_KEY``.

    Raises:
        UserInputError: every item of the batch is unreadable (there is nothing to train on, and
            that many broken files in one batch means the data set needs fixing, not skipping).
    """
    skipped = [item for item in items if isinstance(item, UnreadableImage)]
    readable = [item for item in items if not isinstance(item, UnreadableImage)]
    if not skipped:
        return list_data_collate(items)
    if not readable:
        listed = "\n".join(f"  {item}" for item in skipped)
        raise UserInputError(
            f"all {len(skipped)} images of a batch are unreadable:\n{listed}\nFix: repair or re-download these "
            "files, or drop them from the datalist; this many unreadable images is more than skipping should hide"
        )
    batch = list_data_collate(readable)
    batch[UNREADABLE_KEY] = skipped
    return batch


class UnreadableImagesHandler:
    """Ignite handler that counts and logs the images ``collate_readable`` dropped, per epoch.

    Attach it to every engine whose loader uses ``collate_readable`` (list it first among the
    handlers, so that the metric is set before ``StatsHandler`` and ``MLFlowHandler`` read it).

    Args:
        metric_name: key of the per-epoch count in ``engine.state.metrics``, e.g.
            ``"train_skipped_images"``.
        max_listed: files named in the log per epoch; the rest are counted.
    """

    def __init__(self, metric_name: str, max_listed: int = 20) -> None:
        self.metric_name = metric_name
        self.max_listed = max_listed
        self.logger = logging.getLogger(__name__)
        self.skipped: list[UnreadableImage] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self.take_from_batch)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.report)

    def reset(self, engine: Engine) -> None:
        self.skipped = []

    def take_from_batch(self, engine: Engine) -> None:
        if isinstance(engine.state.batch, dict):
            self.skipped.extend(engine.state.batch.pop(UNREADABLE_KEY, []))

    def report(self, engine: Engine) -> None:
        engine.state.metrics[self.metric_name] = len(self.skipped)
        if not self.skipped:
            return
        listed = "\n".join(f"  {item}" for item in self.skipped[: self.max_listed])
        more = len(self.skipped) - self.max_listed
        self.logger.warning(
            f"Epoch {engine.state.epoch}: skipped {len(self.skipped)} unreadable image(s) ({self.metric_name}):\n"
            f"{listed}" + (f"\n  ... and {more} more" if more > 0 else "")
        )
