"""Inference: batched forward passes and the tables users read.

Every output table names its columns and states its scale:

* ``arousal``, ``valence``, ``dominance``: the 1-7 scale of MSP-Podcast, clipped;
* ``arousal_unit``, ``valence_unit``, ``dominance_unit``: the same on [0, 1];
* ``r``, ``theta``, ``phi``: the centred point in spherical coordinates
  (r >= 0; theta in [0, pi] and phi in (-pi, pi], radians);
* ``region`` (the predicted region's name) and ``p_<region>`` (its
  probabilities), when the model has a region head.

Prediction for users (``emosphere predict``, :meth:`EmoSphereSER.predict`;
see docs/predict.md) adds ``file``, ``level``, ``start`` and ``end`` (seconds)
in front: audio longer than a window is cut into overlapping windows
(:func:`emosphere.audio.windows`), each predicted (``level`` "window"), and
the file's row (``level`` "file") aggregates them. Files are decoded lazily in
DataLoader workers; their windows are bucketed by length into batches.

A model runs behind a :class:`Backend`: :class:`TorchBackend` here, or
``emosphere.export.OnnxModel``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from glob import glob, has_magic
from pathlib import Path
from typing import NamedTuple, Protocol, Union

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import audio
from .data import Batch, BucketBatchSampler, collate
from .io import TABLE_SUFFIXES, read_table, write_table
from .model import EmoSphereSER
from .sphere import DIMENSIONS, centre, from_unit, to_spherical, to_unit

log = logging.getLogger(__name__)

WINDOW_SECONDS = 12.0
"""Default window: the training crop length."""
HOP_SECONDS = 6.0
"""Default hop: windows overlap by half."""
POOL_BATCHES = 32
"""Windows of this many batches are decoded, sorted by length and run together."""
MANIFEST_COLUMNS = ("path", "file", "FileName")
TABLE_KEYS = ["file", "level", "start", "end"]


class PredictError(ValueError):
    """A usage error: bad inputs or options (the CLI exits with code 2)."""


class Backend(Protocol):
    """A model behind numpy arrays: raw 16 kHz ``waveform`` (batch, samples) float32, zero-padded,
    and ``lengths`` (batch,) int64 -> (avd (batch, 3) on [0, 1], region logits (batch, K) or None)."""

    @property
    def region_names(self) -> list[str]: ...

    @property
    def min_samples(self) -> int: ...

    def __call__(self, waveform: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


class TorchBackend:
    """An :class:`EmoSphereSER` on ``device``, in eval mode, as a :class:`Backend`."""

    def __init__(self, model: EmoSphereSER, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @property
    def region_names(self) -> list[str]:
        return self.model.region_names

    @property
    def min_samples(self) -> int:
        return self.model.min_samples

    @torch.inference_mode()
    def __call__(self, waveform: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.model(torch.from_numpy(waveform).to(self.device), torch.from_numpy(lengths).to(self.device))
        logits = None if out.region_logits is None else out.region_logits.float().cpu().numpy()
        return out.avd.float().cpu().numpy(), logits


def load_backend(model: str | os.PathLike, backend: str = "torch", device: str = "cpu") -> Backend:
    """A model directory or hub id (``torch``), or an exported ``.onnx`` file (``onnx``)."""
    if backend == "onnx":
        from .export import OnnxModel

        if device != "cpu":
            log.warning("--device %s is ignored by the onnx backend", device)
        return OnnxModel.load(model)
    if backend != "torch":
        raise PredictError(f"unknown backend {backend!r} (torch or onnx)")
    return TorchBackend(EmoSphereSER.from_pretrained(model, device=device), device)


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def infer(model: EmoSphereSER | Backend, batches: Iterable[Batch],
          device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """Run ``model`` (an :class:`EmoSphereSER`, run on ``device``, or a :class:`Backend`) over ``batches``;
    returns ``index``, ``avd`` (n, 3) on [0, 1] as predicted and ``region_probs`` (n, K) or None,
    in the order of ``index``."""
    backend = TorchBackend(model, device) if isinstance(model, EmoSphereSER) else model
    indices, avd, probs = [], [], []
    for batch in batches:
        batch_avd, logits = backend(batch.waveform.numpy(), batch.lengths.numpy())
        indices.append(batch.index.numpy())
        avd.append(batch_avd)
        if logits is not None:
            probs.append(softmax(logits))
    if not indices:
        return {"index": np.zeros(0, np.int64), "avd": np.zeros((0, 3)), "region_probs": None}
    order = np.argsort(np.concatenate(indices), kind="stable")
    return {
        "index": np.concatenate(indices)[order],
        "avd": np.concatenate(avd)[order],
        "region_probs": np.concatenate(probs)[order] if probs else None,
    }


def describe(avd_unit: np.ndarray, region_probs: np.ndarray | None, region_names: list[str]) -> pd.DataFrame:
    """The named output columns (see the module docstring) for (n, 3) predictions on [0, 1]."""
    scaled = from_unit(avd_unit)
    table = pd.DataFrame(scaled, columns=list(DIMENSIONS))
    table[[f"{d}_unit" for d in DIMENSIONS]] = to_unit(scaled)
    table[["r", "theta", "phi"]] = to_spherical(centre(scaled))
    if region_probs is not None:
        table["region"] = np.asarray(region_names)[region_probs.argmax(1)]
        table[[f"p_{name}" for name in region_names]] = region_probs
    return table


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArraySource:
    """Audio already in memory: (samples,) or (samples, channels) at ``sampling_rate``."""

    name: str
    samples: np.ndarray
    sampling_rate: int


Source = Union[str, ArraySource]


def source_name(source: Source) -> str:
    return source.name if isinstance(source, ArraySource) else source


def _read_manifest(path: Path) -> list[str]:
    if path.suffix.lower() == ".csv":
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        column = next((c for c in MANIFEST_COLUMNS if c in table.columns), None)
        if column is None:
            raise PredictError(f"{path}: a manifest CSV needs a column named one of {', '.join(MANIFEST_COLUMNS)}")
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
        elif path.is_file() and path.suffix.lower() in (".csv", ".txt", ".lst"):
            paths += _read_manifest(path)
        elif path.is_file():
            paths.append(item)
        elif has_magic(item):
            matches = sorted(glob(item, recursive=True))
            if not matches:
                raise PredictError(f"{item}: no file matches this pattern")
            paths += collect_inputs(matches)
        else:
            raise PredictError(f"{item}: no such file or folder")
    return list(dict.fromkeys(paths))


Input = Union[str, os.PathLike, np.ndarray]


def as_sources(inputs: Input | Iterable[Input], sampling_rate: int | None) -> list[Source]:
    """The Python API's inputs: a path, an array, or a list of paths and arrays (named ``array_<i>``)."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike, np.ndarray)) else list(inputs)
    sources: list[Source] = []
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            if sampling_rate is None:
                raise ValueError("sampling_rate is required when predicting from arrays (e.g. sampling_rate=16000)")
            if item.ndim == 2 and item.shape[1] > item.shape[0]:
                raise ValueError(f"array {i} has shape {item.shape}: expected (samples, channels); transpose it")
            sources.append(ArraySource(f"array_{i}", item, int(sampling_rate)))
        else:
            sources += collect_inputs([item])
    return sources


