"""How a file is named in tables and messages, and when two names are the same file.

A POSIX file name is any bytes but ``/`` and NUL: it may be invalid UTF-8,
hold a newline, or be long. Python hands such bytes over as lone surrogates
(``os.fsdecode``), which no UTF-8 table or terminal accepts. :func:`readable`
writes every name on one line of printable text, the same way wherever a
name is shown (the ``file`` column of every table, the errors table, log
lines, the service's answers), and no two names alike:

* an undecodable byte is ``\\xNN`` (NN from 80 to ff);
* a newline, carriage return or tab is ``\\n``, ``\\r``, ``\\t``; any other
  character that does not print is ``\\xNN`` (below 80) or ``\\uNNNN``;
* where a backslash is not the path separator (POSIX), it is doubled, so that
  the escapes above never meet a name that holds them as text.

A name that needs none of this (almost every name) is written as it is.

:func:`normalise` tidies a path as given (``./a/../b.wav`` is ``b.wav``;
relative stays relative) and :func:`identity` is what makes two names one
file when a run drops duplicates: the normalised absolute path, so that
``./real/../real/001.wav``, ``real/001.wav`` and ``../trial/real/001.wav``
(from ``trial``) are one source. Both are lexical: links are not followed.
"""

from __future__ import annotations

import os

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BACKSLASH = "\\\\" if os.sep == "/" else "\\"
_RAW_BYTES = range(0xDC80, 0xDD00)
"""The lone surrogates by which ``os.fsdecode`` carries the bytes that are not UTF-8."""


def _escape(character: str) -> str:
    code = ord(character)
    if character == "\\":
        return _BACKSLASH
    if character in _NAMED:
        return _NAMED[character]
    if code in _RAW_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    if character.isprintable():
        return character
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def readable(name: str | bytes | os.PathLike) -> str:
    """``name`` as one line of printable text, escaped as the module docstring says."""
    text = os.fsdecode(name)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(map(_escape, text))


def one_line(message: str) -> str:
    """A message (e.g. a third-party error's) as one line of text that any table can hold: its lines
    joined by spaces, undecodable bytes and other characters that do not print escaped."""
    return " ".join("".join(c if c.isprintable() else _escape(c) for c in line) for line in message.splitlines())


def normalise(path: str) -> str:
    """``path`` without ``.`` and ``..`` steps or repeated separators; relative stays relative."""
    return os.path.normpath(path)


def identity(path: str) -> str:
    """What makes two paths one file for de-duplication: the normalised absolute path."""
    return os.path.abspath(path)
