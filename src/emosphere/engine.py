"""The engine: audio in, named arousal, valence and dominance out, the same way for every caller.

Every number emosphere reports for a file comes through here. A
:class:`Predictor` is a :class:`~emosphere.backends.Backend` (the model, on a
device, at a precision) plus :class:`Options` (how audio is cut and batched).
The rule, the same everywhere:

1. **Decode** (:func:`emosphere.inputs.load_source`): any file soundfile
   reads, a segment of one, or an array; mixed down to mono, resampled to
   16 kHz. A source that cannot be decoded, or is shorter than the model's
   minimum input (400 samples, 25 ms, for WavLM), is not predicted: it becomes
   a :class:`Failure` naming it, and the job goes on.
2. **Windows** (:func:`emosphere.audio.windows`): audio of up to one window
   (default: the model's training crop, 12 s in the paper recipe) is one
   window; longer audio is cut into windows every hop (default: half a
   window), the last one aligned to the end.
3. **Batches** (:meth:`Windowing.batches`): the windows of a pool of sources
   are sorted by length and zero-padded into batches; the model masks padding,
   so batching never changes a prediction.
4. **Aggregate** (:func:`aggregate`): each window's A/V/D on [0, 1] is clipped
   to [0, 1]; a file's value is the duration-weighted mean of its windows'
   clipped values, and its region probabilities the duration-weighted mean of
   theirs. Scores (CCC) use the file values.
5. **Describe** (:mod:`emosphere.schema`): named columns on stated scales.

Callers enter at one of three depths, each for a reason:

* :meth:`Predictor.stream` / :meth:`Predictor.table`: sources in, predictions
  out, in input order (``emosphere predict``, ``emosphere evaluate``,
  :meth:`EmoSphereSER.predict`). A run holds the decoded audio of one pool of
  sources at a time, so sources may come as a lazy stream.
* :meth:`Predictor.decode` then :meth:`Predictor.run`: the service decodes
  each upload as it arrives and runs the uploads that wait together as one pool.
* :class:`Windowing` and :func:`assemble`: training's development pass, where
  the model runs inside Lightning's validation loop on each process's share.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import audio, schema
from .errors import UserError
from .heap import release_freed_memory
from .inputs import Segment, Source, load_source, source_name
from .names import one_line
from .progress import Meter

if TYPE_CHECKING:
    from .backends import Backend
    from .sphere import RegionSet

log = logging.getLogger(__name__)

SILENT = f"silent: no 25 ms frame reaches {audio.SILENCE_DBFS:g} dBFS, so its values describe no speech (column silent)"
POOL_BATCHES = 32
"""The windows of about this many batches are decoded, sorted by length and run together."""


@dataclass(frozen=True)
class Options:
    """How the engine cuts and batches audio. Only ``window`` and ``hop`` change a prediction."""

    batch_size: int = 8
    """Windows per forward pass."""
    window: float | None = None
    """Window length in seconds; None: the model's training crop."""
    hop: float | None = None
    """Seconds between window starts; None: half the window."""
    workers: int = 0
    """Threads that decode audio ahead of the model; 0 decodes in the calling thread."""

    def resolved(self, crop_seconds: float, min_samples: int) -> Options:
        """These options with the window and hop filled in; :class:`UserError` for options no run can use."""
        window = self.window or crop_seconds
        hop = self.hop or window / 2
        if self.batch_size < 1 or self.workers < 0:
            raise UserError(f"need batch size >= 1 and workers >= 0, got {self.batch_size} and {self.workers}")
        if not (math.isfinite(window) and 0 < hop <= window):
            raise UserError(f"need 0 < hop <= window, got window {window} s and hop {hop} s")
        if window * audio.SAMPLE_RATE < min_samples:
            raise UserError(
                f"window {window} s is shorter than the model's minimum input ({min_samples} samples at 16 kHz)"
            )
        return replace(self, window=window, hop=hop)


@dataclass
class Item:
    """A decoded source cut into window spans (start, end) in samples."""

    index: int
    name: str
    samples: np.ndarray
    spans: list[tuple[int, int]]
    segment: tuple[float, float] | None = None
    loudest: np.ndarray | None = None
    """dBFS of the loudest 25 ms frame of each span (:func:`emosphere.audio.loudest`)."""

    @property
    def seconds(self) -> float:
        """Audio the model hears for this source: its windows' seconds (overlaps counted twice)."""
        return sum(end - start for start, end in self.spans) / audio.SAMPLE_RATE


