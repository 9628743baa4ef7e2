"""Segmentation inference over a folder: the image files it holds, and the readable ones among them.

A folder handed to inference may hold a corrupt file, a README or a colour DICOM. Each of
those is reported by name and counted while every other image is segmented; a training run's
``collate_readable`` refuses a batch with no readable item, which at one image per batch would
end the run at the first bad file, so inference reads through ``ReadableImages`` instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

from torch.utils.data import IterableDataset, get_worker_info

from bundle.transforms.segmentation import output_stem

from .errors import UserInputError
from .unreadable import SkipUnreadableCompose, UnreadableImage

LOGGER = logging.getLogger(__name__)
# What --encoder_weights takes for a randomly initialised encoder: MONAI drops None-valued overrides,
# so `--encoder_weights None` would silently keep the default checkpoint.
RANDOM_WEIGHTS = ("random", "none", "null", "")


def encoder_weights(value: str | None) -> str | None:
    """The checkpoint an ``encoder_weights`` config value names, or None for ``random`` (see ``RANDOM_WEIGHTS``)."""
    if value is None or str(value).strip().lower() in RANDOM_WEIGHTS:
        return None
    return str(value)


def image_files(folder: str | Path) -> list[dict[str, str]]:
    """``{"image": path}`` for every file in ``folder`` (not below it; hidden files left out), by name.

    Every file is tried, whatever its suffix (DICOM files often have none); what cannot be read
    is reported by ``ReadableImages``.

    Raises:
        UserInputError: the folder does not exist or holds no file, or two files would write the
            same outputs (``a.png`` and ``a.dcm`` both give ``a_seg.png``).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserInputError(f"the image folder '{folder}' does not exist or is not a folder. "
                             "Fix: pass --dataset_dir with the folder that holds the images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise UserInputError(f"the image folder '{folder}' holds no file. Fix: pass --dataset_dir with the folder "
                             "that holds the images (files directly in it; sub-folders are not searched)")
    by_stem: dict[str, list[str]] = {}
    for path in files:
        by_stem.setdefault(output_stem(path), []).append(path.name)
    clashes = [names for names in by_stem.values() if len(names) > 1]
    if clashes:
        listed = "; ".join(" and ".join(names) for names in clashes)
        raise UserInputError(f"in '{folder}', {listed} would write the same output files. "
                             "Fix: rename one of each, or segment them from separate folders")
    return [{"image": str(path)} for path in files]


class ReadableImages(IterableDataset):
    """The items of ``data`` through ``transform``, without those whose image cannot be read.

    Each unreadable image is logged with its problem when it is met and kept in ``skipped``;
    ``log_summary`` reports the count at the end. Iterate it in the main process
    (``num_workers=0``): the record of skipped files would stay in a worker.

    Args:
        data: the items (``image_files``).
        transform: the preprocessing, a ``SkipUnreadableCompose`` (``skip_unreadable`` is
            switched on).
    """

    def __init__(self, data: Sequence[dict[str, Any]], transform: SkipUnreadableCompose) -> None:
        self.data = list(data)
        self.transform = transform
        self.transform.skip_unreadable = True
        self.skipped: list[UnreadableImage] = []

    def __iter__(self) -> Iterator[Any]:
        if get_worker_info() is not None:
            raise RuntimeError("ReadableImages counts skipped files in the main process: use num_workers=0")
        self.skipped = []
        for item in self.data:
            result = self.transform(item)
            if isinstance(result, UnreadableImage):
                LOGGER.warning(f"skipped an unreadable file: {result}")
                self.skipped.append(result)
                continue
            yield result

    def log_summary(self) -> None:
        """Log how many files were read and which were not.

        Raises:
            UserInputError: no file could be read (nothing was written).
        """
        read = len(self.data) - len(self.skipped)
        if read == 0:
            raise UserInputError(f"none of the {len(self.data)} file(s) could be read, so nothing was written. Fix: "
                                 "check the messages above for each file (PNG, JPEG, DICOM and NIfTI are read)")
        if not self.skipped:
            LOGGER.info(f"segmented {read} image(s)")
            return
        listed = "\n".join(f"  {item}" for item in self.skipped)
        LOGGER.warning(f"segmented {read} of {len(self.data)} file(s); {len(self.skipped)} could not be read:\n{listed}")
