"""The one inference path: audio in, named arousal, valence and dominance out.

Every number emosphere reports for a file comes through here: ``emosphere
predict``, ``emosphere evaluate``, :meth:`EmoSphereSER.predict`, the service
and training's development pass. The rule, the same everywhere:

1. **Decode** (:func:`emosphere.inputs.load_source`): any file soundfile
   reads, a segment of one, or an array; mixed down to mono, resampled to
   16 kHz. A source that
   cannot be decoded, or is shorter than the model's minimum input (400
   samples, 25 ms, for WavLM), is not predicted: it becomes a
   :class:`Failure` naming it, and the job goes on.
2. **Windows** (:func:`emosphere.audio.windows`): audio of up to
   :data:`WINDOW_SECONDS` (12 s, the training crop) is one window; longer
   audio is cut into windows of that length every :data:`HOP_SECONDS` (6 s),
   the last one aligned to the end.
3. **Batches** (:func:`window_batches`): the windows of a pool of sources are
   sorted by length and zero-padded into batches; the model masks padding,
   so batching never changes a prediction.
4. **Aggregate** (:func:`aggregate`): each window's A/V/D on [0, 1] is
   clipped to [0, 1]; a file's value is the duration-weighted mean of its
   windows' clipped values, and its region probabilities the
   duration-weighted mean of theirs. Scores (CCC) use the file values.
5. **Describe** (:func:`describe`): named columns on stated scales; a
   source's row (level ``file``, or ``segment`` for a segment) then, when
   there are several windows, one row per window, with ``start`` and ``end``
   in seconds from the beginning of the file (:func:`rows`).

Sources may come as a lazy stream (:func:`predict_sources` consumes it as it
goes): a run holds the decoded audio of one pool of sources at a time.

A model runs behind a :class:`Backend`: :class:`TorchBackend` here, or
:class:`emosphere.runtime.OnnxModel`. This module imports torch only inside
:class:`TorchBackend`, so the ONNX path runs without torch.
"""

from __future__ import annotations

import contextlib
import logging
import time
import typing
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import audio
from .config import InferencePrecision
from .inputs import InputError, Segment, Source, load_source, source_name
from .sphere import DIMENSIONS, centre, from_unit, to_spherical, to_unit

if TYPE_CHECKING:
    from .model import EmoSphereSER

log = logging.getLogger(__name__)

WINDOW_SECONDS = 12.0
"""Default window: the training crop length."""
HOP_SECONDS = 6.0
"""Default hop: windows overlap by half."""
POOL_BATCHES = 32
"""The windows of about this many batches are decoded, sorted by length and run together."""
PRECISIONS = typing.get_args(InferencePrecision)
TABLE_KEYS = ["file", "level", "start", "end"]