# --- prediction --------------------------------------------------------------------------------


class FileResult(NamedTuple):
    index: int
    """Position of the source in the input list."""
    file: str
    rows: pd.DataFrame | None
    """The file row, then its window rows when there are several windows."""
    error: str | None


class _Files(Dataset):
    """Sources decoded on access (in DataLoader workers) and cut into window spans; failures are returned."""

    def __init__(self, sources: Sequence[Source], min_samples: int, window: float, hop: float) -> None:
        self.sources = sources
        self.min_samples = min_samples
        self.window = window
        self.hop = hop

    def __len__(self) -> int:
        return len(self.sources)

    def _decode(self, source: Source) -> np.ndarray:
        if isinstance(source, str):
            return audio.load(source)
        samples = audio.to_mono_16k(source.samples, source.sampling_rate)
        if not np.isfinite(samples).all():
            raise audio.AudioError("audio contains NaN or infinite samples")
        return samples

    def __getitem__(self, index: int) -> dict:
        name = source_name(self.sources[index])
        try:
            samples = audio.check_length(self._decode(self.sources[index]), self.min_samples)
            return {"index": index, "samples": samples,
                    "spans": audio.windows(len(samples), self.window, self.hop)}
        except Exception as error:  # noqa: BLE001 - one bad file must not stop the run
            message = str(error).removeprefix(f"{name}: ")
            if not isinstance(error, audio.AudioError):
                message = f"{type(error).__name__}: {message}"
            return {"index": index, "error": message}


