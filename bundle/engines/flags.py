"""Boolean switches given on the command line."""

from __future__ import annotations

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", "none", ""}


def flag(value: object) -> bool:
    """Read an on/off config value that may arrive as a string.

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
    raise ValueError(f"expected an on/off value (true/false, 1/0, yes/no), got {value!r}")
