"""Engines: the pieces that wire networks, losses and data into Ignite workflows."""

from .checkpoint import (BestModelSaver, CheckedCheckpointLoader, CheckpointError, RollingCheckpointSaver, RunIdentity,
                         RunMismatchError, latest_checkpoint)
from .errors import UserInputError, explain_errors
from .flags import flag
from .preflight import require_iterations
from .prepare_batch import PrepareFindingsBatch
from .unreadable import SkipUnreadableCompose, UnreadableImage, UnreadableImagesHandler, collate_readable
from .zero_shot import ZeroShotInferer, stack_outputs

__all__ = ["BestModelSaver", "CheckedCheckpointLoader", "CheckpointError", "PrepareFindingsBatch",
           "RollingCheckpointSaver", "RunIdentity", "RunMismatchError", "SkipUnreadableCompose", "UnreadableImage",
           "UnreadableImagesHandler", "UserInputError", "ZeroShotInferer", "collate_readable", "explain_errors", "flag",
           "latest_checkpoint", "require_iterations", "stack_outputs"]
