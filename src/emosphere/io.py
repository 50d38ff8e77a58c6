"""Atomic writes: every file is written under a temporary name, then renamed,
so that an interrupted job never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import UserError

TABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".parquet")
"""The table formats emosphere reads and writes (outputs, manifests, label tables), by extension."""


def _usual_mode(path: str, mode: int) -> None:
    """mkstemp and mkdtemp make 0600 and 0700; give outputs the permissions open() and mkdir() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success flush it to disk and rename it to ``path``
    (so that a crash leaves the previous file or the new one, never an empty one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    _usual_mode(tmp, 0o666)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
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


@contextlib.contextmanager
def table_writer(path: str | os.PathLike, *, exact: Sequence[str] = ()) -> Iterator[Callable[[pd.DataFrame], None]]:
    """Write one table piece by piece, atomically: yields ``write(piece)``, which appends rows; the
    file appears, complete, when the block ends without an error. CSV, JSON lines (.jsonl, UTF-8:
    :func:`json_lines`) or parquet (.parquet) by extension. CSV floats keep 6 significant digits, except the ``exact``
    columns (the shortest decimal that reads back as the same number). Write at least one piece,
    empty if need be, so that the table has its columns."""
    suffix = check_table_path(path)
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            state: dict[str, Any] = {"writer": None, "empty": None}

            def write(piece: pd.DataFrame) -> None:
                if piece.empty and state["writer"] is None:  # an empty first piece would fix null column types
                    state["empty"] = piece
                    return
                table = pa.Table.from_pandas(
                    piece, preserve_index=False, schema=state["writer"].schema if state["writer"] else None
                )
                if state["writer"] is None:
                    state["writer"] = pq.ParquetWriter(tmp, table.schema)
                state["writer"].write_table(table)

            try:
                yield write
            finally:
                if state["writer"] is None and state["empty"] is not None:
                    state["empty"].to_parquet(tmp, index=False)
                elif state["writer"] is not None:
                    state["writer"].close()
            return
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            header = [True]

            def write(piece: pd.DataFrame) -> None:
                if suffix in (".jsonl", ".ndjson"):
                    if not piece.empty:
                        handle.write(json_lines(piece))
                    return
                columns = {
                    c: [np.format_float_positional(v, trim="-") for v in piece[c].to_numpy(np.float64)]
                    for c in exact
                    if c in piece
                }
                piece.assign(**columns).to_csv(handle, index=False, header=header[0], float_format="%.6g")
                header[0] = False

            yield write


def json_lines(table: pd.DataFrame) -> str:
    """The rows of ``table`` as JSON lines, text as UTF-8 and slashes as they are (pandas writes ``\\/``;
    it escapes every slash, so each ``\\/`` it writes is one)."""
    text = table.to_json(orient="records", lines=True, force_ascii=False, double_precision=15)
    return text.replace("\\/", "/").rstrip("\n") + "\n"


def write_table(table: pd.DataFrame, path: str | os.PathLike, *, exact: Sequence[str] = ()) -> None:
    """Write a table atomically, as CSV, JSON lines (.jsonl) or parquet (.parquet) by extension
    (``exact``: see :func:`table_writer`)."""
    with table_writer(path, exact=exact) as write:
        write(table)


def read_table(path: str | os.PathLike, *, text: Sequence[str] = ()) -> pd.DataFrame:
    """Read a table written by :func:`write_table` (the ``text`` columns as strings)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        table = pd.read_parquet(path)
        return table.astype({c: str for c in text if c in table})
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, orient="records", lines=True, dtype=dict.fromkeys(text, str))
    return pd.read_csv(path, dtype=dict.fromkeys(text, str))


def table_columns(path: str | os.PathLike) -> list[str]:
    """The column names of a table, without reading its rows (a JSON lines file: those of its first row)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    first = next(iter_table(path, rows=1), None)
    return [] if first is None else list(first.columns)


def iter_table(
    path: str | os.PathLike,
    *,
    rows: int = 10_000,
    columns: Sequence[str] | None = None,
    text: Sequence[str] = (),
    raw: bool = False,
) -> Iterator[pd.DataFrame]:
    """Read a table written by :func:`write_table` ``rows`` rows at a time (only ``columns``, if
    given; the ``text`` columns as strings; with ``raw``, every CSV value as the text written, a
    blank one as ``""``)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns):
            chunk = batch.to_pandas()
            yield chunk.astype({c: str for c in text if c in chunk})
        return
    if suffix in (".jsonl", ".ndjson"):
        with pd.read_json(path, orient="records", lines=True, chunksize=rows, dtype=dict.fromkeys(text, str)) as chunks:
            for chunk in chunks:
                yield chunk if columns is None else chunk[list(columns)]
        return
    if raw:
        yield from pd.read_csv(path, chunksize=rows, usecols=columns, dtype=str, keep_default_na=False)
        return
    yield from pd.read_csv(path, chunksize=rows, usecols=columns, dtype=dict.fromkeys(text, str))
