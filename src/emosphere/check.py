"""Checks that run before any work, so that a mistake costs seconds, not a run.

:func:`check_corpus` reads the label table (:func:`emosphere.labels.scan_consensus`)
and the audio headers (:func:`emosphere.labels.read_headers`: no decoding;
``decode=True`` reads every sample) and reports every problem at once, with
line numbers, plus a summary: hours per split, utterances per region and per
class, sample rates. ``emosphere check`` prints it; training runs it on the
splits it reads.

Errors block training (``emosphere train`` and ``emosphere check`` exit with
code 2): a label that is missing, not a number or outside [1, 7]; an empty
``FileName`` or ``Split_Set``; a repeated ``FileName``; a listed audio file
that is missing, unreadable or shorter than the encoder's minimum input; a
split the run needs that has no usable rows. Warnings do not: audio on disk
that the table does not list, a ``Split_Set`` no run reads, an unknown
``EmoClass``.

:func:`emosphere.preflight.preflight` is everything a training run checks
before it writes anything: the config's paths, the encoder, then this corpus
check.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .audio import AUDIO_EXTENSIONS, SAMPLE_RATE
from .errors import UserError
from .labels import (
    FILE_NOT_FOUND,
    HEADER_COLUMNS,
    LABEL_COLUMNS,
    Corpus,
    annotate,
    audio_paths,
    counts,
    problems_table,
    read_headers,
    scan_labels,
    summarise_problems,
    table_scale,
    usable_rows,
    with_audio,
)
from .sphere import SCALE_MAX, SCALE_MIN, RegionSet

log = logging.getLogger(__name__)

MSP_SPLITS = ("Train", "Development", "Test1", "Test2", "Test3")
DEFAULT_MIN_SAMPLES = 400
"""The shortest input (25 ms at 16 kHz) that gives a wav2vec2-family encoder one frame."""


class CorpusError(UserError):
    """A corpus with problems that block the work asked for."""


@dataclass
class CorpusReport:
    """What :func:`check_corpus` found."""

    corpus: Corpus
    regions: RegionSet
    table: pd.DataFrame
    """The rows checked, with ``path``, ``duration`` and the :data:`~emosphere.labels.HEADER_COLUMNS`."""
    problems: pd.DataFrame
    """A :data:`~emosphere.problems.PROBLEM_COLUMNS` table."""
    splits: Sequence[str] | None

    @property
    def errors(self) -> pd.DataFrame:
        return self.problems[self.problems["severity"] == "error"]

    @property
    def warnings(self) -> pd.DataFrame:
        return self.problems[self.problems["severity"] == "warning"]

    @property
    def prepared(self) -> pd.DataFrame:
        """The rows whose audio can be read, as :func:`emosphere.labels.prepare_labels` makes them."""
        rows = self.table[self.table["error"].isna() & _labelled(self.table)]
        extra = [column for column in HEADER_COLUMNS if column != "duration"]
        return annotate(rows.drop(columns=extra).reset_index(drop=True), self.regions)

    def raise_for_errors(self) -> None:
        """Raise :class:`CorpusError` if any problem blocks training."""
        if len(self.errors):
            raise CorpusError(
                f"{self.corpus.labels}: {len(self.errors)} problem(s) block training (listed above; "
                "`emosphere check ... --problems FILE` writes them all)"
            )

    def summary(self) -> str:
        """Hours per split, utterances per region and per class, sample rates and channels."""
        table = self.table[self.table["error"].isna()]
        per_split = table.groupby("Split_Set")["duration"].agg(["count", "sum", "min", "max"])
        per_split.columns = ["utterances", "hours", "shortest s", "longest s"]
        per_split["hours"] /= 3600
        labelled = self.prepared
        parts = [
            f"{self.corpus.labels}: {len(self.table)} row(s) checked"
            + (f" (splits {', '.join(self.splits)})" if self.splits is not None else "")
            + f"; {len(self.errors)} error(s), {len(self.warnings)} warning(s)",
            per_split.round(3).to_string(),
            f"sample rates (Hz): {_tally(table['sample_rate'])}; channels: {_tally(table['channels'])}",
        ]
        if "scale_min" in self.table:
            parts.insert(1, f"labels on the {table_scale(self.table).label} scale (mapped onto the model's 1-7)")
        if len(labelled):
            parts.append(
                f"utterances per region ({self.regions.name}) and split:\n" + counts(labelled, self.regions).to_string()
            )
            classes = pd.crosstab(labelled["EmoClass"], labelled["Split_Set"], margins=True, margins_name="total")
            parts.append("utterances per EmoClass and split:\n" + classes.to_string())
        return "\n".join(parts)


def _tally(values: pd.Series) -> str:
    return ", ".join(f"{k}: {n}" for k, n in values.value_counts().sort_index().items())


def _labelled(table: pd.DataFrame) -> pd.Series:
    values = table[list(LABEL_COLUMNS)]
    return (values >= SCALE_MIN).all(axis=1) & (values <= SCALE_MAX).all(axis=1)


def _unlisted_audio(audio_dir: Path, listed: set[str]) -> list[str]:
    """Audio files under ``audio_dir`` (recursive) whose relative path is not in ``listed``."""
    found = []
    for folder, _, names in os.walk(audio_dir):
        for name in names:
            if Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                relative = os.path.relpath(os.path.join(folder, name), audio_dir)
                if relative not in listed:
                    found.append(relative)
    return sorted(found)


def check_corpus(
    corpus: Corpus,
    regions: RegionSet,
    *,
    splits: Sequence[str] | None = None,
    keep_other: bool = False,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    decode: bool = False,
    workers: int = 8,
    progress: bool = True,
) -> CorpusReport:
    """Check a corpus: the label table, then the audio of the rows a run reads.

    With ``splits`` (a training run's), those are the labelled rows of ``splits``
    (EmoClass O and X only with ``keep_other``; a manifest's rows as listed), and
    each split must have some; without, every row of the table. Audio headers are
    read by ``workers`` threads; ``decode`` reads every sample instead (finds
    corrupt or truncated data and NaN samples, at the cost of decoding the corpus
    once). Raises :class:`CorpusError` if the audio folder is missing; every
    other problem is in the report. The MSP-Podcast layout also warns of
    unknown ``Split_Set`` values and of audio on disk that the table does not
    list; a manifest names its own splits and lists what it uses.
    """
    if not corpus.audio_dir.is_dir():
        raise CorpusError(f"{corpus.audio_dir}: audio folder not found")
    table, problems = scan_labels(corpus)
    found = [problems] if corpus.is_manifest else [problems, _unknown_splits(corpus, table, splits)]
    if splits is None:
        rows = table[table["FileName"].notna()]
    else:
        rows = usable_rows(table, keep_other=keep_other or corpus.is_manifest, splits=splits)
        present = sorted(table["Split_Set"].dropna().unique())
        for name in splits:
            if not (rows["Split_Set"] == name).any():
                found.append(
                    problems_table(
                        "error",
                        f"split {name!r} has no usable labelled rows",
                        corpus.labels,
                        [],
                        [f"Split_Set values: {', '.join(present)}"],
                    )
                )
    rows, audio_problems = _check_audio(
        corpus, rows, min_samples=min_samples, decode=decode, workers=workers, progress=progress
    )
    found.append(audio_problems)
    if not corpus.is_manifest:
        unlisted = _unlisted_audio(corpus.audio_dir, set(table["FileName"].dropna()))
        found.append(
            problems_table(
                "warning",
                "audio file on disk not in the label table",
                [str(corpus.audio_dir / name) for name in unlisted],
                [],
                [""] * len(unlisted),
            )
        )
    return CorpusReport(corpus, regions, rows, pd.concat(found, ignore_index=True), splits)


def _unknown_splits(corpus: Corpus, table: pd.DataFrame, splits: Sequence[str] | None) -> pd.DataFrame:
    """Warnings for ``Split_Set`` values that are not MSP-Podcast's nor among ``splits``."""
    known = list(MSP_SPLITS) + [s for s in splits or () if s not in MSP_SPLITS]
    other = table["Split_Set"].notna() & ~table["Split_Set"].isin(known)
    return problems_table(
        "warning",
        f"Split_Set not one of {', '.join(known)} (no run reads these rows)",
        corpus.labels,
        table.index[other] + 2,
        table.loc[other, "Split_Set"].tolist(),
    )


def _check_audio(
    corpus: Corpus, rows: pd.DataFrame, *, min_samples: int, decode: bool, workers: int, progress: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows with ``path``, ``duration`` and the header columns, and the problems of their audio
    (missing, unreadable, too short), at the rows' lines of the label table."""
    headers = read_headers(audio_paths(rows, corpus.audio_dir), decode=decode, workers=workers, progress=progress)
    headers.index = rows.index
    rows = with_audio(rows, corpus.audio_dir, headers)
    rows[headers.columns.drop("duration")] = headers.drop(columns="duration")
    lines = rows.index + 2
    missing = (headers["error"] == FILE_NOT_FOUND).to_numpy()
    unreadable = (headers["error"].notna() & ~missing).to_numpy()
    short = headers["error"].isna().to_numpy() & (rows["duration"].to_numpy() * SAMPLE_RATE < min_samples)
    rows.loc[short, "error"] = "too short"
    problems = [
        problems_table(
            "error", "listed audio file not found", corpus.labels, lines[missing], rows.loc[missing, "path"].tolist()
        ),
        problems_table(
            "error",
            "audio file unreadable",
            corpus.labels,
            lines[unreadable],
            [f"{p}: {e}" for p, e in zip(rows.loc[unreadable, "path"], headers.loc[unreadable, "error"])],
        ),
        problems_table(
            "error",
            f"audio shorter than the encoder's minimum input ({min_samples} samples at 16 kHz)",
            corpus.labels,
            lines[short],
            [f"{p}: {d:.4f} s" for p, d in zip(rows.loc[short, "path"], rows.loc[short, "duration"])],
        ),
    ]
    return rows, pd.concat(problems, ignore_index=True)


def log_problems(report: CorpusReport, limit: int = 10) -> None:
    """One log line per kind of problem (errors, then warnings)."""
    for line in summarise_problems(report.errors, limit):
        log.error("%s", line)
    for line in summarise_problems(report.warnings, limit):
        log.warning("%s", line)