@dataclass
class Failure:
    """A source that was not predicted, and why (the message does not repeat the name)."""

    index: int
    name: str
    error: str


def aggregate(spans: np.ndarray, avd: np.ndarray, probs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A file's (3,) A/V/D on [0, 1] and (K,) region probabilities (or None) from its windows:
    the duration-weighted means of the windows' clipped A/V/D and of their probabilities."""
    spans = np.asarray(spans, np.float64).reshape(-1, 2)
    weights = spans[:, 1] - spans[:, 0]
    weights = weights / weights.sum()
    return weights @ np.clip(avd, 0.0, 1.0), None if probs is None else weights @ probs


@dataclass
class Prediction:
    """The model's outputs for one source: its windows (``spans`` in 16 kHz samples of the decoded
    audio, in time order), their A/V/D on [0, 1] as predicted, and their region probabilities (or None)."""

    index: int
    """Position of the source in the input."""
    name: str
    spans: np.ndarray
    avd: np.ndarray
    probs: np.ndarray | None
    segment: tuple[float, float] | None = None
    """(start, end) seconds in the file, for a :class:`emosphere.inputs.Segment`."""
    loudest: np.ndarray | None = None
    """dBFS of the loudest 25 ms frame of each window, in time order (None where not measured)."""

    @property
    def silent(self) -> bool:
        """No 25 ms frame of the source reaches :data:`emosphere.audio.SILENCE_DBFS`."""
        return self.loudest is not None and bool(np.all(self.loudest < audio.SILENCE_DBFS))

    def aggregate(self) -> tuple[np.ndarray, np.ndarray | None]:
        return aggregate(self.spans, self.avd, self.probs)

    @property
    def seconds(self) -> float:
        """Duration of the decoded audio (the last window ends at its end)."""
        return float(self.spans[:, 1].max()) / audio.SAMPLE_RATE

    def table(self, region_names: Sequence[str], regions: RegionSet) -> pd.DataFrame:
        """This prediction's rows: see :func:`emosphere.schema.rows`."""
        return schema.rows([self], region_names, regions)


def file_values(predictions: Sequence[Prediction]) -> tuple[np.ndarray, np.ndarray | None]:
    """The aggregated (n, 3) A/V/D on [0, 1] and (n, K) region probabilities (or None) of
    ``predictions``, in their order."""
    values = [p.aggregate() for p in predictions]
    if not values:
        return np.zeros((0, 3)), None
    avd = np.stack([avd for avd, _ in values])
    return avd, None if values[0][1] is None else np.stack([probs for _, probs in values])


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


@dataclass
class WindowBatch:
    waveform: np.ndarray
    """(batch, samples) raw 16 kHz float32, zero-padded."""
    lengths: np.ndarray
    """(batch,) int64 valid samples."""
    owner: np.ndarray
    """(batch,) int64 index of the source each window belongs to."""
    spans: np.ndarray
    """(batch, 2) int64 (start, end) of each window in its source, in samples."""


class Windowing:
    """Steps 1-3 of the rule, without a model: sources decoded, cut into windows and batched, for a
    model whose shortest input is ``min_samples`` and whose training crop is ``crop_seconds``."""

    def __init__(self, options: Options, min_samples: int, crop_seconds: float) -> None:
        self.options = options.resolved(crop_seconds, min_samples)
        self.min_samples = min_samples

    def decode(self, index: int, source: Source) -> Item | Failure:
        """Decode one source and plan its windows; any failure becomes a :class:`Failure` (a
        segment's message starts with ``segment <start>-<end> s:``)."""
        name = source_name(source)
        segment = (source.start, source.end) if isinstance(source, Segment) else None
        try:
            samples = audio.check_length(load_source(source), self.min_samples)
        except Exception as error:  # noqa: BLE001 - one bad file must not stop the run
            message = one_line(str(error)).removeprefix(f"{name}: ")
            if not isinstance(error, audio.AudioError):
                message = f"{type(error).__name__}: {message}"
            if segment is not None:
                message = f"segment {segment[0]}-{segment[1]} s: {message}"
            return Failure(index, name, message)
        spans = audio.windows(len(samples), self.options.window, self.options.hop)
        return Item(index, name, samples, spans, segment, audio.loudest(samples, spans))

    def decode_all(self, sources: Iterable[tuple[int, Source]], ahead: int = 0) -> Iterator[Item | Failure]:
        """Decode ``(index, source)`` pairs in order, in ``options.workers`` threads (soundfile and
        soxr release the GIL while they work) that keep up to ``ahead`` sources (at least two per
        worker) decoded or decoding ahead of the consumer."""
        workers = self.options.workers
        if workers <= 0:
            for index, source in sources:
                yield self.decode(index, source)
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="emosphere-decode") as pool:
            pending: deque = deque()
            for index, source in sources:
                pending.append(pool.submit(self.decode, index, source))
                if len(pending) >= max(ahead, 2 * workers):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def pools(self, decoded: Iterable[Item | Failure]) -> Iterator[list[Item | Failure]]:
        """Consecutive groups of decoded sources holding at least :data:`POOL_BATCHES` batches of
        windows (the last may hold fewer)."""
        pool: list[Item | Failure] = []
        count = 0
        for entry in decoded:
            pool.append(entry)
            count += len(entry.spans) if isinstance(entry, Item) else 0
            if count >= self.options.batch_size * POOL_BATCHES:
                yield pool
                pool, count = [], 0
        if pool:
            yield pool

    def batches(self, items: Sequence[Item]) -> Iterator[WindowBatch]:
        """The windows of ``items`` sorted by length, longest first, in zero-padded batches."""
        windows = [(item, span) for item in items for span in item.spans]
        lengths = np.array([end - start for _, (start, end) in windows], np.int64)
        order = np.argsort(-lengths, kind="stable")
        for first in range(0, len(order), self.options.batch_size):
            yield pad([windows[k] for k in order[first : first + self.options.batch_size]])


