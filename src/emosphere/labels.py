"""MSP-Podcast label tables: read, check, filter and annotate with the sphere.

A corpus is a folder with ``Audios/`` (one audio file per utterance) and
``Labels/labels_consensus.csv`` with the columns of :data:`CONSENSUS_COLUMNS`.
:func:`prepare_labels` turns it into the table training and evaluation read:
one row per usable utterance, with the audio path, its duration, the targets
on [0, 1], the spherical coordinates and the region.

:func:`scan_consensus` reads a label table and lists every problem in it (a
:data:`PROBLEM_COLUMNS` table, with line numbers of the file) instead of
stopping at the first; :func:`read_consensus` raises when there is any.
:func:`read_headers` reads audio headers (not the audio), streaming, for the
durations and for :mod:`emosphere.check`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from .audio import DECODE_ERRORS, plausible_rate
from .errors import UserError
from .sphere import DIMENSIONS, SCALE_MAX, SCALE_MIN, RegionSet, centre, to_spherical, to_unit

if TYPE_CHECKING:
    from .config import DataConfig

log = logging.getLogger(__name__)

CONSENSUS_COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
LABEL_COLUMNS = ("EmoAct", "EmoVal", "EmoDom")
"""The 1-7 label columns, in the order of :data:`emosphere.sphere.DIMENSIONS`."""
PRIMARY_CLASSES = frozenset("ASHUFDCN")
"""EmoClass values the paper recipe keeps; O (other) and X (no agreement) are dropped."""
EMOTION_CLASSES = PRIMARY_CLASSES | {"O", "X"}
UNLABELLED_SPLITS = ("Test3",)
"""Splits whose rows carry no labels (MSP-Podcast's Test3 is scored by the challenge)."""
PROBLEM_COLUMNS = ("severity", "problem", "file", "line", "detail")
"""A problem table: ``severity`` error (blocks training) or warning, ``problem`` (what is wrong, the same
text for every row it concerns), ``file`` and ``line`` (1-based line of the label file; empty for files
on disk), ``detail`` (the value at fault)."""
HEADER_COLUMNS = ("sample_rate", "channels", "frames", "duration", "error")
FILE_NOT_FOUND = "file not found"
"""The ``error`` of :func:`read_headers` for a file that does not exist."""


class LabelError(UserError, ValueError):
    """A label table that cannot be used; the message names the file and row."""


@dataclass(frozen=True)
class Corpus:
    """Where a corpus lives. ``labels`` and ``audio_dir`` default to the MSP-Podcast layout."""

    root: Path
    labels: Path
    audio_dir: Path

    @classmethod
    def at(
        cls,
        root: str | os.PathLike,
        labels: str | os.PathLike | None = None,
        audio_dir: str | os.PathLike | None = None,
    ) -> Corpus:
        """The corpus at ``root`` (``labels`` and ``audio_dir`` default to its MSP-Podcast layout), its
        paths absolute, so that the tables made from it read the same from any working directory."""
        root = Path(os.path.abspath(os.path.expanduser(root)))
        return cls(
            root=root,
            labels=Path(os.path.abspath(labels)) if labels else root / "Labels" / "labels_consensus.csv",
            audio_dir=Path(os.path.abspath(audio_dir)) if audio_dir else root / "Audios",
        )

    @classmethod
    def from_config(cls, data: DataConfig) -> Corpus:
        """The corpus a run's ``data`` section names."""
        return cls.at(data.corpus or ".", data.labels, data.audio_dir)


def _line(index: pd.Index) -> np.ndarray:
    return np.asarray(index, dtype=np.int64) + 2  # header line, 1-based


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


def scan_consensus(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a ``labels_consensus.csv`` and list every problem in its rows.

    Returns the table (labels as numbers, the file's row order and index: line = index + 2)
    and a :data:`PROBLEM_COLUMNS` table. Errors: a label that is missing, not a number or
    outside [1, 7] (except in :data:`UNLABELLED_SPLITS`), a missing or repeated ``FileName``,
    a missing ``Split_Set``. Warnings: an ``EmoClass`` outside A S H U F D C N O X. A file
    that is missing, unreadable or lacks columns raises :class:`LabelError`.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label file not found")
    try:
        table = pd.read_csv(path, dtype={"FileName": str, "EmoClass": str, "Split_Set": str, "Gender": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise LabelError(f"{path}: not a readable CSV table ({str(error).strip().splitlines()[0]})") from None
    missing = [c for c in CONSENSUS_COLUMNS if c not in table.columns]
    if missing:
        raise LabelError(f"{path}: missing columns {missing}; expected {list(CONSENSUS_COLUMNS)}")
    found = []
    labelled = ~table["Split_Set"].astype(str).isin(UNLABELLED_SPLITS)
    for column in LABEL_COLUMNS:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = labelled & (values.isna() | (values < SCALE_MIN) | (values > SCALE_MAX))
        found.append(
            problems_table(
                "error",
                f"{column} must be a number in [1, 7]",
                path,
                _line(table.index[bad]),
                table.loc[bad, column].tolist(),
            )
        )
        table[column] = values
    for column in ("FileName", "Split_Set"):
        empty = table[column].isna() | (table[column].astype(str).str.strip() == "")
        found.append(
            problems_table("error", f"{column} is empty", path, _line(table.index[empty]), [""] * int(empty.sum()))
        )
    repeated = table["FileName"].notna() & table["FileName"].duplicated(keep=False)
    found.append(
        problems_table(
            "error", "FileName repeated", path, _line(table.index[repeated]), table.loc[repeated, "FileName"].tolist()
        )
    )
    odd = ~table["EmoClass"].isin(EMOTION_CLASSES)
    found.append(
        problems_table(
            "warning",
            f"EmoClass not one of {' '.join(sorted(EMOTION_CLASSES))}",
            path,
            _line(table.index[odd]),
            table.loc[odd, "EmoClass"].tolist(),
        )
    )
    return table, pd.concat(found, ignore_index=True)


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


def read_consensus(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``labels_consensus.csv``; raise :class:`LabelError` naming the file and rows at fault
    (see :func:`scan_consensus`; warnings are logged)."""
    table, problems = scan_consensus(path)
    errors = problems[problems["severity"] == "error"]
    for line in summarise_problems(problems[problems["severity"] == "warning"]):
        log.warning("%s", line)
    if len(errors):
        first = errors[errors["problem"] == errors["problem"].iloc[0]]
        rest = len(errors) - len(first)
        raise LabelError(
            f"{path}: {first['problem'].iloc[0]}; bad value on line(s) {first['line'].head(10).astype(int).tolist()}"
            + (f" and {len(first) - 10} more" if len(first) > 10 else "")
            + (f"; {rest} other problem(s): `emosphere check` lists them all" if rest else "")
        )
    return table


def annotate(table: pd.DataFrame, regions: RegionSet) -> pd.DataFrame:
    """Add targets on [0, 1] (``arousal``, ``valence``, ``dominance``), ``r``, ``theta``,
    ``phi`` (radians) and ``region`` / ``region_name`` from the 1-7 label columns."""
    avd = table[list(LABEL_COLUMNS)].to_numpy(dtype=np.float64)
    out = table.copy()
    out[list(DIMENSIONS)] = to_unit(avd)
    out[["r", "theta", "phi"]] = to_spherical(centre(avd))
    out["region"] = regions.assign(avd)
    out["region_name"] = np.asarray(regions.class_names)[out["region"].to_numpy()]
    return out


def _header(path: str, decode: bool) -> tuple:
    """(sample_rate, channels, frames, duration, error) of one file; ``decode`` reads every sample."""
    try:
        with sf.SoundFile(path) as f:
            rate, channels, frames = f.samplerate, f.channels, f.frames
            if not plausible_rate(rate):
                return rate, channels, frames, np.nan, f"implausible sample rate {rate} Hz"
            if decode:
                frames = 0
                for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                    if not np.isfinite(block).all():
                        return rate, channels, frames, frames / rate, "audio contains NaN or infinite samples"
                    frames += len(block)
    except DECODE_ERRORS as error:
        message = FILE_NOT_FOUND if not os.path.exists(path) else f"cannot read audio ({error})"
        return 0, 0, 0, np.nan, message
    return rate, channels, frames, frames / rate if rate else np.nan, None


def read_headers(
    paths: Sequence[str | os.PathLike], *, decode: bool = False, workers: int = 8, progress: bool = True
) -> pd.DataFrame:
    """:data:`HEADER_COLUMNS` of each file, in order: from its header (no decoding), or with ``decode``
    from reading every sample (slow: finds truncated or corrupt data and NaN/infinite samples).
    ``error`` says why a file cannot be used (None if it can). Files are read by ``workers``
    threads in chunks, so memory does not grow with the corpus beyond the result."""

    def chunks() -> Iterator[list[str]]:
        for start in range(0, len(paths), 4096):
            yield [str(p) for p in paths[start : start + 4096]]

    rows: list[tuple] = []
    with (
        ThreadPoolExecutor(max(1, workers)) as pool,
        tqdm(
            total=len(paths),
            desc="decoding audio" if decode else "reading audio headers",
            disable=not progress,
            unit="file",
        ) as bar,
    ):
        for chunk in chunks():
            rows += pool.map(_header, chunk, [decode] * len(chunk))
            bar.update(len(chunk))
    return pd.DataFrame(rows, columns=list(HEADER_COLUMNS))


def usable_rows(table: pd.DataFrame, *, keep_other: bool = False, splits: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows with labels (not :data:`UNLABELLED_SPLITS`), EmoClass A S H U F D C N unless ``keep_other``,
    in ``splits`` (all when None); the index is kept."""
    keep = table[list(LABEL_COLUMNS)].notna().all(axis=1) & ~table["Split_Set"].isin(UNLABELLED_SPLITS)
    if not keep_other:
        keep &= table["EmoClass"].isin(PRIMARY_CLASSES)
    if splits is not None:
        keep &= table["Split_Set"].isin(list(splits))
    return table[keep]


def with_audio(table: pd.DataFrame, audio_dir: Path, headers: pd.DataFrame) -> pd.DataFrame:
    """Add ``path`` and ``duration`` (seconds) from :func:`read_headers` of the rows' files."""
    out = table.copy()
    out["path"] = [str(audio_dir / name) for name in table["FileName"]]
    out["duration"] = headers["duration"].to_numpy()
    return out


def prepare_labels(
    corpus: Corpus, regions: RegionSet, *, keep_other: bool = False, progress: bool = True
) -> pd.DataFrame:
    """The table that training and evaluation read.

    Keeps rows with labels (Test3 has none), drops EmoClass O and X unless
    ``keep_other``, resolves each ``FileName`` under the audio folder and
    reads its duration from the header. Rows whose audio is missing or
    unreadable are dropped with a warning that names them (training checks the
    corpus first and stops instead: :mod:`emosphere.check`).
    """
    table = usable_rows(read_consensus(corpus.labels), keep_other=keep_other).reset_index(drop=True)
    headers = read_headers([corpus.audio_dir / name for name in table["FileName"]], progress=progress)
    table = with_audio(annotate(table, regions), corpus.audio_dir, headers)
    bad = headers["error"].notna().to_numpy()
    if bad.any():
        problems = [f"{path}: {error}" for path, error in zip(table["path"][bad], headers["error"][bad])]
        log.warning(
            "dropped %d row(s) whose audio cannot be read, e.g.\n  %s", len(problems), "\n  ".join(problems[:10])
        )
        table = table[~bad].reset_index(drop=True)
    if table.empty:
        raise LabelError(f"{corpus.labels}: no usable labelled rows with audio under {corpus.audio_dir}")
    return table


def split(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """Rows of one ``Split_Set``; raise naming the splits present if there are none."""
    rows = table[table["Split_Set"] == name].reset_index(drop=True)
    if rows.empty:
        raise LabelError(f"split {name!r} is empty; splits present: {sorted(table['Split_Set'].unique())}")
    return rows


def counts(table: pd.DataFrame, regions: RegionSet) -> pd.DataFrame:
    """Utterances per region (rows, by class name) and split (columns), with totals."""
    grid = pd.crosstab(
        pd.Categorical(table["region_name"], categories=regions.class_names),
        table["Split_Set"],
        margins=True,
        margins_name="total",
        dropna=False,
    )
    grid.index.name = "region"
    return grid
