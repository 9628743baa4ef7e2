"""Boolean switches given on the command line."""

from __future__ import annotations

from .errors import UserInputError

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", "none", ""}


def flag(value: object, key: str | None = None) -> bool:
    """Read an on/off config value that may arrive as a string; ``key`` names it in the error.

    ``python -m monai.bundle run ... --track_mlflow false`` passes the string ``"false"`` (fire
    only turns ``False`` into a bool), and ``not "false"`` is False: without this, lower-case
    switches would silently do the opposite of what they say.
    """
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    fix = f"pass --{key} true or --{key} false" if key else "use true/false"
    raise UserInputError(f"{key or 'a switch'} must be an on/off value, got {value!r}. Fix: {fix} (or 1/0, yes/no)")
