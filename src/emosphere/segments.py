"""Speech segments: each recording split into speech regions by the VAD, each region predicted by the engine.

``--segments vad`` (:class:`SpeechPredictor`): a source (a file, a segment of
one, or an array) is read in blocks and fed to a
:class:`emosphere.vad.SpeechDetector`; every speech region it finds becomes a
:class:`emosphere.inputs.Segment` of the file (a slice, for an array) and goes
through :meth:`emosphere.engine.Predictor.stream` like any segment: read
alone, cut into windows when longer than one, batched, aggregated. So a
region's values are those ``emosphere predict`` gives for a manifest row with
its start and end. Regions are predicted while the VAD reads on, and neither
the VAD nor the engine holds more than a block or a pool of regions: an hour
of audio runs in bounded memory.

A recording's rows (:meth:`SpeechPredictor.rows`, columns
:func:`emosphere.schema.speech_columns`): its own row (``level`` "file", or
"segment" for a segment source) with ``speech_seconds`` and ``status``; its
values aggregate speech only (the duration-weighted mean of the clipped
windows of all its regions); with no speech, ``status`` is "no speech" and the
values are empty. Then one row per region (``level`` "speech"), each followed
by its windows' rows when it has several. ``--segments fixed`` is the engine
alone: windows over the whole recording, silence included.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from . import audio, schema
from .engine import Failure, Prediction, Predictor
from .errors import UserError
from .inputs import ArraySource, Segment, Source, load_source, source_name
from .vad import SileroFrames, SpeechDetector, VadSettings

log = logging.getLogger(__name__)

SEGMENTATIONS = ("fixed", "vad")
"""``fixed``: windows over the whole recording; ``vad``: windows over the speech the VAD finds."""
BLOCK_SECONDS = 30.0
"""Seconds of a file decoded at a time for the VAD."""
SPEECH_LEVEL = "speech"
"""The ``level`` of a speech region's row."""
NO_SPEECH = "no speech"


