"""The one exception type that the command line reports as a plain one-line error."""

import difflib


class UserError(Exception):
    """A problem with the user's input or environment, with what to do about it.

    The CLI prints ``ernie-cpt: error: <message>`` and exits with code 2 (no traceback
    unless ``--debug``). Raise it with a message that names the problem and the fix.
    """


class ConfigError(UserError, ValueError):
    """An option with a wrong value: its type, its choices, its range, a name no registry knows, or
    a combination of options that cannot work. The message names the option, the value given and
    what is allowed. A :class:`UserError` to the CLI (one line, exit 2) and a ``ValueError`` to Python
    callers (``ernie_cpt.PretrainConfig(lr_schedule="wholee")`` raises it)."""


def unknown_name(kind: str, name: str, known: list[str]) -> ConfigError:
    """The error for a name that is not registered, suggesting the closest known one."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return ConfigError(f"unknown {kind} '{name}'; {hint}available: {', '.join(sorted(known))}")
