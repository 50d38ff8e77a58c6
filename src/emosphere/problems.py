"""Problem tables: every problem of a label table at once, with the file and line of each.

A problem table has the columns of :data:`PROBLEM_COLUMNS`, one row per problem. The readers of
label tables (:mod:`emosphere.labels`, :mod:`emosphere.manifest`) and the converters of published
corpus layouts (:mod:`emosphere.corpora`) fill one instead of stopping at the first problem;
:func:`summarise_problems` turns it into one line per kind of problem, and :func:`raise_first`
raises :class:`LabelError` naming the file and the lines of the first kind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import UserError
from .sphere import Scale

PROBLEM_COLUMNS = ("severity", "problem", "file", "line", "detail")
"""A problem table: ``severity`` error (blocks training) or warning, ``problem`` (what is wrong, the same
text for every row it concerns), ``file`` and ``line`` (1-based line of the label file; empty for files
on disk), ``detail`` (the value at fault)."""


class LabelError(UserError, ValueError):
    """A label table that cannot be used; the message names the file and row."""


def table_lines(index: pd.Index) -> np.ndarray:
    """Lines of a table's rows, from its default index: the header is line 1 (for a parquet table,
    the line the row would have in the table's CSV form)."""
    return np.asarray(index, dtype=np.int64) + 2


def problems_table(
    severity: str,
    problem: str,
    file: str | os.PathLike | Sequence[str],
    lines: Sequence[int] | np.ndarray,
    details: Sequence[object],
) -> pd.DataFrame:
    """Rows of a :data:`PROBLEM_COLUMNS` table, one per detail: at ``lines`` of the label ``file``,
    or (``lines`` empty) about the ``file`` or each of the files."""
    details = list(details)
    lines = list(lines) if len(lines) else [pd.NA] * len(details)
    file = str(file) if isinstance(file, (str, os.PathLike)) else [str(f) for f in file]
    return pd.DataFrame(
        {
            "severity": severity,
            "problem": problem,
            "file": file,
            "line": pd.array(lines, dtype="Int64"),
            "detail": [str(d) for d in details],
        },
        columns=list(PROBLEM_COLUMNS),
    )


def number_problems(
    table: pd.DataFrame, column: str, scale: Scale, path: str | os.PathLike, rows: pd.Series | None = None
) -> tuple[pd.Series, pd.DataFrame]:
    """The ``column`` as numbers, and an error at each line (among ``rows``, default all) whose value is
    missing, not a number or off ``scale``."""
    values = pd.to_numeric(table[column], errors="coerce")
    bad = ~scale.contains(values) if rows is None else rows & ~scale.contains(values)
    message = f"{column} must be a number in {scale.interval}"
    return values, problems_table(
        "error", message, path, table_lines(table.index[bad]), table.loc[bad, column].tolist()
    )


def empty_problems(table: pd.DataFrame, column: str, path: str | os.PathLike) -> pd.DataFrame:
    """An error at each line whose ``column`` is empty."""
    empty = table[column].isna() | (table[column].astype(str).str.strip() == "")
    return problems_table("error", f"{column} is empty", path, table_lines(table.index[empty]), [""] * int(empty.sum()))


def repeated_problems(table: pd.DataFrame, column: str, path: str | os.PathLike) -> pd.DataFrame:
    """An error at each line whose ``column`` another line repeats."""
    repeated = table[column].notna() & table[column].duplicated(keep=False)
    lines, values = table_lines(table.index[repeated]), table.loc[repeated, column].tolist()
    return problems_table("error", f"{column} repeated", path, lines, values)


def no_problems() -> pd.DataFrame:
    """An empty :data:`PROBLEM_COLUMNS` table, with the columns' types."""
    return problems_table("error", "", "", [], [])


def summarise_problems(problems: pd.DataFrame, limit: int = 10) -> list[str]:
    """One line per kind of problem: what, how many, and the first ``limit`` places."""
    out = []
    for problem, rows in problems.groupby("problem", sort=False):
        places = [
            (f"line {line}" if pd.notna(line) else file) + (f" ({detail})" if detail else "")
            for file, line, detail in rows[["file", "line", "detail"]].head(limit).itertuples(index=False)
        ]
        more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
        source = f" in {rows['file'].iloc[0]}" if rows["line"].notna().any() else ""
        out.append(f"{problem}{source} ({len(rows)}): {', '.join(places)}{more}")
    return out


def raise_first(path: str | os.PathLike, problems: pd.DataFrame, hint: str) -> None:
    """Raise :class:`LabelError` if ``problems`` has errors: the file, the first kind of error and its
    first lines (``path`` is the file named when the problems lie in several), then ``hint``
    (where to see them all)."""
    errors = problems[problems["severity"] == "error"]
    if not len(errors):
        return
    first = errors[errors["problem"] == errors["problem"].iloc[0]]
    files = first["file"].unique()
    where = files[0] if len(files) == 1 else path
    rest = len(errors) - len(first)
    lines = first["line"].dropna()
    places = (
        f"bad value on line(s) {lines.head(10).astype(int).tolist()}"
        + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")
        if len(lines)
        else ", ".join(detail or file for file, detail in first[["file", "detail"]].head(3).itertuples(index=False))
    )
    raise LabelError(
        f"{where}: {first['problem'].iloc[0]}; {places}" + (f"; {rest} other problem(s): {hint}" if rest else "")
    )
