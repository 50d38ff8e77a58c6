"""Live speech: 16 kHz PCM from a microphone in, arousal, valence and dominance every hop out.

The logic behind ``emosphere serve``'s WebSocket ``/stream`` (docs/serve.md has
the protocol). A :class:`Session` holds one stream's state: the last seconds
of audio (a bounded buffer) and a :class:`emosphere.vad.SpeechDetector` fed
with everything received, in arrival order. Every ``hop`` seconds of stream
time (at sample ``t = k * hop * 16000``, with the detector having seen exactly
the samples before ``t``), the hop's **stretch** is fixed:

* the speech region in progress at ``t`` (from its padded start), or else the
  last region that ended within the hop, ``(t - hop, t]``; none: the answer is
  "no speech";
* of that region, the last ``context`` seconds up to ``t`` (or to the region's
  end): ``[max(start, end - context), end)``.

That stretch of samples goes through the engine like an upload
(:meth:`emosphere.engine.Predictor.decode`, then the service's one model
thread), so each hop's values are those ``emosphere predict`` gives for the
same stretch of the recording (a segment row with the answer's ``start`` and
``end``): the stretch is at most one window, predicted alone.

Backpressure (:class:`Live`): a stream has at most one hop with the model and
one waiting. A hop that comes while another waits replaces it, and the answer
counts the hops merged away (``skipped``); a hop the model queue refuses (the
service's ``max_pending``) is skipped too. Nothing queues without bound, and a
stream that disconnects is forgotten at once (its waiting hop cancelled). A
client that ends with the text ``{"type": "end"}`` gets the answers of the
hops it completed, then a normal close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from starlette.websockets import WebSocket

from .audio import SAMPLE_RATE
from .engine import Failure, Item, Predictor
from .errors import UserError, first_line
from .inputs import ArraySource
from .schema import json_values
from .vad import SileroFrames, SpeechDetector, VadSettings

log = logging.getLogger(__name__)

FORMATS = {"s16le": (np.dtype("<i2"), 32768.0), "f32le": (np.dtype("<f4"), 1.0)}
"""Sample formats a client may send: numpy type and the divisor that maps them onto [-1, 1]."""
CLOSE_NORMAL, CLOSE_UNSUPPORTED, CLOSE_INVALID, CLOSE_TOO_BIG, CLOSE_ERROR, CLOSE_TRY_LATER = (
    1000,
    1003,
    1007,
    1009,
    1011,
    1013,
)
"""WebSocket close codes (RFC 6455 and IANA's registry)."""


@dataclass(frozen=True)
class StreamSettings:
    """How live streams are answered and limited."""

    hop: float = 1.0
    """Seconds of stream time between answers."""
    context: float | None = None
    """Longest stretch of speech an answer covers, seconds; None: the model's window."""
    max_streams: int = 4
    """Streams open at once; more are closed with code 1013 and the reason."""
    max_chunk: float = 2.0
    """Most audio one message may hold, seconds; more is closed with code 1009."""
    vad: VadSettings = field(default_factory=VadSettings)

    def __post_init__(self) -> None:
        numbers = (self.hop, self.max_chunk, self.context or 1.0)
        if not all(math.isfinite(x) and x > 0 for x in numbers) or self.max_streams < 1:
            raise UserError(
                f"need a finite stream hop, context and chunk > 0 and at least one stream, got hop {self.hop} s, "
                f"context {self.context} s, chunk {self.max_chunk} s and {self.max_streams} streams"
            )


@dataclass
class Hop:
    """One hop's stretch: stream time ``t`` (samples), its samples ``[start, end)`` (None: no speech)."""

    number: int
    t: int
    start: int | None
    end: int | None
    samples: np.ndarray | None
    received: float
    """When the chunk that completed the hop arrived (time.monotonic)."""
    skipped: int = 0


class Session:
    """One stream's audio and speech detector (see the module docstring); not thread-safe."""

    def __init__(self, settings: StreamSettings, context: float, min_samples: int) -> None:
        self.hop = int(round(settings.hop * SAMPLE_RATE))
        self.context = int(round(context * SAMPLE_RATE))
        self.min_samples = min_samples
        self.detector = SpeechDetector(settings.vad)
        self.keep = self.context + 2 * self.hop + int(settings.max_chunk * SAMPLE_RATE)
        self.audio = np.zeros(0, np.float32)
        self.first = 0
        """Stream sample at ``audio[0]``."""
        self.last_region: tuple[int, int] | None = None
        """The last region the detector closed."""

    @property
    def received(self) -> int:
        return self.first + len(self.audio)

    def feed(self, samples: np.ndarray, received: float) -> list[Hop]:
        """Take the next samples; the hops they complete, in order."""
        hops = []
        while len(samples):
            boundary = (self.received // self.hop + 1) * self.hop
            piece, samples = samples[: boundary - self.received], samples[boundary - self.received :]
            self.audio = np.concatenate([self.audio, piece])
            for region in self.detector.feed(piece):
                self.last_region = region
            if self.received == boundary:
                hops.append(self._hop(boundary, received))
        if len(self.audio) > self.keep:
            self.first += len(self.audio) - self.keep
            self.audio = self.audio[-self.keep :].copy()
        return hops

    def _hop(self, t: int, received: float) -> Hop:
        start = self.detector.open_start
        end = t
        if start is None and self.last_region is not None and self.last_region[1] > t - self.hop:
            start, end = self.last_region
        if start is None or end - max(start, end - self.context) < self.min_samples:
            return Hop(t // self.hop, t, None, None, None, received)
        start = max(start, end - self.context)
        return Hop(t // self.hop, t, start, end, self.audio[start - self.first : end - self.first].copy(), received)


def answer(hop: Hop, values: dict[str, Any] | None, dropped: int) -> dict[str, Any]:
    """A hop's JSON message (docs/serve.md)."""
    message: dict[str, Any] = {
        "type": "hop",
        "hop": hop.number,
        "time": hop.t / SAMPLE_RATE,
        "status": "no speech" if values is None else "ok",
        "skipped": hop.skipped + dropped,
    }
    if values is not None:
        message.update(values, start=hop.start / SAMPLE_RATE, end=hop.end / SAMPLE_RATE)
    message["latency"] = time.monotonic() - hop.received
    return message


class Live:
    """The streams of one service: :meth:`handle` serves one WebSocket; the model runs through
    ``submit`` (the service's :class:`emosphere.serve.Batcher`), whose ``busy`` exception means
    the model queue is full."""

    def __init__(
        self, predictor: Predictor, submit: Callable[[Item], Future], busy: type[Exception], settings: StreamSettings
    ) -> None:
        self.predictor, self.submit, self.busy, self.settings = predictor, submit, busy, settings
        SileroFrames.load_session()  # a missing VAD is a one-line error at start-up, not a broken stream
        import websockets  # noqa: F401  (uvicorn needs it for WebSockets; missing, it is an ImportError here)

        self.context = settings.context or predictor.options.window
        self.streams = 0
        """Streams open now."""
        self.answered = 0
        """Hops answered so far, over all streams."""
        self.skipped = 0
        """Hops merged away or refused so far, over all streams."""

    def describe(self) -> dict[str, Any]:
        return {**asdict(self.settings), "context": self.context, "open": self.streams, "answered": self.answered,
                "skipped": self.skipped}  # fmt: skip

    def mount(self, app: Any) -> None:
        """Serve live streams on ``app``'s (FastAPI) WebSocket ``/stream``."""

        @app.websocket("/stream")
        async def stream_audio(websocket: WebSocket) -> None:
            """Live audio in, emotion every hop out: see :mod:`emosphere.stream` and docs/serve.md."""
            await self.handle(websocket)

    async def handle(self, websocket: WebSocket) -> None:
        """Serve one stream (starlette WebSocket) until the client leaves or breaks the protocol."""
        await websocket.accept()
        sample_format = websocket.query_params.get("format", "s16le")
        rate = websocket.query_params.get("sample_rate", str(SAMPLE_RATE))
        if self.streams >= self.settings.max_streams:
            await websocket.close(CLOSE_TRY_LATER, f"{self.streams} streams are open; the limit is "
                                  f"{self.settings.max_streams}; try again later")  # fmt: skip
            return
        if sample_format not in FORMATS or rate != str(SAMPLE_RATE):
            await websocket.close(CLOSE_UNSUPPORTED, f"send 16 kHz mono PCM as format s16le or f32le (sample_rate="
                                  f"16000), got format {sample_format[:20]} at sample_rate {rate[:20]}")  # fmt: skip
            return
        self.streams += 1
        stream = _Stream(self, websocket, sample_format)
        try:
            await stream.run()
        finally:
            self.streams -= 1
            stream.stop()


class _Stream:
    """One connection: reads chunks, schedules hops (one with the model, one waiting), answers."""

    def __init__(self, live: Live, websocket: Any, sample_format: str) -> None:
        self.live, self.websocket, self.format = live, websocket, sample_format
        self.dtype, self.scale = FORMATS[sample_format]
        predictor = live.predictor
        self.session = Session(live.settings, live.context, predictor.backend.min_samples)
        self.max_bytes = int(live.settings.max_chunk * SAMPLE_RATE) * self.dtype.itemsize
        self.running: asyncio.Task | None = None
        self.waiting: Hop | None = None
        self.dropped = 0

    async def run(self) -> None:
        region_names = self.live.predictor.region_names
        await self.websocket.send_text(json.dumps({
            "type": "ready", "sample_rate": SAMPLE_RATE, "format": self.format, "hop": self.live.settings.hop,
            "context": self.live.context, "max_chunk": self.live.settings.max_chunk, "region_names": region_names,
        }))  # fmt: skip
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            problem = self._problem(message, data)
            if problem is not None:
                while problem[0] == CLOSE_NORMAL and self.running is not None:  # answer the hops received first
                    await self.running
                await self.websocket.close(*problem)
                return
            samples = np.frombuffer(data, self.dtype).astype(np.float32) / self.scale
            for hop in self.session.feed(samples, time.monotonic()):
                self._schedule(hop)

    def _problem(self, message: dict[str, Any], data: bytes | None) -> tuple[int, str] | None:
        """The close code and reason for a message that breaks the protocol, or None."""
        if data is None:
            if (message.get("text") or "").strip() in ('{"type": "end"}', '{"type":"end"}', "end"):
                return CLOSE_NORMAL, "end of stream"
            return CLOSE_UNSUPPORTED, 'send audio as binary messages of PCM samples (text: only {"type": "end"})'
        if len(data) % self.dtype.itemsize:
            return CLOSE_INVALID, f"a message of {len(data)} bytes is not whole {self.dtype.itemsize}-byte samples"
        if len(data) > self.max_bytes:
            size, limit = len(data) // self.dtype.itemsize, self.max_bytes // self.dtype.itemsize
            return (
                CLOSE_TOO_BIG,
                f"a message of {size} samples; the limit is {limit} ({self.live.settings.max_chunk:g} s)",
            )
        samples = np.frombuffer(data, self.dtype)
        if self.dtype.kind == "f" and not np.isfinite(samples).all():
            return CLOSE_INVALID, "the audio holds NaN or infinite samples"
        return None

    def _schedule(self, hop: Hop) -> None:
        if self.running is None:
            self.running = asyncio.create_task(self._answer(hop))
        else:
            if self.waiting is not None:
                hop.skipped += self.waiting.skipped + 1
                self.live.skipped += 1
            self.waiting = hop

    async def _answer(self, hop: Hop) -> None:
        try:
            values = None if hop.samples is None else await self._predict(hop)
            if values is not False:
                await self.websocket.send_text(json.dumps(answer(hop, values, self.dropped)))
                self.live.answered += 1
                self.dropped = 0
        except Exception as error:  # the model failed, or the client left: the stream ends
            log.debug("stream answer failed", exc_info=True)
            self.running = self.waiting = None
            with contextlib.suppress(Exception):
                await self.websocket.close(CLOSE_ERROR, f"the model failed: {first_line(error, 100)}")
            return
        self.running = None
        if self.waiting is not None:
            hop, self.waiting = self.waiting, None
            self.running = asyncio.create_task(self._answer(hop))

    async def _predict(self, hop: Hop) -> dict[str, Any] | bool:
        """The hop's values (:func:`emosphere.schema.json_values`), or False when the model queue was full."""
        predictor = self.live.predictor
        item = predictor.decode(ArraySource("stream", hop.samples, SAMPLE_RATE), hop.number)
        if isinstance(item, Failure):
            return None
        try:
            future = self.live.submit(item)
        except self.live.busy:
            self.dropped += 1
            self.live.skipped += 1
            return False
        prediction = await asyncio.wrap_future(future)
        row = prediction.table(predictor.region_names, predictor.regions).iloc[0].to_dict()
        return json_values(row, predictor.region_names)

    def stop(self) -> None:
        """Forget the stream: cancel the hop with the model (if it has not started) and the waiting one."""
        self.waiting = None
        if self.running is not None:
            self.running.cancel()
