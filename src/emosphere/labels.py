"""MSP-Podcast label tables: read, check, filter and annotate with the sphere.

A corpus is a folder with ``Audios/`` (one audio file per utterance) and
``Labels/labels_consensus.csv`` with the columns of :data:`CONSENSUS_COLUMNS`.
:func:`prepare_labels` turns it into the table training and evaluation read:
one row per usable utterance, with the audio path, its duration, the targets
on [0, 1], the spherical coordinates and the region.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from .sphere import DIMENSIONS, SCALE_MAX, SCALE_MIN, RegionSet, centre, to_spherical, to_unit

log = logging.getLogger(__name__)

CONSENSUS_COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
LABEL_COLUMNS = ("EmoAct", "EmoVal", "EmoDom")
"""The 1-7 label columns, in the order of :data:`emosphere.sphere.DIMENSIONS`."""
PRIMARY_CLASSES = frozenset("ASHUFDCN")
"""EmoClass values the paper recipe keeps; O (other) and X (no agreement) are dropped."""


class LabelError(ValueError):
    """A label table that cannot be used; the message names the file and row."""


@dataclass(frozen=True)
class Corpus:
    """Where a corpus lives. ``labels`` and ``audio_dir`` default to the MSP-Podcast layout."""

    root: Path
    labels: Path
    audio_dir: Path

    @classmethod
    def at(cls, root: str | os.PathLike, labels: str | os.PathLike | None = None,
           audio_dir: str | os.PathLike | None = None) -> "Corpus":
        root = Path(root)
        return cls(
            root=root,
            labels=Path(labels) if labels else root / "Labels" / "labels_consensus.csv",
            audio_dir=Path(audio_dir) if audio_dir else root / "Audios",
        )


def read_consensus(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``labels_consensus.csv``; raise :class:`LabelError` naming the file and rows at fault."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label file not found")
    table = pd.read_csv(path, dtype={"FileName": str, "EmoClass": str, "Split_Set": str, "Gender": str})
    missing = [c for c in CONSENSUS_COLUMNS if c not in table.columns]
    if missing:
        raise LabelError(f"{path}: missing columns {missing}; expected {list(CONSENSUS_COLUMNS)}")
    for column in LABEL_COLUMNS:
        values = pd.to_numeric(table[column], errors="coerce")
        labelled = ~table["Split_Set"].astype(str).str.startswith("Test3")
        bad = labelled & (values.isna() | (values < SCALE_MIN) | (values > SCALE_MAX))
        if bad.any():
            rows = (np.flatnonzero(bad.to_numpy()) + 2).tolist()  # +2: header line, 1-based
            raise LabelError(
                f"{path}: column {column} must be a number in [1, 7]; bad value on line(s) {rows[:10]}"
                + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
            )
        table[column] = values
    duplicated = table["FileName"].duplicated()
    if duplicated.any():
        raise LabelError(f"{path}: FileName repeated: {table.loc[duplicated, 'FileName'].head(5).tolist()}")
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


def audio_duration(path: Path) -> float:
    """Duration in seconds from the file header, without decoding the audio."""
    info = sf.info(str(path))
    return info.frames / info.samplerate


def prepare_labels(corpus: Corpus, regions: RegionSet, *, keep_other: bool = False,
                   progress: bool = True) -> pd.DataFrame:
    """The table that training and evaluation read.

    Keeps rows with labels (Test3 has none), drops EmoClass O and X unless
    ``keep_other``, resolves each ``FileName`` under the audio folder and
    reads its duration from the header. Rows whose audio is missing or
    unreadable are dropped with a warning that names them.
    """
    table = read_consensus(corpus.labels)
    table = table[table[list(LABEL_COLUMNS)].notna().all(axis=1)]
    if not keep_other:
        table = table[table["EmoClass"].isin(PRIMARY_CLASSES)]
    table = annotate(table.reset_index(drop=True), regions)
    paths, durations, problems = [], [], []
    for name in tqdm(table["FileName"], desc="reading audio headers", disable=not progress, unit="file"):
        path = corpus.audio_dir / name
        try:
            durations.append(audio_duration(path))
        except (sf.LibsndfileError, OSError, RuntimeError) as error:
            problems.append(f"{path}: {error}")
            durations.append(np.nan)
        paths.append(str(path))
    table["path"] = paths
    table["duration"] = durations
    if problems:
        log.warning("dropped %d row(s) whose audio cannot be read, e.g.\n  %s",
                    len(problems), "\n  ".join(problems[:10]))
        table = table[table["duration"].notna()].reset_index(drop=True)
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
        table["Split_Set"], margins=True, margins_name="total", dropna=False,
    )
    grid.index.name = "region"
    return grid