def _keep(item: dict) -> dict:
    return item


def _file_rows(name: str, spans: list[tuple[int, int]], avd: np.ndarray, probs: np.ndarray | None,
               region_names: list[str]) -> pd.DataFrame:
    """Window rows and their duration-weighted aggregate (of the clipped [0, 1] values and of the
    region probabilities); one file row alone when there is one window."""
    bounds = np.asarray(spans, np.float64).reshape(-1, 2) / audio.SAMPLE_RATE
    avd = np.clip(avd, 0.0, 1.0)
    if len(spans) > 1:
        weights = bounds[:, 1] - bounds[:, 0]
        avd = np.concatenate([np.average(avd, axis=0, weights=weights)[None], avd])
        if probs is not None:
            probs = np.concatenate([np.average(probs, axis=0, weights=weights)[None], probs])
        bounds = np.concatenate([[[0.0, bounds[:, 1].max()]], bounds])
    levels = np.where(np.arange(len(bounds)) > 0, "window", "file")
    keys = pd.DataFrame({"file": [name] * len(bounds), "level": levels, "start": bounds[:, 0], "end": bounds[:, 1]})
    return pd.concat([keys, describe(avd, probs, region_names)], axis=1)


def empty_table() -> pd.DataFrame:
    """The prediction columns (without the region columns) and no rows."""
    return _file_rows("", [], np.zeros((0, 3)), None, [])


def predict_files(backend: Backend, sources: Sequence[Source], *, batch_size: int = 8,
                  window: float | None = None, hop: float | None = None, num_workers: int = 0,
                  progress: bool = False) -> Iterator[FileResult]:
    """Predict every source, yielding one :class:`FileResult` per source as it completes (failures
    first, as soon as they are decoded). Files stream through DataLoader workers; the windows of
    about ``POOL_BATCHES`` batches at a time are sorted by length into batches of ``batch_size``.
    ``window`` and ``hop`` default to :data:`WINDOW_SECONDS` and :data:`HOP_SECONDS`.
    Bad options raise :class:`PredictError` here, before anything runs."""
    window = WINDOW_SECONDS if window is None else window
    hop = HOP_SECONDS if hop is None else hop
    if batch_size < 1 or num_workers < 0:
        raise PredictError(f"need batch size >= 1 and workers >= 0, got {batch_size} and {num_workers}")
    if not 0 < hop <= window:
        raise PredictError(f"need 0 < hop <= window, got window {window} s and hop {hop} s")
    if window * audio.SAMPLE_RATE < backend.min_samples:
        raise PredictError(f"window {window} s is shorter than the model's minimum input "
                           f"({backend.min_samples} samples at 16 kHz)")
    files = DataLoader(_Files(sources, backend.min_samples, window, hop), batch_size=None,
                       collate_fn=_keep, num_workers=num_workers)
    return _stream(backend, sources, files, batch_size, progress)


def _stream(backend: Backend, sources: Sequence[Source], files: DataLoader, batch_size: int,
            progress: bool) -> Iterator[FileResult]:
    with tqdm(total=len(sources), desc="predict", unit="file", disable=not progress) as bar:
        pending: list[dict] = []
        pooled = 0
        for item in files:
            if "error" in item:
                bar.update()
                yield FileResult(item["index"], source_name(sources[item["index"]]), None, item["error"])
                continue
            pending.append(item)
            pooled += len(item["spans"])
            if pooled >= batch_size * POOL_BATCHES:
                yield from _run_pool(backend, sources, pending, batch_size, bar)
                pending, pooled = [], 0
        yield from _run_pool(backend, sources, pending, batch_size, bar)


