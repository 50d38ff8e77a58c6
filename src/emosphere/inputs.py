"""What a user asks to predict: audio files, folders, manifests, segment tables, globs and arrays.

:func:`iter_inputs` turns command-line inputs into a lazy stream of sources:
folders are walked, list files and tables are read as they are consumed, so a
list of millions of files is never held in memory (a glob's matches, and the
entries of one folder, are sorted in memory). :func:`as_sources` turns the
Python API's inputs (paths or arrays) into a list of sources;
:func:`load_source` decodes one source to 16 kHz mono float32.

A source is one of:

* a whole audio file: its path, a plain ``str`` (so that long lists stay small);
* a :class:`Segment`: ``start`` to ``end`` seconds of a file (from a table with
  ``file``, ``start`` and ``end`` columns, as audinterface writes them); only
  that stretch is read;
* an :class:`ArraySource`: audio already in memory.

:func:`source_key` is what identifies a source in an output table: its path,
or for a segment (path, start, end).

Usage mistakes (an input that does not exist, a manifest without a path
column, a segment row whose end is not after its start, an array without a
sampling rate) raise :class:`InputError`, naming the input and row; they are
raised when the stream reaches them (``emosphere predict`` reads the stream
once to count it before any work starts). A file that exists but cannot be
decoded is not a usage mistake: it fails when it is read, and only that file
fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from glob import glob, has_magic
from pathlib import Path

import numpy as np
import pandas as pd

from . import audio
from .errors import UserError
from .io import TABLE_SUFFIXES, iter_table, table_columns
from .names import identity, normalise, readable

MANIFEST_COLUMNS = ("path", "file", "FileName")
LIST_SUFFIXES = (".txt", ".lst")
TABLE_CHUNK_ROWS = 10_000
"""Rows of a manifest table read at a time."""
SEGMENT_END_TOLERANCE = 0.01
"""Seconds by which a segment may end after its file (rounding of the bounds), before it is an error."""


class InputError(UserError, ValueError):
    """A usage error in what was asked for: a missing input, a bad manifest, a bad option."""


@dataclass(frozen=True)
class ArraySource:
    """Audio already in memory: (samples,) or (samples, channels) at ``sampling_rate``."""

    name: str
    samples: np.ndarray
    sampling_rate: int


@dataclass(frozen=True)
class Segment:
    """``start`` to ``end`` seconds of the audio file ``path``, counted from the file's beginning."""

    path: str
    start: float
    end: float

    @property
    def name(self) -> str:
        return self.path


Source = str | Segment | ArraySource
"""An audio file's path, a segment of a file, or audio in memory."""

SourceKey = str | tuple[str, float, float]
"""A whole source's name, or (path, start, end) of a segment, in seconds rounded to the microsecond."""


def source_name(source: Source) -> str:
    """How ``source`` is named in tables and messages (:func:`emosphere.names.readable`)."""
    return readable(source if isinstance(source, str) else source.name)


def segment_key(path: str, start: float, end: float) -> tuple[str, float, float]:
    return path, round(float(start), 6), round(float(end), 6)


def source_key(source: Source) -> SourceKey:
    """What identifies ``source`` in an output table: its name, and a segment's bounds."""
    if isinstance(source, Segment):
        return segment_key(source_name(source), source.start, source.end)
    return source_name(source)


def _normalised(source: str | Segment) -> str | Segment:
    if isinstance(source, Segment):
        return Segment(normalise(source.path), source.start, source.end)
    return normalise(source)


def _identity(source: str | Segment) -> SourceKey:
    """What makes two sources one among duplicates: the file (:func:`emosphere.names.identity`), and a
    segment's bounds."""
    if isinstance(source, Segment):
        return segment_key(identity(source.path), source.start, source.end)
    return identity(source)


def load_source(source: Source) -> np.ndarray:
    """16 kHz mono float32 samples of ``source``; raises :class:`emosphere.audio.AudioError`."""
    if isinstance(source, str):
        return audio.load(source)
    if isinstance(source, Segment):
        samples = audio.load(source.path, source.end - source.start, offset=source.start)
        if len(samples) < (source.end - source.start - SEGMENT_END_TOLERANCE) * audio.SAMPLE_RATE:
            raise audio.AudioError(
                f"{source.path}: the audio ends at "
                f"{source.start + len(samples) / audio.SAMPLE_RATE} s, before the segment does"
            )
        return samples
    samples = audio.to_mono_16k(source.samples, source.sampling_rate)
    if not np.isfinite(samples).all():
        raise audio.AudioError(f"{source_name(source)}: audio contains NaN or infinite samples")
    return samples


# --- the stream of sources ---------------------------------------------------------------------


def _walk(folder: str) -> Iterator[str]:
    """Audio files under ``folder``, depth first, each folder's entries sorted by name; links to
    folders are not followed."""
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path)
        elif os.path.splitext(entry.name)[1].lower() in audio.AUDIO_EXTENSIONS and entry.is_file():
            yield entry.path


