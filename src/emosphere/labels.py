"""Label tables: read, check, filter and annotate with the sphere.

A corpus is a folder in the MSP-Podcast layout, ``Audios/`` (one audio file per
utterance) and ``Labels/labels_consensus.csv`` with the columns of
:data:`CONSENSUS_COLUMNS`, or a manifest (:mod:`emosphere.manifest`: a CSV or
parquet table that lists a corpus in any layout); :class:`Corpus` says which,
and the rating scale of its labels (:class:`emosphere.sphere.Scale`; 1-7 for
MSP-Podcast). :func:`scan_labels` reads either into the same table, with the
MSP-Podcast columns and A/V/D on 1-7, so that everything after it (training,
evaluation, :mod:`emosphere.check`) reads every corpus the same way.
:func:`prepare_labels` turns it into the table training and evaluation read:
one row per usable utterance, with the audio path, its duration, the targets
on [0, 1], the spherical coordinates and the region.

:func:`scan_consensus` reads a label table and lists every problem in it (a
:data:`~emosphere.problems.PROBLEM_COLUMNS` table, with line numbers of the file) instead of
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
from .io import TABLE_SUFFIXES
from .manifest import SCALE_COLUMNS, scan_manifest
from .problems import (
    LabelError,
    empty_problems,
    number_problems,
    problems_table,
    raise_first,
    repeated_problems,
    summarise_problems,
    table_lines,
)
from .sphere import DIMENSIONS, MODEL_SCALE, RegionSet, Scale, centre, to_spherical, to_unit

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
HEADER_COLUMNS = ("sample_rate", "channels", "frames", "duration", "error")
FILE_NOT_FOUND = "file not found"
"""The ``error`` of :func:`read_headers` for a file that does not exist."""


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(path)))


@dataclass(frozen=True)
class Corpus:
    """Where a corpus lives, in which ``layout``, and the rating ``scale`` of its labels.

    ``msp-podcast``: ``root`` is the corpus folder; ``labels`` and ``audio_dir`` default to
    ``Labels/labels_consensus.csv`` and ``Audios/``; ``scale`` None means 1-7. ``manifest``:
    ``labels`` is the manifest, ``audio_dir`` the folder its relative paths start from (default:
    the manifest's folder); ``scale`` None means the manifest's ``scale_min`` and ``scale_max``.
    """

    root: Path
    labels: Path
    audio_dir: Path
    layout: str = "msp-podcast"
    scale: Scale | None = None

    @classmethod
    def at(
        cls,
        root: str | os.PathLike,
        labels: str | os.PathLike | None = None,
        audio_dir: str | os.PathLike | None = None,
        *,
        scale: Scale | None = None,
    ) -> Corpus:
        """A corpus in the MSP-Podcast layout, its paths absolute (so that the tables made from it
        read the same from any working directory)."""
        root = _absolute(root)
        return cls(
            root=root,
            labels=_absolute(labels) if labels else root / "Labels" / "labels_consensus.csv",
            audio_dir=_absolute(audio_dir) if audio_dir else root / "Audios",
            scale=scale,
        )

    @classmethod
    def manifest(
        cls, path: str | os.PathLike, audio_dir: str | os.PathLike | None = None, *, scale: Scale | None = None
    ) -> Corpus:
        """A corpus listed by a manifest (:mod:`emosphere.manifest`), its paths absolute."""
        path = _absolute(path)
        return cls(path.parent, path, _absolute(audio_dir) if audio_dir else path.parent, "manifest", scale)

    @classmethod
    def from_config(cls, data: DataConfig) -> Corpus:
        """The corpus a config's ``data`` section names: ``data.manifest`` (a manifest, its relative
        paths under ``data.audio_dir`` when set; it replaces ``data.corpus`` and ``data.labels``) or
        ``data.corpus`` / ``data.labels`` / ``data.audio_dir`` (the MSP-Podcast layout); ``data.scale``
        its rating scale."""
        scale = Scale(*data.scale) if data.scale else None
        if data.manifest:
            return cls.manifest(data.manifest, data.audio_dir, scale=scale)
        return cls.at(data.corpus or ".", data.labels, data.audio_dir, scale=scale)

    @classmethod
    def open(
        cls,
        source: str | os.PathLike,
        labels: str | os.PathLike | None = None,
        audio_dir: str | os.PathLike | None = None,
        *,
        scale: Scale | None = None,
    ) -> Corpus:
        """What a command's ``--corpus SOURCE`` names: a table file (.csv, .parquet) is a manifest,
        anything else a folder in the MSP-Podcast layout. A manifest takes no ``labels``."""
        if Path(source).suffix.lower() in TABLE_SUFFIXES:
            if labels:
                raise LabelError(f"{source}: a manifest is its own label table; --labels goes with a corpus folder")
            return cls.manifest(source, audio_dir, scale=scale)
        return cls.at(source, labels, audio_dir, scale=scale)

    @property
    def is_manifest(self) -> bool:
        return self.layout == "manifest"


def scan_labels(corpus: Corpus) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The corpus's label table and its problems, whatever its layout: the columns of
    :data:`CONSENSUS_COLUMNS` with A/V/D on 1-7 (see :func:`scan_consensus`; for a manifest,
    :func:`emosphere.manifest.scan_manifest`, whose rows also carry ``path``). A corpus not on
    1-7 also gets ``scale_min`` and ``scale_max`` columns: its scale. Line = index + 2."""
    if corpus.is_manifest:
        return scan_manifest(corpus.labels, audio_dir=corpus.audio_dir, scale=corpus.scale)
    scale = corpus.scale or MODEL_SCALE
    table, problems = scan_consensus(corpus.labels, scale=scale)
    if scale != MODEL_SCALE:
        table[list(LABEL_COLUMNS)] = scale.to_model(table[list(LABEL_COLUMNS)].to_numpy(np.float64))
        table[list(SCALE_COLUMNS)] = [scale.low, scale.high]
    return table, problems


