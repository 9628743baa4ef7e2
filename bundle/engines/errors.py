"""Errors a user can fix, and last lines that show them instead of MONAI's generic wrappers.

MONAI's config parser re-raises whatever an expression or a component raises as
``RuntimeError: Failed to evaluate ConfigExpression`` / ``Failed to instantiate component``,
transforms add ``applying transform``, and a DataLoader worker turns the error into text
inside another exception. Python then ends the output of ``python -m monai.bundle run`` with
the wrapper, far below the message that says what is wrong. ``explain_errors`` installs an
exception hook that ends the output with the cause instead.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from types import TracebackType
from typing import Callable, Iterator

from bundle.data.datalist import DatalistError
from bundle.transforms.image import ChestXRayReadError

LOGGER = logging.getLogger(__name__)


class UserInputError(ValueError):
    """Data, files or settings a run was given that it cannot use; the message names them and says the fix.

    One message argument, so that the type survives a DataLoader worker (torch re-raises a
    worker's error as ``type(message)``).
    """


# Raised by the bundle for problems in what the user gave, each with a message that names the item and the fix.
USER_ERRORS: tuple[type[Exception], ...] = (UserInputError, DatalistError, ChestXRayReadError)


def error_chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what caused it (``raise ... from``), then what it interrupted, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def _user_error_names() -> list[str]:
    names, pending = [], list(USER_ERRORS)
    while pending:
        cls = pending.pop()
        names.append(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names


def user_error_message(error: BaseException) -> str | None:
    """``"<Type>: <message>"`` of the user error behind ``error`` (see ``USER_ERRORS``), or None.

    Also finds one that a DataLoader worker raised: torch re-raises it (as its type, or as a
    ``RuntimeError`` when the type needs other arguments) with the worker's whole traceback as
    the message, ``"Caught ... in DataLoader worker process 0. Original Traceback ..."``.
    """
    names = "|".join(_user_error_names())
    for cause in error_chain(error):
        text = str(cause)
        if text.startswith("Caught ") and "Original Traceback" in text:
            # the formatted chain lists the outermost error last; a message ends where the next error starts
            found = list(re.finditer(rf"^(?:[\w.]+\.)?({names}): (.*?)(?=\n\n(?:The above|During handling)|\Z)",
                                     text, flags=re.MULTILINE | re.DOTALL))
            if found:
                return f"{found[-1].group(1)}: {found[-1].group(2).rstrip()}"
        elif isinstance(cause, USER_ERRORS):
            return f"{type(cause).__name__}: {text}"
    return None


def root_cause(error: BaseException) -> BaseException:
    """The innermost error of the ``raise ... from`` chain: what went wrong, below every wrapper."""
    *_, last = error_chain(error)
    return last


def explain_errors() -> None:
    """Make an uncaught error end the output with its cause (idempotent; call it first in ``initialize``).

    A user error (``USER_ERRORS``) prints only ``<Type>: <message>`` and exits with code 1: the
    message names the item and the fix, and the traceback of a user's mistake is noise (it is
    logged at DEBUG level).
    Any other error prints its full traceback as before, followed by the innermost cause when a
    wrapper (``Failed to evaluate ConfigExpression`` ...) hides it.
    """
    if getattr(sys.excepthook, "explains_errors", False):
        return
    sys.excepthook = _explaining_hook(sys.excepthook)


def _explaining_hook(previous: Callable) -> Callable:
    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        message = user_error_message(error)
        if message is not None:
            LOGGER.debug("traceback of the error that ends this run", exc_info=(kind, error, trace))
            print(f"\n{message}", file=sys.stderr)
            # Skip the interpreter's teardown: MONAI's CacheDataset terminates its thread pool without
            # joining it, and a worker still freeing a tensor while Python finalizes aborts the process
            # ("terminate called without an active exception", exit code 134) below this message.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        previous(kind, error, trace)
        cause = root_cause(error)
        if cause is not error:
            print(f"\nThe cause: {type(cause).__name__}: {cause}", file=sys.stderr)

    hook.explains_errors = True  # type: ignore[attr-defined]
    return hook