def _read_list(path: Path) -> Iterator[str]:
    with open(path) as lines:
        for line in lines:
            entry = line.strip()
            if entry and not entry.startswith("#"):
                yield str(path.parent / entry)


def _seconds(values: pd.Series, path: Path, what: str, first_row: int) -> np.ndarray:
    """Times in seconds (NaN where blank) from numbers of seconds or timedeltas
    (``0 days 00:00:01.5``, ``00:01:02.5``, or timedelta columns of a parquet table)."""
    if pd.api.types.is_timedelta64_dtype(values):
        return values.dt.total_seconds().to_numpy(np.float64)
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(np.float64)
    text = values.astype(str).str.strip().replace({"NaT": "", "nan": "", "None": ""})
    seconds = pd.to_numeric(text, errors="coerce").to_numpy(np.float64, copy=True)
    other = np.isnan(seconds) & (text != "").to_numpy()
    if other.any():
        seconds[other] = pd.to_timedelta(text[other], errors="coerce").dt.total_seconds().to_numpy(np.float64)
    bad = np.flatnonzero(np.isnan(seconds) & (text != "").to_numpy())
    if len(bad):
        raise InputError(
            f"{path} row {first_row + bad[0]}: {what} {text.iloc[bad[0]]!r} is not a time "
            "(seconds, or a timedelta such as '0 days 00:00:01.5')"
        )
    return seconds


def _read_table(path: Path) -> Iterator[Source]:
    """The sources a manifest table lists: whole files, or segments when it has ``start`` and ``end``
    columns (a row with both blank is the whole file; a blank start is 0)."""
    columns = table_columns(path)
    column = next((c for c in MANIFEST_COLUMNS if c in columns), None)
    if column is None:
        raise InputError(f"{path}: a manifest table needs a column named one of {', '.join(MANIFEST_COLUMNS)}")
    segmented = "start" in columns and "end" in columns
    first_row = 1  # rows are counted from 1, after the header
    for chunk in iter_table(path, rows=TABLE_CHUNK_ROWS, raw=True):
        files = chunk[column].astype(str).str.strip().tolist()
        if segmented:
            starts = _seconds(chunk["start"], path, "start", first_row)
            ends = _seconds(chunk["end"], path, "end", first_row)
        for i, file in enumerate(files):
            if not file:
                continue
            location = str(path.parent / file)
            if not segmented or (np.isnan(starts[i]) and np.isnan(ends[i])):
                yield location
                continue
            start, end = 0.0 if np.isnan(starts[i]) else float(starts[i]), float(ends[i])
            if not 0 <= start < end:  # also a blank end (NaN)
                raise InputError(
                    f"{path} row {first_row + i}: a segment needs 0 <= start < end, got start "
                    f"{start} s and end {end} s (leave both blank for the whole file)"
                )
            yield Segment(location, start, end)
        first_row += len(chunk)


def _expand(item: str) -> Iterator[Source]:
    path = Path(item)
    suffix = path.suffix.lower()
    if path.is_dir():
        yield from _walk(item)
    elif path.is_file() and suffix in LIST_SUFFIXES:
        yield from _read_list(path)
    elif path.is_file() and suffix in TABLE_SUFFIXES:
        yield from _read_table(path)
    elif path.is_file():
        yield item
    elif has_magic(item):
        matches = sorted(glob(item, recursive=True))
        if not matches:
            raise InputError(f"{readable(item)}: no file matches this pattern")
        for match in matches:
            yield from _expand(match)
    else:
        raise InputError(f"{readable(item)}: not found (no such file or folder)")


def iter_inputs(inputs: Iterable[str | os.PathLike]) -> Iterator[Source]:
    """The sources named by files, folders (recursive, by extension), list files (.txt/.lst, one path
    a line), manifest tables (.csv, .jsonl or .parquet with a path/file/FileName column, and optionally
    ``start`` and ``end`` columns for segments) and glob patterns, lazily, in order; relative
    manifest entries are relative to the manifest. A source named twice is kept once (the first
    time; paths are normalised first, see :mod:`emosphere.names`). Manifest entries are not checked
    here: a missing file fails when it is read."""
    seen: set[SourceKey] = set()
    for item in map(os.fspath, inputs):
        for source in map(_normalised, _expand(item)):
            key = _identity(source)
            if key not in seen:
                seen.add(key)
                yield source


Input = str | os.PathLike | np.ndarray


def as_sources(inputs: Input | Iterable[Input], sampling_rate: int | None) -> list[Source]:
    """The Python API's inputs: a path (file, folder, manifest, glob), an array, or a list of
    them; arrays are named ``array_<i>`` by their position."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike, np.ndarray)) else list(inputs)
    sources: list[Source] = []
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            if sampling_rate is None:
                raise InputError("sampling_rate is required when predicting from arrays (e.g. sampling_rate=16000)")
            if item.ndim == 2 and item.shape[1] > item.shape[0]:
                raise InputError(f"array {i} has shape {item.shape}: expected (samples, channels); transpose it")
            sources.append(ArraySource(f"array_{i}", item, int(sampling_rate)))
        else:
            sources += iter_inputs([item])
    return sources
