"""Checks before a trainer runs, for settings under which it would train nothing and still succeed."""

from __future__ import annotations

from monai.engines import Workflow

from .errors import UserInputError


def require_iterations(trainer: Workflow) -> None:
    """Raise unless ``trainer.run()`` would run at least one iteration.

    MONAI's ``Workflow.run`` only warns and returns when its loader yields no batch, so a
    training split smaller than one batch (with ``drop_last``) or ``max_epochs`` below 1 ends
    with exit code 0 and no checkpoint. Call this right before ``trainer.run()``.

    Raises:
        UserInputError: naming the number of items, the batch size or ``max_epochs``, and the fix.
    """
    if not trainer.state.max_epochs or trainer.state.max_epochs < 1:
        raise UserInputError(
            f"max_epochs is {trainer.state.max_epochs}, so no epoch would run. Fix: pass --max_epochs 1 or more"
        )
    if trainer.state.epoch_length != 0:  # None: an iterable loader of unknown length, which MONAI runs
        return
    loader = trainer.data_loader
    items, batch_size = len(loader.dataset), loader.batch_size
    dropped = ", and incomplete batches are dropped (drop_last)" if getattr(loader, "drop_last", False) else ""
    raise UserInputError(
        f"the training split has {items} item(s) for batches of batch_size={batch_size}{dropped}, so training would "
        f"run no iteration. Fix: pass --batch_size {max(items, 1)} or less, or train on more items (the datalist's "
        "'training' split, max_train_items)"
    )