def _run_pool(backend: Backend, sources: Sequence[Source], pending: list[dict], batch_size: int,
              bar: tqdm) -> Iterator[FileResult]:
    windows = [item["samples"][start:end] for item in pending for start, end in item["spans"]]
    if not windows:
        return
    lengths = np.array([len(w) for w in windows])
    batches = (collate([{"waveform": windows[i], "index": i} for i in batch])
               for batch in BucketBatchSampler(lengths, batch_size, shuffle=False))
    result = infer(backend, batches)
    first = 0
    for item in pending:
        span = slice(first, first + len(item["spans"]))
        first = span.stop
        probs = None if result["region_probs"] is None else result["region_probs"][span]
        name = source_name(sources[item["index"]])
        bar.update()
        yield FileResult(item["index"], name,
                         _file_rows(name, item["spans"], result["avd"][span], probs, backend.region_names), None)


def predict_table(backend: Backend, sources: Sequence[Source], **options) -> pd.DataFrame:
    """All rows in input order (``options`` as :func:`predict_files`). Sources that fail are logged,
    left out and listed as (file, error) pairs in ``table.attrs["errors"]``."""
    results = sorted(predict_files(backend, sources, **options), key=lambda r: r.index)
    for result in results:
        if result.error is not None:
            log.warning("skipped %s: %s", result.file, result.error)
    tables = [r.rows for r in results if r.rows is not None]
    table = pd.concat(tables, ignore_index=True) if tables else empty_table()
    table.attrs["errors"] = [(r.file, r.error) for r in results if r.error is not None]
    return table


def errors_path(output: str | os.PathLike) -> Path:
    """``<output stem>.errors.csv`` beside ``output``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.errors.csv")


def predict_to_file(backend: Backend, inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *,
                    resume: bool = False, save_every: float = 60.0, **options) -> list[tuple[str, str]]:
    """Predict the audio named by ``inputs`` (see :func:`collect_inputs`) into the table ``output``
    (CSV, .jsonl or .parquet), rewritten atomically every ``save_every`` seconds and at the end,
    also when interrupted. ``resume`` keeps the files already in ``output`` and predicts the others.
    Failures are logged and written to :func:`errors_path` (removed when there are none); returns them."""
    output = Path(output)
    if output.suffix.lower() not in TABLE_SUFFIXES:
        raise PredictError(f"{output}: unknown output format; use one of {', '.join(TABLE_SUFFIXES)}")
    paths = collect_inputs(inputs)
    if not paths:
        raise PredictError(f"no audio files found in {', '.join(map(str, inputs))}")
    done = None
    if resume and output.exists():
        done = read_table(output)
        if not set(TABLE_KEYS) <= set(done.columns):
            raise PredictError(f"{output}: not a prediction table, cannot resume from it")
        finished = set(done.loc[done["level"] == "file", "file"].astype(str))
        log.info("resume: %d of %d files already in %s", len(finished & set(paths)), len(paths), output)
        paths = [p for p in paths if p not in finished]
    rows: dict[int, pd.DataFrame] = {}
    errors: list[tuple[int, str, str]] = []

    def save() -> None:
        tables = ([done] if done is not None else []) + [rows[i] for i in sorted(rows)]
        write_table(pd.concat(tables, ignore_index=True) if tables else empty_table(), output)

    results = predict_files(backend, paths, **options)
    saved = time.monotonic()
    try:
        for result in results:
            if result.rows is not None:
                rows[result.index] = result.rows
            else:
                log.warning("skipped %s: %s", result.file, result.error)
                errors.append((result.index, result.file, str(result.error)))
            if time.monotonic() - saved > save_every:
                save()
                saved = time.monotonic()
    finally:
        save()
        failed = [(file, error) for _, file, error in sorted(errors)]
        if failed:
            write_table(pd.DataFrame(failed, columns=["file", "error"]), errors_path(output))
        else:
            errors_path(output).unlink(missing_ok=True)
    return failed