def pad(windows: Sequence[tuple[Item, tuple[int, int]]]) -> WindowBatch:
    """One zero-padded batch of (source, span) windows, in the order given."""
    lengths = np.array([end - start for _, (start, end) in windows], np.int64)
    waveform = np.zeros((len(windows), int(lengths.max())), np.float32)
    for row, (item, (start, end)) in enumerate(windows):
        waveform[row, : end - start] = item.samples[start:end]
    owner = np.array([item.index for item, _ in windows], np.int64)
    spans = np.array([span for _, span in windows], np.int64).reshape(-1, 2)
    return WindowBatch(waveform, lengths, owner, spans)


@dataclass
class WindowOutputs:
    """The backend's outputs for windows: each window's owner and span, A/V/D on [0, 1] as predicted,
    and region logits (or None)."""

    owner: np.ndarray
    spans: np.ndarray
    avd: np.ndarray
    logits: np.ndarray | None

    def select(self, rows: np.ndarray) -> WindowOutputs:
        """The outputs of the windows that ``rows`` (a boolean mask or indices) picks."""
        return WindowOutputs(
            self.owner[rows], self.spans[rows], self.avd[rows], None if self.logits is None else self.logits[rows]
        )


def assemble(
    owner: np.ndarray, spans: np.ndarray, avd: np.ndarray, probs: np.ndarray | None, names: Mapping[int, str]
) -> dict[int, Prediction]:
    """Window outputs (in any order, e.g. sorted by length or gathered from several processes)
    put back together into one :class:`Prediction` per owner, windows in time order."""
    if len(owner) == 0:
        return {}
    order = np.lexsort((spans[:, 0], owner))
    owner, spans, avd = owner[order], spans[order], avd[order]
    probs = None if probs is None else probs[order]
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    result = {}
    for first, stop in zip(starts, np.r_[starts[1:], len(owner)]):
        index = int(owner[first])
        window_probs = None if probs is None else probs[first:stop]
        result[index] = Prediction(index, names[index], spans[first:stop], avd[first:stop], window_probs)
    return result


