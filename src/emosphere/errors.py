"""The line between a user's mistake and a bug.

:class:`UserError` is the base of every error that a user can fix by changing
what they typed or pointed at: a config key or value, a missing or broken
file, a label table with bad rows. Its message is one line that names the key,
file or row and, where there is a choice, the allowed values. The ``emosphere``
command prints it and exits with code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input; the message says what and where, on one line."""


class ModelError(UserError, ValueError):
    """A model directory or file that cannot be loaded or written; the message names the file."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first non-empty line of a third-party error's message (with the next one when it ends with
    a colon, as a heading does), cut to ``limit`` characters (they can be long: transformers lists every
    model type it knows)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    line = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def missing_extra(what: str, package: str, extra: str, error: BaseException | None = None) -> UserError:
    """The one-line :class:`UserError` for an optional dependency that is not installed: ``what``
    needs ``package``, installed by ``pip install 'emosphere[extra]'``."""
    cause = f" ({first_line(error)})" if error is not None else ""
    return UserError(f"{what} needs {package}: pip install 'emosphere[{extra}]'{cause}")
