"""Checkpoints: the one to resume from, loading with clear errors, and savers that survive a resume.

A resume must continue the same run or stop and say why. ``CheckedCheckpointLoader`` stops
when the newest checkpoint cannot be read, does not fit the network, belongs to another run
(``RunIdentity``) or has already trained every epoch asked for; the message names the file
and the fix. ``RollingCheckpointSaver`` writes atomically and keeps only its own periodic
checkpoints, so that after ``--resume false`` or a resume the newest file is this run's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch
from ignite.engine import Engine
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver

from .errors import UserInputError

_STEP = re.compile(r"=(\d+)\.pt$")


def checkpoint_files(directory: str | Path, prefix: str = "checkpoint") -> list[tuple[int, Path]]:
    """The Ignite checkpoints ``<prefix>_*=<step>.pt`` in ``directory`` with their steps, oldest step first."""
    pattern = f"{prefix}_*.pt" if prefix else "*.pt"  # Ignite joins a prefix with "_"
    return sorted((int(m.group(1)), p) for p in Path(directory).glob(pattern) if (m := _STEP.search(p.name)))


def latest_checkpoint(directory: str | Path, prefix: str = "checkpoint") -> str | None:
    """Path of the newest Ignite checkpoint ``<prefix>_*=<step>.pt`` in ``directory`` (by step), or None.

    Ignite's ``Checkpoint`` names periodic checkpoints by their global step, and
    ``RollingCheckpointSaver`` writes them atomically and removes those of earlier runs, so the
    highest step is this run's last complete save.
    """
    files = checkpoint_files(directory, prefix)
    return str(files[-1][1]) if files else None


class CheckpointError(UserInputError):
    """A checkpoint that cannot be loaded or resumed; the message names the file and the fix."""


class RunMismatchError(UserInputError):
    """A checkpoint written by a run with other identifying settings (see ``RunIdentity``)."""


class RunIdentity:
    """The settings that make a training run itself, stored in its checkpoints (list it in ``train#checkpoint``).

    Loading a checkpoint whose settings differ raises ``RunMismatchError`` naming each one, so
    that a leftover checkpoint of another variant, seed or data set in ``ckpt_dir`` is not
    silently continued as this run. Values must be plain (str, int, float, bool, None).
    """

    def __init__(self, **settings: Any) -> None:
        self.settings = dict(settings)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.settings)

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        differences = [
            f"{key}: {saved.get(key)!r} in the checkpoint, {value!r} now"
            for key, value in self.settings.items()
            if saved.get(key) != value
        ]
        if differences:
            raise RunMismatchError(f"it belongs to another run ({'; '.join(differences)})")


def _brief(error: BaseException) -> str:
    """An error's message on one short line: torch's load_state_dict errors span many, its load errors ramble."""
    lines = str(error).strip().splitlines()
    text = " ".join(line.strip() for line in lines[:2])
    if len(text) > 200:
        text = text.split(". ")[0]
    return f"{type(error).__name__}: {text}"


# What to do about a checkpoint that cannot be resumed, by problem.
_AFRESH = "pass --resume false (this run starts afresh and replaces the checkpoints in ckpt_dir) or a fresh --ckpt_dir"
_RESUME_FIXES = {
    "damaged": "delete it (training then resumes from an older checkpoint in ckpt_dir or starts afresh), or " + _AFRESH,
    "other run": f"to train this run afresh, {_AFRESH}; to continue the checkpoint's run, use the configs and settings "
                 "it was trained with",
}
_EVALUATION_FIX = ("point --ckpt_dir (or --eval_checkpoint) at a run trained with these configs (the same variant and "
                   "tower overrides), or train one first")


class CheckedCheckpointLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` with errors that name the checkpoint and the fix.

    When ``load_dict`` holds the engine it is attached to, this is a resume: it also stops when
    the checkpoint has already trained ``max_epochs`` epochs (MONAI would train none and
    report success, or raise a message without the file when it has trained more), unless
    ``finished_run`` is ``"keep"``: then it says so and the run ends with the checkpoint's
    training as it is (what a re-run script such as ``scripts/demo.sh`` wants). Otherwise it
    loads weights for evaluation and its messages say so, with ``load_fix`` as the fix (the
    default names the evaluation config's options; a config with other options passes its own).

    Raises:
        CheckpointError: the file is missing, unreadable (truncated, not a checkpoint), does not
            fit the objects (another network or configuration), belongs to another run
            (``RunIdentity``), or has nothing left to train.
    """

    def __init__(
        self,
        load_path: str,
        load_dict: dict,
        name: str | None = None,
        map_location: Any = None,
        strict: bool = True,
        finished_run: str = "stop",
        load_fix: str = _EVALUATION_FIX,
    ) -> None:
        super().__init__(load_path=load_path, load_dict=load_dict, name=name, map_location=map_location, strict=strict)
        if finished_run not in ("stop", "keep"):
            raise UserInputError(f"finished_run must be 'stop' or 'keep', got {finished_run!r}. "
                                 "Fix: pass --finished_run stop or --finished_run keep")
        self.finished_run = finished_run
        self.load_fix = load_fix

    def __call__(self, engine: Engine) -> None:
        resuming = any(obj is engine for obj in self.load_dict.values())
        path = Path(self.load_path)
        if not path.is_file():
            raise self._error(resuming, "the file does not exist", _RESUME_FIXES["damaged"])
        try:
            checkpoint = torch.load(path, map_location=self.map_location, weights_only=True)
        except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError ... on a damaged file
            problem = f"it cannot be read: it is truncated or not a checkpoint ({_brief(err)})"
            raise self._error(resuming, problem, _RESUME_FIXES["damaged"]) from err
        missing = [key for key in self.load_dict if key not in checkpoint] if len(self.load_dict) > 1 else []
        if missing:
            problem = f"it lacks {missing}, which this run saves (another configuration or an older bundle wrote it)"
            raise self._error(resuming, problem, _RESUME_FIXES["other run"])
        max_epochs = engine.state.max_epochs
        try:
            Checkpoint.load_objects(to_load=self.load_dict, checkpoint=checkpoint, strict=self.strict)
        except RunMismatchError as err:
            raise self._error(resuming, str(err), _RESUME_FIXES["other run"]) from err
        except (RuntimeError, KeyError, ValueError, TypeError) as err:  # shapes, missing entries, optimizer groups
            problem = f"it does not fit this configuration's network or training state ({_brief(err)})"
            raise self._error(resuming, problem, _RESUME_FIXES["other run"]) from err
        if resuming:
            trained = engine.state.epoch
            if max_epochs is not None and trained >= max_epochs and self.finished_run == "keep":
                self.logger.warning(f"{path} has trained {trained} of max_epochs {max_epochs} epochs: nothing is left "
                                    "to train, the run ends as it is (finished_run keep)")
                engine.state.max_epochs = trained
                return
            if max_epochs is not None and trained >= max_epochs:
                problem = f"it has trained {trained} epochs and max_epochs is {max_epochs}: nothing is left to train"
                fix = (f"to train this run further, pass --max_epochs above {trained}; to train a new run, {_AFRESH}; "
                       "to accept the finished run as it is, pass --finished_run keep")
                raise self._error(resuming, problem, fix)
            engine.state.max_epochs = max_epochs  # Ignite's load_state_dict sets the checkpoint's
        self.logger.info(f"Restored all variables from {path}")

    def _error(self, resuming: bool, problem: str, resume_fix: str) -> CheckpointError:
        if resuming:
            return CheckpointError(f"cannot resume from checkpoint '{self.load_path}': {problem}. Fix: {resume_fix}")
        return CheckpointError(f"cannot load checkpoint '{self.load_path}': {problem}. Fix: {self.load_fix}")


class RollingCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` whose periodic checkpoints are atomic and this run's own.

    MONAI writes checkpoints in place (a kill during the write leaves a truncated newest file),
    and Ignite's ``n_saved`` counts only the files this process wrote: the checkpoint a run
    resumed from, or one of the run that ``--resume false`` replaced, stays and may later be
    taken as the newest. After each periodic save this saver removes the checkpoints in
    ``save_dir`` that it did not write (``checkpoint_files`` with ``file_prefix``).
    """

    def __init__(self, save_dir: str, save_dict: dict, file_prefix: str = "", **kwargs: Any) -> None:
        super().__init__(save_dir=save_dir, save_dict=save_dict, file_prefix=file_prefix, **kwargs)
        self.file_prefix = file_prefix
        if self._interval_checkpoint is not None:
            self._interval_checkpoint.save_handler = DiskSaver(save_dir, atomic=True, require_empty=False)

    def interval_completed(self, engine: Engine) -> None:
        super().interval_completed(engine)
        own = {Path(item.filename).name for item in self._interval_checkpoint._saved}  # as MONAI reads it too
        for _, path in checkpoint_files(self.save_dir, self.file_prefix):
            if path.name not in own:
                path.unlink(missing_ok=True)
                self.logger.info(f"Removed {path.name}, a checkpoint this run did not write (it resumed from it "
                                 "or replaces its run)")


class BestModelSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` for the best model, whose best score survives a resume.

    MONAI restores the tracked best score only from a ``checkpointer`` entry that it writes into
    the best-model file itself (``key_metric_save_state``), which turns ``model.pt`` from a plain
    state dict into something ``load_state_dict`` rejects. Giving the saver a ``state_dict`` lets
    the periodic trainer checkpoint carry the score instead (list it in ``train#checkpoint``), and
    ``model.pt`` stays the network's weights alone.
    """

    def state_dict(self) -> dict:
        if self._key_metric_checkpoint is None:
            raise ValueError("BestModelSaver tracks a best score only with save_key_metric=True")
        return self._key_metric_checkpoint.state_dict()