@dataclass
class SpeechPrediction:
    """A recording's speech regions, each a :class:`Prediction` whose ``segment`` is its (start,
    end) in seconds of the file, in time order."""

    index: int
    name: str
    bounds: tuple[float, float]
    """(start, end) seconds of the recording in its file: (0, duration), or the segment's."""
    level: str
    """"file", or "segment" for a segment source."""
    regions: list[Prediction] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.bounds[1] - self.bounds[0]

    @property
    def speech_seconds(self) -> float:
        return sum(r.segment[1] - r.segment[0] for r in self.regions)

    def merged(self) -> Prediction:
        """All regions' windows as one prediction of the recording (spans in its samples)."""
        first = int(round(self.bounds[0] * audio.SAMPLE_RATE))
        spans = [r.spans + int(round(r.segment[0] * audio.SAMPLE_RATE)) - first for r in self.regions]
        probs = None if self.regions[0].probs is None else np.concatenate([r.probs for r in self.regions])
        avd = np.concatenate([r.avd for r in self.regions])
        measured = all(r.loudest is not None for r in self.regions)
        loudest = np.concatenate([r.loudest for r in self.regions]) if measured else None
        return Prediction(self.index, self.name, np.concatenate(spans), avd, probs, loudest=loudest)

    def aggregate(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The speech-only (3,) A/V/D on [0, 1] and (K,) probabilities; raises on a recording without speech."""
        if not self.regions:
            raise ValueError(f"{self.name}: no speech")
        return self.merged().aggregate()


@dataclass
class _Plan:
    """A recording on its way through the VAD and the engine."""

    index: int
    name: str
    level: str
    bounds: tuple[float, float] = (0.0, 0.0)
    spans: list[tuple[float, float]] = field(default_factory=list)
    """The regions found so far, (start, end) seconds in the file."""
    results: list[Prediction | Failure] = field(default_factory=list)
    done: bool = False
    """The VAD has read the whole recording (or failed: ``error``)."""
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.done and len(self.results) == len(self.spans)

    def result(self) -> SpeechPrediction | Failure:
        failed = [r for r in self.results if isinstance(r, Failure)]
        if self.error is not None or failed:
            return Failure(self.index, self.name, self.error if self.error is not None else failed[0].error)
        for region, span in zip(self.results, self.spans):
            region.segment = span  # arrays' regions are slices, without one
        return SpeechPrediction(self.index, self.name, self.bounds, self.level, list(self.results))


def _blocks(source: Source) -> tuple[tuple[float, float], Iterable[np.ndarray], np.ndarray | None]:
    """A source's (start, end) seconds in its file, its audio as 16 kHz blocks, and, for an array,
    its samples (its one block)."""
    if isinstance(source, Segment):
        duration = source.end - source.start
        return (source.start, source.end), audio.blocks(source.path, BLOCK_SECONDS, source.start, duration), None
    if isinstance(source, str):
        try:
            info = sf.info(source)
        except audio.DECODE_ERRORS as error:
            raise audio.AudioError(f"{source}: cannot read audio ({error})") from error
        return (0.0, info.frames / info.samplerate), audio.blocks(source, BLOCK_SECONDS), None
    samples = load_source(source)
    return (0.0, len(samples) / audio.SAMPLE_RATE), [samples], samples


class SpeechPredictor(Predictor):
    """A :class:`Predictor` behind a VAD (see the module docstring), with the same entry points."""

    def __init__(self, predictor: Predictor, settings: VadSettings | None = None) -> None:
        super().__init__(predictor.backend, predictor.options)
        self.settings = settings or VadSettings()
        SileroFrames.load_session()  # a missing VAD is a usage error now, before any work

    @property
    def columns(self) -> list[str]:
        return schema.speech_columns(self.region_names)

    def _regions(self, sources: Iterable[tuple[int, Source]], plans: deque[_Plan]) -> Iterator[tuple[int, Source]]:
        """Each source's speech regions as sources for the engine, numbered, as the VAD finds them;
        each source's plan is appended to ``plans`` as its reading starts."""
        number = itertools.count()
        for index, source in sources:
            name = source_name(source)
            plan = _Plan(index, name, "segment" if isinstance(source, Segment) else "file")
            plans.append(plan)
            try:
                plan.bounds, blocks, samples = _blocks(source)
                detector = SpeechDetector(self.settings)
                for block in itertools.chain(blocks, [None]):  # None: the end
                    for start, end in detector.feed(block) if block is not None else detector.finish():
                        span = (plan.bounds[0] + start / audio.SAMPLE_RATE, plan.bounds[0] + end / audio.SAMPLE_RATE)
                        plan.spans.append(span)
                        yield next(number), self._source(source, span, samples)
            except Exception as error:  # noqa: BLE001 - one bad file must not stop the run
                message = str(error).removeprefix(f"{name}: ")
                plan.error = message if isinstance(error, audio.AudioError) else f"{type(error).__name__}: {message}"
            plan.done = True

    @staticmethod
    def _source(source: Source, span: tuple[float, float], samples: np.ndarray | None) -> Source:
        """The source of one region: a segment of the file, or a slice of the array."""
        if samples is None:
            return Segment(source_name(source), *span)
        first, last = (int(round(t * audio.SAMPLE_RATE)) for t in span)
        return ArraySource(source_name(source), samples[first:last], audio.SAMPLE_RATE)

    def stream(
        self, sources: Iterable[tuple[int, Source]], *, total: int | None = None, progress: bool = False
    ) -> Iterator[SpeechPrediction | Failure]:
        """Predict ``(index, source)`` pairs: a :class:`SpeechPrediction` or :class:`Failure` for each,
        in input order. The progress bar counts seconds of audio (the total grows as recordings
        are opened) and shows recordings done (of ``total``)."""
        plans: deque[_Plan] = deque()
        bar = tqdm(desc="predict", unit="s", unit_scale=True, disable=not progress)
        finished, seconds = 0, 0.0

        def complete() -> Iterator[SpeechPrediction | Failure]:
            nonlocal finished, seconds
            while plans and plans[0].complete:
                plan = plans.popleft()
                finished, seconds = finished + 1, seconds + plan.bounds[1] - plan.bounds[0]
                bar.n = seconds
                bar.set_postfix_str(f"{finished}{'' if total is None else f' of {total}'} recordings", False)
                yield plan.result()

        with bar:
            for result in super().stream(self._regions(sources, plans)):
                yield from complete()
                plans[0].results.append(result)  # the first plan not complete owns the next result
                bar.n = seconds + plans[0].spans[len(plans[0].results) - 1][1] - plans[0].bounds[0]
                yield from complete()
                bar.total = seconds + sum(p.bounds[1] - p.bounds[0] for p in plans)
                bar.refresh()
            yield from complete()  # those without speech after the last region

    def rows(self, predictions: Iterable[SpeechPrediction]) -> pd.DataFrame:
        """The rows of each recording (see the module docstring), columns :attr:`columns`."""
        names, parts = self.region_names, []
        for p in predictions:
            head = (
                schema.rows([p.merged()], names, self.regions).iloc[:1]
                if p.regions
                else pd.DataFrame({"file": [p.name]})
            )
            head = head.assign(level=p.level, start=p.bounds[0], end=p.bounds[1], speech_seconds=p.speech_seconds,
                               status="ok" if p.regions else NO_SPEECH)  # fmt: skip
            parts.append(head)
            if p.regions:
                body = schema.rows(p.regions, names, self.regions)
                body["level"] = body["level"].where(body["level"] != "segment", SPEECH_LEVEL)
                parts.append(body.assign(status="ok"))
        return pd.concat(parts or [pd.DataFrame(columns=self.columns)], ignore_index=True).reindex(columns=self.columns)


def with_segments(predictor: Predictor, segments: str = "fixed", settings: VadSettings | None = None) -> Predictor:
    """``predictor`` itself for ``fixed`` segments, or behind the VAD for ``vad`` (a :class:`SpeechPredictor`)."""
    if segments not in SEGMENTATIONS:
        raise UserError(f"unknown segments {segments!r}; use one of {', '.join(SEGMENTATIONS)}")
    return predictor if segments == "fixed" else SpeechPredictor(predictor, settings)