def table_scale(table: pd.DataFrame) -> Scale:
    """The rating scale of a label table from :func:`scan_labels` or :func:`prepare_labels` (its
    ``scale_min``/``scale_max``; 1-7 without them): the scale to report its predictions on."""
    if "scale_min" not in table or table.empty:
        return MODEL_SCALE
    return Scale(float(table["scale_min"].iloc[0]), float(table["scale_max"].iloc[0]))


def read_labels(corpus: Corpus) -> pd.DataFrame:
    """:func:`scan_labels`, raising :class:`LabelError` naming the file and rows at fault (warnings are
    logged)."""
    table, problems = scan_labels(corpus)
    for line in summarise_problems(problems[problems["severity"] == "warning"]):
        log.warning("%s", line)
    raise_first(corpus.labels, problems, "`emosphere check` lists them all")
    return table


def scan_consensus(path: str | os.PathLike, *, scale: Scale = MODEL_SCALE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a ``labels_consensus.csv`` and list every problem in its rows.

    Returns the table (labels as numbers on their ``scale``, the file's row order and index:
    line = index + 2) and a :data:`~emosphere.problems.PROBLEM_COLUMNS` table. Errors: a label that is missing,
    not a number or outside ``scale`` ([1, 7]) (except in :data:`UNLABELLED_SPLITS`), a missing
    or repeated ``FileName``, a missing ``Split_Set``. Warnings: an ``EmoClass`` outside
    A S H U F D C N O X. A file that is missing, unreadable or lacks columns raises
    :class:`LabelError`.
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
        table[column], problems = number_problems(table, column, scale, path, labelled)
        found.append(problems)
    found += [empty_problems(table, column, path) for column in ("FileName", "Split_Set")]
    found.append(repeated_problems(table, "FileName", path))
    odd = ~table["EmoClass"].isin(EMOTION_CLASSES)
    found.append(
        problems_table(
            "warning",
            f"EmoClass not one of {' '.join(sorted(EMOTION_CLASSES))}",
            path,
            table_lines(table.index[odd]),
            table.loc[odd, "EmoClass"].tolist(),
        )
    )
    return table, pd.concat(found, ignore_index=True)


def read_consensus(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``labels_consensus.csv``; raise :class:`LabelError` naming the file and rows at fault
    (see :func:`scan_consensus`; warnings are logged)."""
    return read_labels(Corpus.at(Path(path).parent, labels=path))


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


def audio_paths(table: pd.DataFrame, audio_dir: Path) -> list[str]:
    """The audio file of each row: its ``path`` (a manifest's rows have one), else ``FileName``
    under ``audio_dir``."""
    if "path" in table:
        return table["path"].tolist()
    return [str(audio_dir / name) for name in table["FileName"]]


def with_audio(table: pd.DataFrame, audio_dir: Path, headers: pd.DataFrame) -> pd.DataFrame:
    """Add ``path`` (:func:`audio_paths`) and ``duration`` (seconds) from :func:`read_headers` of the
    rows' files."""
    out = table.copy()
    out["path"] = audio_paths(table, audio_dir)
    out["duration"] = headers["duration"].to_numpy()
    return out


def prepare_labels(
    corpus: Corpus, regions: RegionSet, *, keep_other: bool = False, progress: bool = True
) -> pd.DataFrame:
    """The table that training and evaluation read.

    Keeps rows with labels (Test3 has none), drops EmoClass O and X unless
    ``keep_other`` (MSP-Podcast layout only: a manifest's rows are used as
    listed), resolves each ``FileName`` under the audio folder (a manifest's
    ``path``) and reads its duration from the header. Rows whose audio is
    missing or unreadable are dropped with a warning that names them (training
    checks the corpus first and stops instead: :mod:`emosphere.check`). A
    corpus not on 1-7 keeps A/V/D on 1-7 and its scale in ``scale_min`` and
    ``scale_max`` (:func:`scan_labels`).
    """
    table = read_labels(corpus)
    table = usable_rows(table, keep_other=keep_other or corpus.is_manifest).reset_index(drop=True)
    headers = read_headers(audio_paths(table, corpus.audio_dir), progress=progress)
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
