"""``emosphere serve``: the model behind HTTP, with a web page to try it on your own voice.

Endpoints (docs/serve.md): ``POST /predict`` takes an uploaded audio file
(multipart field ``file``) and answers JSON with the file's values and, for
audio longer than one window, each window's; ``GET /health`` describes the
model, the limits and the batching; ``GET /`` is the page
(``serve.html``, self-contained); ``GET /openapi.json`` the OpenAPI
description.

One inference path: an upload is decoded from memory by soundfile into an
:class:`emosphere.inputs.ArraySource` and goes through the engine
(:meth:`emosphere.engine.Predictor.decode`, then :meth:`~emosphere.engine.Predictor.run`
for the uploads that wait together), with the default windows, so the service
gives the numbers ``emosphere predict`` gives for the same file. The JSON
answer's fields, and their descriptions in the OpenAPI document, come from
:mod:`emosphere.schema`.

Scheduling (:class:`Batcher`): a few lane threads (``lanes``, default 2) run
the model, a batch of windows per pass; each pass takes the upload with the
fewest windows left that no other lane is running, so a 1 s clip that arrives
while a 400 s file is being predicted is answered by the free lane at once,
and never waits for the long file's remaining windows. With cross-request
batching, a pass also takes windows of the next uploads (after waiting up to
``batch_wait`` seconds for more, unless a batch is waiting); padding never
changes a prediction. A request whose client disconnects is cancelled: its
windows not yet run are dropped. Decoding runs in the server's thread pool, so
the event loop only moves bytes.

Limits, each a 4xx with a reason (never a 500), after which the server goes
on serving: an empty file (400), a body that is not readable multipart data
(400), a body over ``max_upload_mb`` (413), audio over ``max_seconds`` (413),
anything soundfile cannot decode, without samples or shorter than the model's
minimum (422), a missing ``file`` field or more than one (422), more than
``max_pending`` uploads waiting for the model (503). File names are shown as
:func:`emosphere.names.readable` writes them.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import math
import socket
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib.resources import files
from typing import Annotated, Any

import python_multipart  # noqa: F401  (FastAPI needs it for uploads; missing, it is an ImportError here)
import soundfile as sf
import uvicorn
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, create_model
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import DEFAULT_MAX_HEADER_SIZE
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .audio import EMPTY_FILE, plausible_rate
from .engine import Failure, Item, Prediction, Predictor
from .inputs import ArraySource, InputError
from .names import readable
from .schedule import Batcher, Busy
from .schema import REGION_FIELDS, SILENT_FIELD, SPAN_FIELDS, VALUE_FIELDS, json_values
from .stream import Live, StreamSettings

log = logging.getLogger(__name__)

PAGE = "serve.html"
"""The web page, shipped inside the package."""
DISCONNECT_POLL = 0.05
"""Seconds between checks, while a request waits for the model, that its client is still there."""
GONE = 499
"""The status of a request whose client went away (nginx's): nobody reads it."""


@dataclass(frozen=True)
class Settings:
    """How the service batches and what it accepts."""

    batch_wait: float = 0.005
    """Seconds the worker waits for more uploads after the first, unless a batch of windows is waiting."""
    cross_request: bool = True
    """Batch the uploads of concurrent requests together; False runs each request on its own."""
    max_upload_mb: float = 50.0
    """Largest request body, in MiB."""
    max_seconds: float = 600.0
    """Longest audio, in seconds."""
    max_pending: int = 64
    """Uploads that may wait for the model; more are answered 503."""
    lanes: int = 2
    """Threads that run the model, each a pass at a time: a short upload takes a free lane while a long one runs."""

    def __post_init__(self) -> None:
        if self.max_pending < 1 or self.lanes < 1:
            raise InputError(f"need max pending >= 1 and lanes >= 1, got {self.max_pending} and {self.lanes}")
        limits = (self.batch_wait, self.max_upload_mb, self.max_seconds)
        if not all(map(math.isfinite, limits)) or self.batch_wait < 0 or min(limits[1:]) <= 0:
            raise InputError(
                "need a finite batch wait >= 0 and finite upload and duration limits > 0, got "
                f"{self.batch_wait} s, {self.max_upload_mb} MiB and {self.max_seconds} s"
            )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


# --- the JSON answer ---------------------------------------------------------------------------


def answer_model(window: float, hop: float) -> type[BaseModel]:
    """The pydantic model of ``POST /predict``'s answer, its fields and their descriptions from
    :mod:`emosphere.schema`: the file's name, its values, and each window's values."""
    fields: dict[str, Any] = {
        key: (float, Field(description=text)) for key, text in {**SPAN_FIELDS, **VALUE_FIELDS}.items()
    }
    fields["silent"] = (bool, Field(description=SILENT_FIELD))
    fields["region_point"] = (str, Field(description=REGION_FIELDS["region_point"]))
    fields["region_classifier"] = (str | None, Field(description=REGION_FIELDS["region_classifier"]))
    probabilities = REGION_FIELDS["region_probabilities"]
    fields["region_probabilities"] = (dict[str, float] | None, Field(description=probabilities))
    values = create_model("Values", __doc__="Predictions for a span of the audio; the scale of each value is stated.",
                          **fields)  # fmt: skip
    windows = (
        f"one entry per window, in time order, for audio longer than one window ({window:g} s windows every "
        f"{hop:g} s); empty otherwise"
    )
    return create_model(
        "FileValues",
        __doc__="An upload's predictions: the duration-weighted aggregate of its windows, and the windows.",
        file=(str, Field(description="the uploaded file's name")),
        **fields,
        windows=(list[values], Field(description=windows)),
    )


class Health(BaseModel):
    status: str = Field(description='"ok" while the service answers')
    version: str
    model: str = Field(description="the model the service was started with")
    region_names: list[str]
    window_seconds: float
    hop_seconds: float
    settings: dict[str, Any] = Field(description="batching and limits (see emosphere serve --help)")
    max_upload_bytes: int
    pending: int = Field(description="uploads waiting for the model now")
    pools: int = Field(description="pools of uploads run through the model so far")
    requests: int = Field(description="uploads answered so far")
    streams: dict[str, Any] = Field(
        description="live streams on /stream: settings, open now, hops answered and skipped"
    )


def as_json(prediction: Prediction, predictor: Predictor) -> dict[str, Any]:
    """A prediction as ``POST /predict`` answers it (:func:`answer_model`)."""
    region_names = predictor.region_names
    file_row, *window_rows = prediction.table(region_names, predictor.regions).to_dict("records")
    return {
        "file": prediction.name,
        **json_values(file_row, region_names),
        "windows": [json_values(row, region_names) for row in window_rows],
    }


# --- uploads -----------------------------------------------------------------------------------


def decode_upload(predictor: Predictor, index: int, name: str, data: bytes, *, max_seconds: float) -> Item:
    """Decode uploaded bytes and plan their windows, as :meth:`Predictor.decode` does for a file;
    raises :class:`HTTPException` (413 too long, 422 not audio or too short)."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if not plausible_rate(f.samplerate):  # as emosphere predict refuses it
                raise HTTPException(422, f"{name}: implausible sample rate {f.samplerate} Hz")
            if f.frames > max_seconds * f.samplerate:
                raise HTTPException(
                    413, f"{name}: {f.frames / f.samplerate:.1f} s of audio; the limit is {max_seconds:g} s"
                )
            samples, rate = f.read(dtype="float32", always_2d=True), f.samplerate
    except HTTPException:
        raise
    except Exception as error:
        reason = getattr(error, "error_string", None) or f"{type(error).__name__}: {error}"
        raise HTTPException(422, f"{name}: not audio that soundfile can read ({reason})") from error
    entry = predictor.decode(ArraySource(name, samples, rate), index)
    if isinstance(entry, Failure):
        raise HTTPException(422, f"{name}: {entry.error}")
    return entry


class UploadLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 with the limit, as soon as its
    Content-Length or the bytes received so far show it (the body is never read in full)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        declared = int(length) if length.isdigit() else 0
        received = 0

        async def limited() -> Message:
            # FastAPI passes an HTTPException raised while it reads the body on to the exception handler.
            nonlocal received
            message: Message = {}
            if declared <= self.max_bytes:  # else refuse before reading
                message = await receive()
                received += len(message.get("body", b""))
            if max(declared, received) > self.max_bytes:
                raise HTTPException(413, f"upload too large: the limit is {self.max_bytes / 2**20:g} MiB")
            return message

        await self.app(scope, limited, send)


async def explain_multipart(request: Request, error: Exception) -> Response:
    """FastAPI's answers, except that Starlette's 400 "Invalid multipart data." says what was invalid."""
    assert isinstance(error, StarletteHTTPException)
    reason = getattr(error.__context__, "__cause__", None)  # the parser's error, under Starlette's
    if error.status_code == 400 and isinstance(reason, FormParserError):
        hint = f" (a header line of a part, such as the file name's, may hold {DEFAULT_MAX_HEADER_SIZE} bytes)"
        detail = f"{str(error.detail).rstrip('.')}: {reason}{hint if 'header size' in str(reason) else ''}"
        error = StarletteHTTPException(400, detail)
    return await http_exception_handler(request, error)


async def unless_gone(request: Request, future: Future) -> Prediction | None:
    """The result of ``future``, or None when the client disconnects first: the future is then
    cancelled, and the batcher drops the windows of its upload not yet run."""
    waiting = asyncio.wrap_future(future)
    while not (await asyncio.wait({waiting}, timeout=DISCONNECT_POLL))[0]:
        if await request.is_disconnected():
            future.cancel()
            return None
    return waiting.result()


# --- the application ---------------------------------------------------------------------------


def create_app(
    predictor: Predictor,
    settings: Settings | None = None,
    model_name: str = "model",
    stream: StreamSettings | None = None,
) -> FastAPI:
    """The service for ``predictor``; its :class:`Batcher` starts and stops with the application;
    ``stream``: how live streams on ``/stream`` are answered (:mod:`emosphere.stream`).

    Long: the routes are closures over the predictor, the batcher and the settings."""
    settings = settings or Settings()
    batcher = Batcher(
        predictor, lanes=settings.lanes, batch_wait=settings.batch_wait, cross_request=settings.cross_request,
        max_pending=settings.max_pending,
    )  # fmt: skip
    live = Live(predictor, batcher.submit, Busy, stream or StreamSettings())
    region_names = predictor.region_names
    window, hop = predictor.options.window, predictor.options.hop
    page = files(__package__).joinpath(PAGE).read_text(encoding="utf-8")
    upload_ids = itertools.count()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        batcher.stop()

    app = FastAPI(
        title="emosphere",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Arousal, valence and dominance (1-7) and the region of the emotion sphere "
        "for uploaded speech. See docs/serve.md.",
    )
    app.state.batcher = batcher
    live.mount(app)

    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes)
    app.add_exception_handler(StarletteHTTPException, explain_multipart)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "model": model_name,
            "region_names": region_names,
            "window_seconds": window,
            "hop_seconds": hop,
            "settings": asdict(settings),
            "max_upload_bytes": settings.max_upload_bytes,
            "pending": batcher.pending,
            "pools": batcher.pools,
            "requests": batcher.requests,
            "streams": live.describe(),
        }

    errors = {
        code: {"description": text, "content": {"application/json": {"example": {"detail": "reason"}}}}
        for code, text in [
            (400, "empty file, or not readable multipart data"),
            (413, "upload or audio over the limits"),
            (422, "not audio, no samples, too short, or not one file field"),
            (503, "too many uploads waiting; retry later"),
        ]
    }

    @app.post("/predict", response_model=answer_model(window, hop), responses=errors)
    async def predict(
        request: Request,
        file: Annotated[UploadFile, File(description="an audio file in any format soundfile reads")],
    ) -> Any:
        """Arousal, valence and dominance of the uploaded audio (the duration-weighted aggregate of
        its windows), its region of the emotion sphere, and each window's values for long audio."""
        sent = len((await request.form()).getlist("file"))  # FastAPI parsed the form: this reads it again
        if sent > 1:
            raise HTTPException(422, f"one file per request: the field file was sent {sent} times")
        data = await file.read()
        name = readable(file.filename or "upload")
        if not data:
            raise HTTPException(400, f"{name}: {EMPTY_FILE}")
        item = await run_in_threadpool(
            decode_upload, predictor, next(upload_ids), name, data, max_seconds=settings.max_seconds
        )
        try:
            future = batcher.submit(item)
        except Busy:
            raise HTTPException(503, f"{batcher.pending} uploads are waiting for the model; retry later") from None
        prediction = await unless_gone(request, future)
        if prediction is None:
            return JSONResponse({"detail": "the client went away"}, status_code=GONE)
        return await run_in_threadpool(as_json, prediction, predictor)

    return app


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (0: a free port); :class:`InputError` if it cannot be."""
    if not 0 <= port <= 65535:
        raise InputError(f"port {port} is outside 0-65535")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def server(app: FastAPI, sock: socket.socket, log_level: str = "info") -> uvicorn.Server:
    """A uvicorn server for ``app`` on ``sock``; ``server.run(sockets=[sock])`` serves until stopped."""
    host, port = sock.getsockname()[:2]
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
