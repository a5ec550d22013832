"""The one exception type that the command line reports as a plain one-line error."""

import difflib


class UserError(Exception):
    """A problem with the user's input or environment, with what to do about it.

    The CLI prints ``ernie-cpt: error: <message>`` and exits with code 2 (no traceback
    unless ``--debug``). Raise it with a message that names the problem and the fix.
    """


def unknown_name(kind: str, name: str, known: list[str]) -> UserError:
    """The error for a name that is not registered, suggesting the closest known one."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return UserError(f"unknown {kind} '{name}'; {hint}available: {', '.join(sorted(known))}")
