"""Atomic writes: every file is written under a temporary name, then renamed,
so that an interrupted job never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .errors import UserError

TABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".parquet")


def _usual_mode(path: str, mode: int) -> None:
    """mkstemp and mkdtemp make 0600 and 0700; give outputs the permissions open() and mkdir() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    _usual_mode(tmp, 0o666)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path``.

    A previous folder at ``path`` stays whole until the new one is complete: it is renamed
    aside (``.<name>.old-*``), the new folder is renamed into place, then the old one is
    removed. An interruption leaves the old folder at ``path``, or (between the two renames)
    nothing at ``path`` and the old folder beside it, never a partial folder at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    _usual_mode(tmp, 0o777)
    try:
        yield Path(tmp)
        if path.exists():
            old = tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent)
            os.replace(path, old)  # a directory replaces the empty one just made
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


class TableFormatError(UserError, ValueError):
    """An output table whose extension names no format we write."""


def check_table_path(path: str | os.PathLike) -> str:
    """The table format of ``path`` by its extension; raise :class:`TableFormatError` for an unknown one."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise TableFormatError(f"{path}: unknown table format {suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}")
    return suffix


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table atomically, as CSV, JSON lines (.jsonl) or parquet (.parquet) by extension."""
    suffix = check_table_path(path)
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            table.to_parquet(tmp, index=False)
        elif suffix in (".jsonl", ".ndjson"):
            table.to_json(tmp, orient="records", lines=True)
        else:
            table.to_csv(tmp, index=False, float_format="%.6g")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`write_table`."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, orient="records", lines=True)
    return pd.read_csv(path)