class Backend(Protocol):
    """A model behind numpy arrays: raw 16 kHz ``waveform`` (batch, samples) float32, zero-padded,
    and ``lengths`` (batch,) int64 -> (avd (batch, 3) on [0, 1], region logits (batch, K) or None).
    ``region_names``: the K regions, empty when there are no region logits."""

    @property
    def region_names(self) -> list[str]: ...

    @property
    def min_samples(self) -> int: ...

    def __call__(self, waveform: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """Full fp32 matrix products and convolutions on CUDA (no TF32) inside the block: TF32 rounds
    differently for each batch shape, which would let batching change a prediction."""
    import torch

    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


class TorchBackend:
    """An :class:`EmoSphereSER` on ``device``, in eval mode, as a :class:`Backend`.

    ``precision``: ``fp32`` (exact: TF32 off on CUDA), or ``bf16`` / ``fp16`` autocast
    (faster on GPUs; docs/benchmarks.md gives the measured deviation from fp32).
    """

    def __init__(self, model: EmoSphereSER, device: Any = "cpu", precision: str = "fp32") -> None:
        import torch

        if precision not in PRECISIONS:
            raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        self.precision = precision
        self.model = model.to(self.device).eval()

    @property
    def region_names(self) -> list[str]:
        """The columns of the region logits; none without a region head (as :class:`OnnxModel`)."""
        return self.model.region_names if self.model.region_head is not None else []

    @property
    def min_samples(self) -> int:
        return self.model.min_samples

    def _precision(self) -> contextlib.AbstractContextManager:
        import torch

        if self.precision == "fp32":
            return exact_fp32()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def __call__(self, waveform: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        with torch.inference_mode(), self._precision():
            out = self.model(torch.from_numpy(waveform).to(self.device), torch.from_numpy(lengths).to(self.device))
        logits = None if out.region_logits is None else out.region_logits.float().cpu().numpy()
        return out.avd.float().cpu().numpy(), logits


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def describe(avd_unit: np.ndarray, region_probs: np.ndarray | None, region_names: Sequence[str]) -> pd.DataFrame:
    """The named output columns for (n, 3) predictions on [0, 1]:

    * ``arousal``, ``valence``, ``dominance``: the 1-7 scale of MSP-Podcast, clipped;
    * ``arousal_unit``, ``valence_unit``, ``dominance_unit``: the same on [0, 1];
    * ``r``, ``theta``, ``phi``: the centred point in spherical coordinates
      (r >= 0; theta in [0, pi] and phi in (-pi, pi], radians);
    * ``region`` (the most probable region's name) and ``p_<region>`` (the
      probabilities), when ``region_probs`` is given.
    """
    scaled = from_unit(avd_unit)
    table = pd.DataFrame(scaled, columns=list(DIMENSIONS))
    table[[f"{d}_unit" for d in DIMENSIONS]] = to_unit(scaled)
    table[["r", "theta", "phi"]] = to_spherical(centre(scaled))
    if region_probs is not None:
        table["region"] = np.asarray(region_names)[region_probs.argmax(1)]
        table[[f"p_{name}" for name in region_names]] = region_probs
    return table


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

    def aggregate(self) -> tuple[np.ndarray, np.ndarray | None]:
        return aggregate(self.spans, self.avd, self.probs)

    @property
    def seconds(self) -> float:
        """Duration of the decoded audio (the last window ends at its end)."""
        return float(self.spans[:, 1].max()) / audio.SAMPLE_RATE

    def table(self, region_names: Sequence[str]) -> pd.DataFrame:
        """This prediction's rows: see :func:`rows`."""
        return rows([self], region_names)


def file_values(predictions: Sequence[Prediction]) -> tuple[np.ndarray, np.ndarray | None]:
    """The aggregated (n, 3) A/V/D on [0, 1] and (n, K) region probabilities (or None) of
    ``predictions``, in their order."""
    values = [p.aggregate() for p in predictions]
    if not values:
        return np.zeros((0, 3)), None
    avd = np.stack([avd for avd, _ in values])
    return avd, None if values[0][1] is None else np.stack([probs for _, probs in values])


@dataclass
class Failure:
    """A source that was not predicted, and why (the message does not repeat the name)."""

    index: int
    name: str
    error: str


def rows(predictions: Iterable[Prediction], region_names: Sequence[str]) -> pd.DataFrame:
    """The rows of every prediction, in the order given (the columns and no rows when there are none).
    Each source gets its row, then, when it has several windows, one row per window (``level``
    "window"). A whole file's row has ``level`` "file" and spans 0 to its duration; a segment's
    has ``level`` "segment" and spans the segment as given. ``start`` and ``end`` are seconds from
    the beginning of the file, for window rows too."""
    files, levels, bounds, avd, probs = [], [], [], [], []
    for p in predictions:
        windows = p.spans.astype(np.float64) / audio.SAMPLE_RATE
        offset = 0.0 if p.segment is None else p.segment[0]
        source_avd, source_probs = p.aggregate()
        count = 1 + len(windows) if len(windows) > 1 else 1
        files += [p.name] * count
        levels += ["file" if p.segment is None else "segment"] + ["window"] * (count - 1)
        bounds += [[0.0, windows[:, 1].max()] if p.segment is None else list(p.segment)]
        avd.append(source_avd[None])
        probs.append(None if source_probs is None else source_probs[None])
        if count > 1:
            bounds += (windows + offset).tolist()
            avd.append(np.clip(p.avd, 0.0, 1.0))
            probs.append(p.probs)
    keys = pd.DataFrame({"file": files, "level": levels, **dict(zip(TABLE_KEYS[2:], np.reshape(bounds, (-1, 2)).T))})
    if not avd:
        empty = np.zeros((0, len(region_names))) if len(region_names) else None
        return pd.concat([keys, describe(np.zeros((0, 3)), empty, region_names)], axis=1)
    return pd.concat(
        [keys, describe(np.concatenate(avd), None if probs[0] is None else np.concatenate(probs), region_names)], axis=1
    )


# --- decoding, pools and batches ---------------------------------------------------------------


@dataclass
class Item:
    """A decoded source cut into window spans (start, end) in samples."""

    index: int
    name: str
    samples: np.ndarray
    spans: list[tuple[int, int]]
    segment: tuple[float, float] | None = None


def decode(index: int, source: Source, *, min_samples: int, window: float, hop: float) -> Item | Failure:
    """Decode one source and plan its windows; any failure becomes a :class:`Failure` (a segment's
    message starts with ``segment <start>-<end> s:``)."""
    name = source_name(source)
    segment = (source.start, source.end) if isinstance(source, Segment) else None
    try:
        samples = audio.check_length(load_source(source), min_samples)
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the run
        message = str(error).removeprefix(f"{name}: ")
        if not isinstance(error, audio.AudioError):
            message = f"{type(error).__name__}: {message}"
        if segment is not None:
            message = f"segment {segment[0]}-{segment[1]} s: {message}"
        return Failure(index, name, message)
    return Item(index, name, samples, audio.windows(len(samples), window, hop), segment)


def decode_all(
    sources: Iterable[tuple[int, Source]],
    *,
    min_samples: int,
    window: float,
    hop: float,
    workers: int = 0,
    ahead: int = 0,
) -> Iterator[Item | Failure]:
    """Decode ``(index, source)`` pairs in order, in ``workers`` threads (soundfile and soxr release
    the GIL while they work) that keep up to ``ahead`` sources (at least ``2 * workers``) decoded
    or decoding ahead of the consumer; 0 workers decode in the calling thread."""
    options = {"min_samples": min_samples, "window": window, "hop": hop}
    if workers <= 0:
        for index, source in sources:
            yield decode(index, source, **options)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="emosphere-decode") as pool:
        ahead_of: deque = deque()
        for index, source in sources:
            ahead_of.append(pool.submit(decode, index, source, **options))
            if len(ahead_of) >= max(ahead, 2 * workers):
                yield ahead_of.popleft().result()
        while ahead_of:
            yield ahead_of.popleft().result()


def pools(decoded: Iterable[Item | Failure], windows: int) -> Iterator[list[Item | Failure]]:
    """Consecutive groups of decoded sources holding at least ``windows`` windows (the last may hold fewer)."""
    pool: list[Item | Failure] = []
    count = 0
    for entry in decoded:
        pool.append(entry)
        count += len(entry.spans) if isinstance(entry, Item) else 0
        if count >= windows:
            yield pool
            pool, count = [], 0
    if pool:
        yield pool


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


def window_batches(items: Sequence[Item], batch_size: int) -> Iterator[WindowBatch]:
    """The windows of ``items`` sorted by length, longest first, in zero-padded batches."""
    windows = [(item, span) for item in items for span in item.spans]
    lengths = np.array([end - start for _, (start, end) in windows], np.int64)
    order = np.argsort(-lengths, kind="stable")
    for first in range(0, len(order), batch_size):
        chosen = order[first : first + batch_size]
        waveform = np.zeros((len(chosen), int(lengths[chosen].max())), np.float32)
        for row, k in enumerate(chosen):
            item, (start, end) = windows[k]
            waveform[row, : end - start] = item.samples[start:end]
        yield WindowBatch(
            waveform,
            lengths[chosen],
            np.array([windows[k][0].index for k in chosen], np.int64),
            np.array([windows[k][1] for k in chosen], np.int64).reshape(-1, 2),
        )


def group(
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
        result[index] = Prediction(
            index, names[index], spans[first:stop], avd[first:stop], None if probs is None else probs[first:stop]
        )
    return result


def predict_pool(backend: Backend, pool: list[Item | Failure], batch_size: int) -> Iterator[Prediction | Failure]:
    """Run the windows of a pool of decoded sources through ``backend`` in length-sorted batches;
    yields each entry's :class:`Prediction` (or its :class:`Failure`), in pool order."""
    items = [entry for entry in pool if isinstance(entry, Item)]
    outputs = [(batch, *backend(batch.waveform, batch.lengths)) for batch in window_batches(items, batch_size)]
    predictions: dict[int, Prediction] = {}
    if outputs:
        batches, avd, logits = zip(*outputs)
        probs = None if logits[0] is None else softmax(np.concatenate(logits))
        predictions = group(
            np.concatenate([b.owner for b in batches]),
            np.concatenate([b.spans for b in batches]),
            np.concatenate(avd),
            probs,
            {item.index: item.name for item in items},
        )
    for entry in pool:
        if isinstance(entry, Failure):
            yield entry
        else:
            predictions[entry.index].segment = entry.segment
            yield predictions[entry.index]


def check_options(backend: Backend, *, batch_size: int, window: float, hop: float, workers: int = 0) -> None:
    """Raise :class:`InputError` for options no run can use."""
    if batch_size < 1 or workers < 0:
        raise InputError(f"need batch size >= 1 and workers >= 0, got {batch_size} and {workers}")
    if not 0 < hop <= window:
        raise InputError(f"need 0 < hop <= window, got window {window} s and hop {hop} s")
    if window * audio.SAMPLE_RATE < backend.min_samples:
        raise InputError(
            f"window {window} s is shorter than the model's minimum input ({backend.min_samples} samples at 16 kHz)"
        )


def predict_sources(
    backend: Backend, sources: Iterable[Source], *, total: int | None = None, **options: Any
) -> Iterator[Prediction | Failure]:
    """Predict every source, yielding a :class:`Prediction` or :class:`Failure` for each, in input
    order, pool by pool; each result's ``index`` is its source's position. ``sources`` may be a
    lazy iterable, consumed as the run goes. ``total`` defaults to ``len(sources)`` when it has
    one; ``options``: as :func:`predict_indexed`."""
    if total is None and isinstance(sources, Sized):
        total = len(sources)
    return predict_indexed(backend, enumerate(sources), total=total, **options)


def predict_indexed(
    backend: Backend,
    sources: Iterable[tuple[int, Source]],
    *,
    batch_size: int = 8,
    window: float | None = None,
    hop: float | None = None,
    workers: int = 0,
    progress: bool = False,
    total: int | None = None,
) -> Iterator[Prediction | Failure]:
    """:func:`predict_sources` for ``(index, source)`` pairs: each result carries its pair's
    ``index``. ``window`` and ``hop`` default to :data:`WINDOW_SECONDS` and :data:`HOP_SECONDS`;
    ``workers`` threads decode up to a pool ahead, while the model runs (a GPU waits less; the
    audio of two pools is in memory). The progress bar counts sources (of ``total``, with an ETA),
    and shows the hours of audio predicted and their rate in audio hours per hour. Bad options
    raise :class:`InputError` here, before anything runs."""
    window = WINDOW_SECONDS if window is None else window
    hop = HOP_SECONDS if hop is None else hop
    check_options(backend, batch_size=batch_size, window=window, hop=hop, workers=workers)
    decoded = decode_all(
        sources,
        min_samples=backend.min_samples,
        window=window,
        hop=hop,
        workers=workers,
        ahead=batch_size * POOL_BATCHES,
    )  # the next pool decodes while the model runs

    def run() -> Iterator[Prediction | Failure]:
        seconds, started = 0.0, time.monotonic()
        with tqdm(total=total, desc="predict", unit="file", disable=not progress) as bar:
            for pool in pools(decoded, batch_size * POOL_BATCHES):
                for result in predict_pool(backend, pool, batch_size):
                    seconds += result.seconds if isinstance(result, Prediction) else 0.0
                    bar.update()
                    yield result
                rate = seconds / max(time.monotonic() - started, 1e-9)
                bar.set_postfix_str(f"{seconds / 3600:.3f} h of audio, {rate:.0f} h/h", refresh=False)

    return run()


def predict_table(backend: Backend, sources: Sequence[Source], **options: Any) -> pd.DataFrame:
    """All rows (see :meth:`Prediction.table`) in input order (``options`` as
    :func:`predict_sources`). Failed sources are left out and listed as (name, error) pairs in
    ``table.attrs["errors"]`` (and logged)."""
    results = list(predict_sources(backend, sources, **options))
    table = rows((r for r in results if isinstance(r, Prediction)), backend.region_names)
    table.attrs["errors"] = [(r.name, r.error) for r in results if isinstance(r, Failure)]
    for name, error in table.attrs["errors"]:
        log.warning("skipped %s: %s", name, error)
    return table