class Predictor:
    """A backend and its options: the one way audio becomes predictions (see the module docstring)."""

    def __init__(self, backend: Backend, options: Options | None = None) -> None:
        self.backend = backend
        self.windowing = Windowing(options or Options(), backend.min_samples, backend.window_seconds)
        self.options = self.windowing.options

    @property
    def region_names(self) -> list[str]:
        return list(self.backend.region_names)

    @property
    def regions(self) -> RegionSet:
        """The model's region set: the classifier's classes, and the regions of ``region_point``."""
        return self.backend.regions

    @property
    def columns(self) -> list[str]:
        """The columns of this predictor's tables (:func:`emosphere.schema.columns`)."""
        return schema.columns(self.region_names)

    def decode(self, source: Source, index: int = 0) -> Item | Failure:
        """Step 1 for one source: see :meth:`Windowing.decode`."""
        return self.windowing.decode(index, source)

    def forward(self, batch: WindowBatch) -> WindowOutputs:
        """Run one batch of windows through the backend, then free the heap's pages (:mod:`emosphere.heap`)."""
        avd, logits = self.backend(batch.waveform, batch.lengths)
        release_freed_memory()
        return WindowOutputs(batch.owner, batch.spans, avd, logits)

    def collect(self, pool: Sequence[Item | Failure], outputs: Sequence[WindowOutputs]) -> list[Prediction | Failure]:
        """Each entry's :class:`Prediction` (or its :class:`Failure`), in pool order, from the outputs of
        all the windows of the pool's items (in any order, in any number of parts)."""
        items = [entry for entry in pool if isinstance(entry, Item)]
        predictions: dict[int, Prediction] = {}
        if outputs:
            probs = None if outputs[0].logits is None else softmax(np.concatenate([o.logits for o in outputs]))
            owner, spans, avd = (np.concatenate([getattr(o, k) for o in outputs]) for k in ("owner", "spans", "avd"))
            predictions = assemble(owner, spans, avd, probs, {i.index: i.name for i in items})
        for item in items:
            predictions[item.index].segment, predictions[item.index].loudest = item.segment, item.loudest
        return [entry if isinstance(entry, Failure) else predictions[entry.index] for entry in pool]

    def run(
        self, pool: Sequence[Item | Failure], on_batch: Callable[[WindowBatch], None] | None = None
    ) -> list[Prediction | Failure]:
        """Run the windows of a pool of decoded sources through the backend in length-sorted batches
        (calling ``on_batch`` after each); each entry's :class:`Prediction` (or its :class:`Failure`), in
        pool order."""
        outputs = []
        for batch in self.windowing.batches([entry for entry in pool if isinstance(entry, Item)]):
            outputs.append(self.forward(batch))
            if on_batch is not None:
                on_batch(batch)
        return self.collect(pool, outputs)

    def stream(
        self, sources: Iterable[tuple[int, Source]], *, total: int | None = None, progress: bool = False
    ) -> Iterator[Prediction | Failure]:
        """Predict ``(index, source)`` pairs (a lazy iterable is consumed as the run goes), yielding a
        :class:`Prediction` or :class:`Failure` for each, in input order, pool by pool; each result
        carries its pair's index. The next pool decodes in the worker threads while the model runs
        (a GPU waits less; the audio of two pools is in memory). The progress bar
        (:class:`emosphere.progress.Meter`) counts sources (of ``total``) and hours of audio, and
        estimates the time left from the audio, after every batch. A silent source is logged."""
        ahead = self.options.batch_size * POOL_BATCHES
        decoded = self.windowing.decode_all(sources, ahead=ahead)
        meter = Meter(total, enabled=progress)
        try:
            for pool in self.windowing.pools(decoded):
                meter.known(len(pool), sum(entry.seconds for entry in pool if isinstance(entry, Item)))
                for result in self.run(pool, on_batch=lambda batch: meter.batch(batch.lengths)):
                    meter.file(result.seconds if isinstance(result, Prediction) else 0.0)
                    if isinstance(result, Prediction) and result.silent:
                        log.warning("%s: %s", result.name, SILENT)
                    yield result
        finally:
            meter.close()

    def table(self, sources: Sequence[Source], *, progress: bool = False) -> pd.DataFrame:
        """All rows (:func:`emosphere.schema.rows`) of ``sources``, in input order. Failed sources are
        left out, logged, and listed as (name, error) pairs in ``table.attrs["errors"]``."""
        results = list(self.stream(enumerate(sources), total=len(sources), progress=progress))
        table = self.rows(r for r in results if not isinstance(r, Failure))
        table.attrs["errors"] = [(r.name, r.error) for r in results if isinstance(r, Failure)]
        for name, error in table.attrs["errors"]:
            log.warning("skipped %s: %s", name, error)
        return table

    def rows(self, predictions: Iterable[Prediction]) -> pd.DataFrame:
        """The table rows of predictions from :meth:`stream` (:func:`emosphere.schema.rows`)."""
        return schema.rows(predictions, self.region_names, self.regions)
