"""The generic manifest: one table (CSV or parquet) that lists a corpus in any layout.

Columns (docs/corpora.md):

``path``
    The audio file; a relative path starts from the manifest's folder (or the
    ``audio_dir`` given with it: ``data.audio_dir``, ``--audio-dir``).
``arousal``, ``valence``, ``dominance``
    The labels, numbers on the corpus's rating scale.
``split``
    The split of the row (``Train``, ``Development``, ``Test``, ...: any names).

Optional: ``name`` (the utterance in outputs, ``FileName``; default: ``path``
as written; unique), ``speaker``, ``gender``, ``emotion`` (the corpus's own
category, free text), ``scale_min`` and ``scale_max`` (the rating scale, the
same on every row; without them it is declared where the manifest is named:
``data.scale``, ``--scale``). Other columns are carried along.

:func:`scan_manifest` reads a manifest into the table that the MSP-Podcast
reader makes (:func:`emosphere.labels.scan_consensus`): the MSP-Podcast
columns (:data:`TO_CONSENSUS`) with A/V/D mapped onto 1-7, plus the resolved
``path``, ``scale_min`` and ``scale_max`` and the other columns, in the
manifest's row order (line = index + 2), and a problem table with every bad
row. :func:`write_manifest` writes one (the converters of
:mod:`emosphere.corpora` do).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .io import TABLE_SUFFIXES, TableFormatError, read_table, write_table
from .problems import (
    LabelError,
    empty_problems,
    no_problems,
    number_problems,
    problems_table,
    repeated_problems,
    table_lines,
)
from .sphere import DIMENSIONS, Scale

MANIFEST_COLUMNS = ("path", *DIMENSIONS, "split")
"""The columns every manifest has."""
OPTIONAL_COLUMNS = ("name", "speaker", "gender", "emotion", "scale_min", "scale_max")
SCALE_COLUMNS = ("scale_min", "scale_max")
TO_CONSENSUS = {
    "name": "FileName",
    "emotion": "EmoClass",
    "arousal": "EmoAct",
    "valence": "EmoVal",
    "dominance": "EmoDom",
    "speaker": "SpkrID",
    "gender": "Gender",
    "split": "Split_Set",
}
"""Manifest column -> the MSP-Podcast column it becomes (in MSP-Podcast's column order)."""
TEXT_COLUMNS = ("path", "name", "split", "emotion", "gender")


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """The manifest table as written (text columns as text; ``speaker`` as pandas reads it, so that
    numeric speaker IDs stay numbers as in MSP-Podcast's table); :class:`LabelError` if it cannot be
    read or lacks a column of :data:`MANIFEST_COLUMNS`."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise LabelError(f"{path}: a manifest is a table: {', '.join(TABLE_SUFFIXES)}")
    if not path.is_file():
        raise LabelError(f"{path}: manifest not found")
    try:
        table = read_table(path, text=TEXT_COLUMNS)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LabelError(f"{path}: not a readable manifest ({message})") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in table.columns]
    if missing:
        raise LabelError(
            f"{path}: missing columns {missing}; a manifest has {list(MANIFEST_COLUMNS)} "
            f"and optionally {list(OPTIONAL_COLUMNS)} (docs/corpora.md)"
        )
    return table


def manifest_scale(table: pd.DataFrame, path: str | os.PathLike, declared: Scale | None) -> tuple[Scale, pd.DataFrame]:
    """The manifest's rating scale, from ``declared`` (``data.scale``, ``--scale``) or its
    ``scale_min``/``scale_max`` columns, and the rows whose columns disagree with it (problems).
    :class:`LabelError` when neither says it."""
    present = [c for c in SCALE_COLUMNS if c in table]
    if not present:
        if declared is None:
            raise LabelError(
                f"{path}: no rating scale: the manifest has no scale_min and scale_max columns; declare it "
                "(data.scale: [1, 5], or --scale 1 5)"
            )
        return declared, no_problems()
    if len(present) == 1:
        raise LabelError(f"{path}: {present[0]} without its pair; give both scale_min and scale_max, or neither")
    low, high = (pd.to_numeric(table[c], errors="coerce") for c in SCALE_COLUMNS)
    if declared is None:
        try:
            declared = Scale(float(low.iloc[0]), float(high.iloc[0]))
        except (ValueError, IndexError):
            raise LabelError(
                f"{path}: line 2: scale_min, scale_max ({low.iloc[0]}, {high.iloc[0]}) is no scale"
            ) from None
        what = f"differ from the first row's {declared.interval}"
    else:
        what = f"differ from the declared scale {declared.interval} (data.scale, --scale)"
    bad = (low != declared.low) | (high != declared.high)
    details = [f"{a}, {b}" for a, b in zip(table.loc[bad, "scale_min"], table.loc[bad, "scale_max"])]
    return declared, problems_table(
        "error", f"scale_min, scale_max {what}: one scale per manifest", path, table_lines(table.index[bad]), details
    )


def scan_manifest(
    path: str | os.PathLike, *, audio_dir: str | os.PathLike | None = None, scale: Scale | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a manifest and list every problem in its rows (see the module docstring).

    Errors: a label that is missing, not a number or off the scale; an empty ``path``, ``name`` or
    ``split``; a repeated ``name`` (``path`` without names); scale columns that differ between rows
    or from ``scale``. :class:`LabelError` for an unreadable file, a missing column or no scale.
    """
    path = Path(path)
    table = read_manifest(path)
    scale, scale_problems = manifest_scale(table, path, scale)
    found = [scale_problems]
    for column in DIMENSIONS:
        values, problems = number_problems(table, column, scale, path)
        table[column] = scale.to_model(values)
        found.append(problems)
    key = "name" if "name" in table else "path"
    found += [empty_problems(table, column, path) for column in dict.fromkeys(("path", key, "split"))]
    found.append(repeated_problems(table, key, path))
    base = Path(audio_dir) if audio_dir else path.parent
    out = pd.DataFrame(index=table.index)
    for column, consensus in TO_CONSENSUS.items():
        source = table[key] if column == "name" else table.get(column)
        out[consensus] = source if source is not None else pd.NA
    out["path"] = [str(base / p) if isinstance(p, str) and p.strip() else "" for p in table["path"]]
    out["scale_min"], out["scale_max"] = scale.low, scale.high
    extra = [c for c in table.columns if c not in (*MANIFEST_COLUMNS, *OPTIONAL_COLUMNS) and c not in out]
    return pd.concat([out, table[extra]], axis=1), pd.concat(found, ignore_index=True)


def write_manifest(manifest: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a manifest atomically (CSV or parquet by extension); numbers in CSV keep every digit."""
    if Path(path).suffix.lower() not in TABLE_SUFFIXES:
        raise TableFormatError(f"{path}: a manifest is a table: {', '.join(TABLE_SUFFIXES)}")
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest]
    if missing:
        raise ValueError(f"not a manifest: no columns {missing}")
    exact = [c for c in manifest.columns if pd.api.types.is_float_dtype(manifest[c])]
    write_table(manifest, path, exact=exact)
