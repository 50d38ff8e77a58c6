"""Audio in: decode any file soundfile reads, mix down, resample, normalise, window.

The model hears 16 kHz mono float32, z-normalised with one global mean and
standard deviation measured over the training audio (:class:`AudioStats`,
stored with the model as JSON).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import UserError, first_line
from .io import write_text_atomic
from .names import one_line, readable

SAMPLE_RATE = 16_000
MIN_RATE, MAX_RATE = 1_000, 768_000
AUDIO_EXTENSIONS = frozenset(f".{fmt.lower()}" for fmt in sf.available_formats()) | {".oga", ".opus", ".aif"}


FRAME = 400
"""25 ms at 16 kHz: the frame of :func:`loudest` (and the shortest input of a WavLM encoder)."""
SILENCE_DBFS = -60.0
"""A span none of whose 25 ms frames reaches this level (dBFS RMS) holds no speech: it is flagged silent."""
NOT_FOUND = "not found"
EMPTY_FILE = "empty file (0 bytes)"
EMPTY_AUDIO = "empty audio (0 samples)"
"""The words for a missing file, a file of no bytes, and audio of no samples (a header alone), the
same in ``emosphere predict``, the service and the docs."""
DECODE_ERRORS = (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError)
"""What soundfile raises for a file it cannot open or decode (TypeError: a headerless .raw file)."""


class AudioError(UserError, ValueError):
    """Audio that cannot be used; the message names the file."""


def to_mono_16k(samples: np.ndarray, sampling_rate: int) -> np.ndarray:
    """Mix (frames, channels) or (frames,) audio down to mono and resample it to 16 kHz."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)
    elif samples.ndim != 1:
        raise AudioError(f"expected (samples,) or (samples, channels) audio, got shape {samples.shape}")
    if sampling_rate != SAMPLE_RATE:
        samples = soxr.resample(samples, sampling_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return samples


def _native(path: str | os.PathLike) -> str | bytes:
    """``path`` as soundfile can open it: on POSIX its bytes (soundfile encodes a text path as strict
    UTF-8, which refuses names that are not UTF-8), elsewhere its text."""
    return os.fsencode(path) if os.name == "posix" else os.fspath(path)


def load(path: str | os.PathLike, max_seconds: float | None = None, offset: float = 0.0) -> np.ndarray:
    """Decode a file to 16 kHz mono float32 from ``offset`` seconds on (seeking there, without
    decoding what comes before), keeping at most ``max_seconds``. A missing file is ``not found``,
    a file of 0 bytes an ``empty file``, one without samples ``empty audio``; messages name the file as
    :func:`emosphere.names.readable` does."""
    name = readable(path)
    try:
        if os.stat(path).st_size == 0:
            raise AudioError(f"{name}: {EMPTY_FILE}")
        with sf.SoundFile(_native(path)) as f:
            rate = f.samplerate
            if not plausible_rate(rate):  # a damaged header; resampling it could exhaust memory
                raise AudioError(f"{name}: implausible sample rate {rate} Hz")
            first = int(round(offset * rate))
            if first >= f.frames > 0:
                raise AudioError(f"{name}: starts at {offset} s, after the end of the audio ({f.frames / rate} s)")
            if first:
                f.seek(first)
            frames = -1 if max_seconds is None else int(math.ceil(max_seconds * rate))
            samples = f.read(frames=frames, dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise AudioError(f"{name}: {NOT_FOUND}") from None
    except DECODE_ERRORS as error:
        if isinstance(error, AudioError):
            raise
        reason = getattr(error, "error_string", None) or one_line(str(error))
        raise AudioError(f"{name}: cannot read audio ({reason})") from error
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    samples = to_mono_16k(samples, rate)
    if max_seconds is not None:
        samples = samples[: int(round(max_seconds * SAMPLE_RATE))]
    if len(samples) == 0:
        raise AudioError(f"{name}: {EMPTY_AUDIO}")
    return samples


def blocks(
    path: str | os.PathLike, block_seconds: float = 30.0, offset: float = 0.0, duration: float | None = None
) -> Iterator[np.ndarray]:
    """A file's audio from ``offset`` seconds on (at most ``duration`` seconds) as consecutive 16 kHz
    mono float32 blocks of about ``block_seconds``, decoded and resampled (soxr's streaming
    resampler) a block at a time: memory does not grow with the file. Raises :class:`AudioError`."""
    try:
        with sf.SoundFile(str(path)) as f:
            rate = f.samplerate
            if not plausible_rate(rate):
                raise AudioError(f"{path}: implausible sample rate {rate} Hz")
            if offset:
                f.seek(int(round(offset * rate)))
            left = math.inf if duration is None else int(round(duration * rate))
            stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32") if rate != SAMPLE_RATE else None
            size = max(1, int(block_seconds * rate))
            while left > 0:
                block = f.read(frames=int(min(size, left)), dtype="float32", always_2d=True)
                left -= len(block)
                last = len(block) < size or left <= 0
                if not np.isfinite(block).all():
                    raise AudioError(f"{path}: audio contains NaN or infinite samples")
                mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
                yield mono if stream is None else stream.resample_chunk(mono, last=last)
                if last:
                    break
    except DECODE_ERRORS as error:
        if isinstance(error, AudioError):
            raise
        raise AudioError(f"{path}: cannot read audio ({error})") from error


def plausible_rate(rate: int) -> bool:
    """Whether a header's sample rate is one that real audio has (1 kHz to 768 kHz)."""
    return MIN_RATE <= rate <= MAX_RATE


def check_length(samples: np.ndarray, min_samples: int) -> np.ndarray:
    """Return ``samples``, or raise :class:`AudioError` if there are none (``empty audio``) or they are
    fewer than the model's minimum (``too short``)."""
    if len(samples) == 0:
        raise AudioError(EMPTY_AUDIO)
    if len(samples) < min_samples:
        n, per_ms = len(samples), SAMPLE_RATE / 1000
        raise AudioError(
            f"too short: {n} samples ({n / per_ms:.1f} ms at 16 kHz); "
            f"the model needs at least {min_samples} ({min_samples / per_ms:.1f} ms)"
        )
    return samples


def loudest(samples: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """The level of the loudest 25 ms frame (frames from the start of ``samples``, 16 kHz) of each
    (start, end) span, in dBFS: 20 log10 of the frame's RMS, 1.0 being full scale (-inf for zeros)."""
    whole = len(samples) // FRAME
    frames = samples[: whole * FRAME].reshape(whole, FRAME)
    power = np.einsum("ij,ij->i", frames, frames) / FRAME
    if len(samples) > whole * FRAME:
        tail = samples[whole * FRAME :]
        power = np.append(power, np.dot(tail, tail) / len(tail))
    peaks = [power[start // FRAME : max(-(-end // FRAME), start // FRAME + 1)].max() for start, end in spans]
    with np.errstate(divide="ignore"):
        return 10 * np.log10(np.asarray(peaks, np.float64))


def windows(num_samples: int, window_seconds: float, hop_seconds: float) -> list[tuple[int, int]]:
    """(start, end) sample spans covering a signal: one span if it fits in a window,
    else windows every hop, the last one aligned to the end so that no audio is lost."""
    window = int(round(window_seconds * SAMPLE_RATE))
    hop = int(round(hop_seconds * SAMPLE_RATE))
    if window <= 0 or hop <= 0:
        raise ValueError("window and hop must be positive")
    if num_samples <= window:
        return [(0, num_samples)]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return [(s, s + window) for s in starts]


@dataclass(frozen=True)
class AudioStats:
    """Global mean and standard deviation of the training audio samples (16 kHz mono)."""

    mean: float
    std: float
    num_samples: int
    num_files: int

    def normalise(self, samples: np.ndarray) -> np.ndarray:
        return ((samples - self.mean) / self.std).astype(np.float32)

    def save(self, path: str | os.PathLike) -> None:
        write_text_atomic(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> AudioStats:
        """Statistics saved by :meth:`save`; anything else is an :class:`AudioError` naming ``path``."""
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as error:
            raise AudioError(
                f"{path}: not audio statistics written by emosphere ({first_line(error)}); "
                "delete it to measure them again"
            ) from None


class StatsAccumulator:
    """Running sums for :class:`AudioStats`, in float64 so that hours of audio stay exact."""

    def __init__(self) -> None:
        self.total = 0.0
        self.total_sq = 0.0
        self.count = 0
        self.files = 0

    def add(self, samples: np.ndarray) -> None:
        samples = samples.astype(np.float64)
        self.total += float(samples.sum())
        self.total_sq += float(np.square(samples).sum())
        self.count += samples.size
        self.files += 1

    def result(self) -> AudioStats:
        if self.count == 0:
            raise ValueError("no audio to compute normalisation statistics from")
        mean = self.total / self.count
        variance = max(self.total_sq / self.count - mean * mean, 0.0)
        return AudioStats(mean=mean, std=max(math.sqrt(variance), 1e-8), num_samples=self.count, num_files=self.files)
