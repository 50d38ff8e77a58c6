"""What a user asks to predict: audio files, folders, manifests, globs and arrays.

:func:`collect_inputs` turns command-line inputs into audio file paths;
:func:`as_sources` turns the Python API's inputs (paths or arrays) into
sources; :func:`load_source` decodes one source to 16 kHz mono float32.
A file source is its path (a plain ``str``, so that long lists stay small);
audio already in memory is an :class:`ArraySource`.

Usage mistakes (an input that does not exist, a manifest without a path
column, an array without a sampling rate) raise :class:`InputError`. A file
that exists but cannot be decoded is not a usage mistake: it fails when it is
read, and only that file fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from glob import glob, has_magic
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from . import audio
from .errors import UserError

MANIFEST_COLUMNS = ("path", "file", "FileName")
MANIFEST_SUFFIXES = (".csv", ".txt", ".lst")


class InputError(UserError, ValueError):
    """A usage error in what was asked for: a missing input, a bad manifest, a bad option."""


@dataclass(frozen=True)
class ArraySource:
    """Audio already in memory: (samples,) or (samples, channels) at ``sampling_rate``."""

    name: str
    samples: np.ndarray
    sampling_rate: int


Source = Union[str, ArraySource]
"""An audio file's path, or audio in memory."""


def source_name(source: Source) -> str:
    return source.name if isinstance(source, ArraySource) else source


def load_source(source: Source) -> np.ndarray:
    """16 kHz mono float32 samples of ``source``; raises :class:`emosphere.audio.AudioError`."""
    if isinstance(source, str):
        return audio.load(source)
    samples = audio.to_mono_16k(source.samples, source.sampling_rate)
    if not np.isfinite(samples).all():
        raise audio.AudioError(f"{source.name}: audio contains NaN or infinite samples")
    return samples


def _read_manifest(path: Path) -> list[str]:
    if path.suffix.lower() == ".csv":
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        column = next((c for c in MANIFEST_COLUMNS if c in table.columns), None)
        if column is None:
            raise InputError(f"{path}: a manifest CSV needs a column named one of {', '.join(MANIFEST_COLUMNS)}")
        entries = table[column].str.strip().tolist()
    else:
        entries = [line.strip() for line in path.read_text().splitlines()]
    return [str(path.parent / entry) for entry in entries if entry and not entry.startswith("#")]


def collect_inputs(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Audio file paths from files, folders (recursive, by extension), manifests (.csv with a
    path/file/FileName column, or .txt/.lst with one path a line; relative entries are relative to
    the manifest) and glob patterns; duplicates dropped, order kept. Manifest entries are not
    checked here: a missing one fails when it is read."""
    paths: list[str] = []
    for item in map(str, inputs):
        path = Path(item)
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.suffix.lower() in audio.AUDIO_EXTENSIONS and p.is_file())
            paths += sorted(map(str, found))
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            paths += _read_manifest(path)
        elif path.is_file():
            paths.append(item)
        elif has_magic(item):
            matches = sorted(glob(item, recursive=True))
            if not matches:
                raise InputError(f"{item}: no file matches this pattern")
            paths += collect_inputs(matches)
        else:
            raise InputError(f"{item}: no such file or folder")
    return list(dict.fromkeys(paths))


Input = Union[str, os.PathLike, np.ndarray]


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
            sources += collect_inputs([item])
    return sources
