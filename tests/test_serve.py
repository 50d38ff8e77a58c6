"""The service (emosphere.serve, ``emosphere serve``) and its web page.

The API runs a tiny model in a uvicorn server on a free loopback port, in a
thread that stops with the module; the page is driven by Debian's chromium
through Playwright (skipped, with the reason, where either is missing).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import shutil
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'emosphere[serve]'")
httpx = pytest.importorskip("httpx", reason="the service tests need httpx (in the test extra)")

from conftest import served, tiny_model, tone  # noqa: E402

from emosphere.backends import TorchBackend  # noqa: E402
from emosphere.cli import build_parser, main  # noqa: E402
from emosphere.engine import Options, Predictor  # noqa: E402
from emosphere.inputs import InputError  # noqa: E402
from emosphere.serve import Settings, create_app, listen, server  # noqa: E402
from emosphere.sphere import DIMENSIONS  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LIMITS = Settings(batch_wait=0.2, max_upload_mb=1.0, max_seconds=40.0)
NUMBERS = ["start", "end", *DIMENSIONS, *(f"{d}_unit" for d in DIMENSIONS), "r", "theta", "phi"]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Short clips in several formats, rates and channel counts, and 30 s of audio (4 windows, 0.92 MiB:
    close to the 1 MiB upload limit)."""
    root = tmp_path_factory.mktemp("clips")
    stereo = tone(22050, 2.3, (250, 2000))
    audio = {
        "a.wav": (tone(16000, 1.0), 16000),
        "b.flac": (np.stack([stereo, 0.5 * stereo], 1), 22050),
        "c.ogg": (tone(44100, 0.8, (500, 1500)), 44100),
        "long.wav": (tone(16000, 30.0, (300, 700, 1900)), 16000),
    }
    for name, (samples, rate) in audio.items():
        sf.write(root / name, samples, rate)
    return {name: root / name for name in audio}


def run_in_thread(app) -> tuple[str, object, threading.Thread]:
    sock = listen("127.0.0.1", 0)
    uvicorn_server = server(app, sock, log_level="warning")
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", uvicorn_server, thread


@pytest.fixture(scope="module")
def url(model):
    """The service for the tiny model, with small limits: 1 MiB uploads, 40 s of audio."""
    address, uvicorn_server, thread = run_in_thread(
        create_app(Predictor(TorchBackend(model)), LIMITS, model_name="tiny")
    )
    yield address
    uvicorn_server.should_exit = True
    thread.join(timeout=30)
    assert not thread.is_alive(), "the server did not stop"


def post(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}/predict", files={"file": (name, data)}, timeout=120)


def expected(model, path: Path) -> pd.DataFrame:
    return model.predict(str(path))


def assert_same(answer: dict, table: pd.DataFrame, region_names: list[str], atol: float = 1e-6) -> None:
    """The service's JSON equals ``emosphere predict``'s table (file row, then window rows) within ``atol``."""
    rows = [answer, *answer["windows"]]
    assert len(rows) == len(table) and len(answer["windows"]) == (len(table) - 1)
    for row, (_, reference) in zip(rows, table.iterrows()):
        np.testing.assert_allclose([row[k] for k in NUMBERS], reference[NUMBERS].astype(float), atol=atol, rtol=0)
        assert row["region_classifier"] == reference["region_classifier"]
        assert row["region_point"] == reference["region_point"] and row["silent"] == reference["silent"]
        assert list(row["region_probabilities"]) == region_names
        np.testing.assert_allclose(
            list(row["region_probabilities"].values()),
            reference[[f"p_{n}" for n in region_names]].astype(float),
            atol=atol,
            rtol=0,
        )


def wav_bytes(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


# --- the API -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.wav", "b.flac", "c.ogg", "long.wav"])
def test_a_clip_gets_the_numbers_of_emosphere_predict(url, model, clips, name):
    response = post(url, name, clips[name].read_bytes())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["file"] == name
    assert_same(answer, expected(model, clips[name]), model.region_names)
    assert 1 <= answer["arousal"] <= 7 and 0 <= answer["arousal_unit"] <= 1


def test_long_audio_has_values_per_window(url, clips):
    answer = post(url, "long.wav", clips["long.wav"].read_bytes()).json()
    spans = [(w["start"], w["end"]) for w in answer["windows"]]
    assert spans == [(0.0, 12.0), (6.0, 18.0), (12.0, 24.0), (18.0, 30.0)]
    assert answer["end"] == 30.0


def test_concurrent_requests_are_batched_together_and_keep_their_numbers(url, model, clips, tmp_path):
    paths = []
    for i in range(6):  # six different clips of different lengths, posted at the same moment
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(paths[-1], tone(16000, 0.4 + 0.3 * i, (180 + 40 * i, 800 + 100 * i)), 16000)
    before = httpx.get(f"{url}/health").json()
    start = threading.Barrier(len(paths))

    def send(path: Path) -> httpx.Response:
        start.wait()
        return post(url, path.name, path.read_bytes())

    with ThreadPoolExecutor(len(paths)) as pool:
        responses = list(pool.map(send, paths))
    after = httpx.get(f"{url}/health").json()
    assert [r.status_code for r in responses] == [200] * len(paths)
    for path, response in zip(paths, responses):
        assert response.json()["file"] == path.name
        assert_same(response.json(), expected(model, path), model.region_names)
    assert after["requests"] - before["requests"] == len(paths)
    assert after["pools"] - before["pools"] < len(paths), "concurrent requests were not batched together"


@pytest.mark.parametrize(
    "name, data, status, reason",
    [
        ("junk.wav", b"this is not audio at all " * 40, 422, "not audio that soundfile can read"),
        ("notes.txt", b"a text file, not speech\n", 422, "not audio that soundfile can read"),
        ("empty.wav", b"", 400, "empty file (0 bytes)"),
        ("big.wav", b"\0" * (2**20 + 1), 413, "upload too large: the limit is 1 MiB"),
        (
            "long.wav",
            wav_bytes(np.zeros(8000 * 45, np.float32), 8000, "PCM_U8"),
            413,
            "45.0 s of audio; the limit is 40 s",
        ),
        ("short.wav", wav_bytes(np.zeros(100, np.float32), 16000), 422, "too short"),
        ("header.wav", wav_bytes(np.zeros((0, 1), np.float32), 16000), 422, "empty audio (0 samples)"),
        ("nan.wav", wav_bytes(np.full(4000, np.nan, np.float32), 16000, "FLOAT"), 422, "NaN"),
        ("rate.wav", wav_bytes(np.zeros(1000, np.float32), 100), 422, "implausible sample rate 100 Hz"),
    ],
)
def test_a_bad_upload_is_a_4xx_with_a_reason_and_the_server_goes_on(url, clips, name, data, status, reason):
    response = post(url, name, data)
    assert response.status_code == status
    assert reason in response.json()["detail"]
    assert post(url, "a.wav", clips["a.wav"].read_bytes()).status_code == 200


def test_requests_that_are_not_an_upload_are_4xx(url, clips):
    assert httpx.post(f"{url}/predict", data={"other": "1"}).status_code == 422  # no file field
    for body, content_type in [
        (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
        (b"garbage", "multipart/form-data; boundary=x"),
        (b"RIFF", "audio/wav"),
    ]:
        response = httpx.post(f"{url}/predict", content=body, headers={"content-type": content_type})
        assert 400 <= response.status_code < 500 and response.json()["detail"]

    def chunks():  # a streamed body without Content-Length, larger than the limit
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n\r\n'
        yield from (b"\0" * 2**16 for _ in range(20))
        yield b"\r\n--b--\r\n"

    streamed = httpx.post(
        f"{url}/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert streamed.status_code == 413 and "limit" in streamed.json()["detail"]
    assert post(url, "a.wav", clips["a.wav"].read_bytes()).status_code == 200


class Wrapped:
    """A backend around another one."""

    def __init__(self, backend) -> None:
        self.backend, self.region_names, self.min_samples = backend, backend.region_names, backend.min_samples
        self.regions = backend.regions
        self.window_seconds = backend.window_seconds


class Gate(Wrapped):
    """A backend that holds every forward pass until ``release`` is set."""

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, waveform, lengths):
        self.entered.set()
        self.release.wait(timeout=60)
        return self.backend(waveform, lengths)


def test_more_uploads_than_may_wait_are_answered_503(model, clips):
    gate = Gate(TorchBackend(model))
    app = create_app(Predictor(gate), Settings(batch_wait=0.0, max_pending=1, lanes=1))
    address, uvicorn_server, thread = run_in_thread(app)
    clip = clips["a.wav"].read_bytes()
    try:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(post, address, "first.wav", clip)
            assert gate.entered.wait(timeout=60)  # the first is in the model, held
            waiting = pool.submit(post, address, "second.wav", clip)
            while app.state.batcher.pending < 1:
                time.sleep(0.01)
            busy = post(address, "third.wav", clip)
            gate.release.set()
            assert busy.status_code == 503 and "retry later" in busy.json()["detail"]
            assert running.result().status_code == waiting.result().status_code == 200
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=30)


class Recording(Wrapped):
    """A backend that records the window lengths of each pass and holds the first until ``release``."""

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self.passes, self.entered, self.release = [], threading.Event(), threading.Event()

    def __call__(self, waveform, lengths):
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(timeout=60)
        self.passes.append(lengths.tolist())
        return self.backend(waveform, lengths)


def test_a_short_upload_does_not_wait_for_the_rest_of_a_long_one(model, clips):
    backend = Recording(TorchBackend(model))  # one lane, one window a pass: the order is the schedule's
    app = create_app(Predictor(backend, Options(batch_size=1)), Settings(cross_request=False, lanes=1))
    address, uvicorn_server, thread = run_in_thread(app)
    try:
        with ThreadPoolExecutor(2) as pool:
            long = pool.submit(post, address, "long.wav", clips["long.wav"].read_bytes())  # 30 s: 4 windows
            assert backend.entered.wait(timeout=60)
            short = pool.submit(post, address, "a.wav", clips["a.wav"].read_bytes())
            while app.state.batcher.pending < 1:  # the short one waits (the long one is in the model)
                time.sleep(0.01)
            backend.release.set()
            assert short.result().status_code == long.result().status_code == 200
        assert backend.passes == [[192000], [16000], [192000], [192000], [192000]]
        assert_same(long.result().json(), expected(model, clips["long.wav"]), model.region_names)
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=30)


def test_a_short_upload_is_answered_by_the_free_lane_while_a_long_one_runs(model, clips):
    backend = Recording(TorchBackend(model))
    address, uvicorn_server, thread = run_in_thread(create_app(Predictor(backend), Settings()))
    try:
        with ThreadPoolExecutor(1) as pool:
            long = pool.submit(post, address, "long.wav", clips["long.wav"].read_bytes())
            assert backend.entered.wait(timeout=60)
            short = httpx.post(f"{address}/predict", files={"file": ("a.wav", clips["a.wav"].read_bytes())}, timeout=20)
            assert short.status_code == 200 and not long.done()
            backend.release.set()
            assert long.result().status_code == 200
    finally:
        backend.release.set()
        uvicorn_server.should_exit = True
        thread.join(timeout=30)


def test_a_request_whose_client_went_away_is_dropped_with_its_windows(model, clips):
    backend = Recording(TorchBackend(model))
    app = create_app(Predictor(backend, Options(batch_size=1)), Settings(cross_request=False, lanes=1))
    address, uvicorn_server, thread = run_in_thread(app)
    batcher = app.state.batcher
    request = httpx.Request("POST", f"{address}/predict", files={"file": ("long.wav", clips["long.wav"].read_bytes())})
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    try:
        with socket.create_connection(("127.0.0.1", int(address.rsplit(":", 1)[1]))) as client:
            client.sendall(f"POST /predict HTTP/1.1\r\n{head}\r\n".encode() + request.read())
            assert backend.entered.wait(timeout=60)  # its first window is in the model
        # the client has gone away
        deadline = time.monotonic() + 30
        while not all(job.future.cancelled() for job in batcher._jobs):
            assert time.monotonic() < deadline, "the request was not cancelled"
            time.sleep(0.02)
        backend.release.set()
        assert post(address, "a.wav", clips["a.wav"].read_bytes()).status_code == 200
        assert backend.passes == [[192000], [16000]]  # its 3 other windows never ran
        assert batcher.pending == 0 and batcher.requests == 1
    finally:
        backend.release.set()
        uvicorn_server.should_exit = True
        thread.join(timeout=30)


def test_an_upload_holds_one_file_field_and_a_long_name_is_explained(url, clips):
    clip = clips["a.wav"].read_bytes()
    two = httpx.post(f"{url}/predict", files=[("file", ("a.wav", clip)), ("file", ("b.wav", clip))])
    assert two.status_code == 422 and two.json()["detail"] == "one file per request: the field file was sent 2 times"
    long = post(url, "x" * 5000 + ".wav", clip)
    assert long.status_code == 400
    assert "Maximum header size exceeded" in long.json()["detail"] and "file name" in long.json()["detail"]
    named = post(url, "é" * 120 + ".wav", clip)  # 244 bytes: the longest names file systems allow
    assert named.status_code == 200 and named.json()["file"] == "é" * 120 + ".wav"


class FailsOnce(Wrapped):
    """A backend whose first forward pass fails, as a model out of GPU memory would."""

    failed = False

    def __call__(self, waveform, lengths):
        if not self.failed:
            self.failed = True
            raise RuntimeError("out of memory")
        return self.backend(waveform, lengths)


def test_a_model_failure_is_a_500_for_its_requests_and_the_service_goes_on(model, clips):
    address, uvicorn_server, thread = run_in_thread(create_app(Predictor(FailsOnce(TorchBackend(model)))))
    clip = clips["a.wav"].read_bytes()
    try:
        assert post(address, "a.wav", clip).status_code == 500
        assert post(address, "a.wav", clip).status_code == 200
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=30)


def test_health_and_openapi_describe_the_service(url, model):
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny"
    assert health["region_names"] == model.region_names
    assert health["max_upload_bytes"] == 2**20 and health["settings"]["max_seconds"] == 40.0
    schema = httpx.get(f"{url}/openapi.json").json()
    upload = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    body = schema["components"]["schemas"][upload["$ref"].split("/")[-1]]
    assert body["required"] == ["file"]
    values = schema["components"]["schemas"]["FileValues"]["properties"]
    assert "1-7" in values["arousal"]["description"] and "[0, 1]" in values["arousal_unit"]["description"]
    assert {"400", "413", "422", "503"} <= set(schema["paths"]["/predict"]["post"]["responses"])


def test_the_page_is_served_and_self_contained(url):
    response = httpx.get(f"{url}/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'id="file"' in page and 'id="record"' in page and 'id="sphere"' in page
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)|url\(([^)]+)\)|@import""", page)
    assert references == [], f"the page loads external resources: {references}"
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)


# --- the command -------------------------------------------------------------------------------


def test_every_serve_option_is_explained():
    sub = build_parser()._subparsers._group_actions[0].choices["serve"]
    for action in sub._actions:
        assert action.help, f"serve {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "/no/such/model"], "/no/such/model: no such model directory"),
        (["--model", "m", "--port", "70000"], "port 70000 is outside 0-65535"),
        (["--model", "m", "--host", "no-such-host.invalid"], "cannot listen on no-such-host.invalid"),
        (["--model", "m", "--port", "-1"], "--port: must be >= 0"),
        (["--model", "m", "--batch-size", "0"], "--batch-size: must be >= 1"),
        (["--model", "m", "--max-upload-mb", "0"], "--max-upload-mb: must be > 0"),
        (["--model", "m", "--batch-wait-ms", "-5"], "--batch-wait-ms: must be >= 0"),
        (["--model", "m", "--batch-wait-ms", "inf"], "--batch-wait-ms: must be finite, got inf"),
        (["--model", "m", "--max-upload-mb", "nan"], "--max-upload-mb: must be finite, got nan"),
    ],
)
def test_serve_mistakes_are_one_line_and_exit_2(args, message, capsys):
    try:
        code = main(["serve", *args])
    except SystemExit as exit:  # argparse's own checks
        code = exit.code
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"max_pending": 0},
        {"batch_wait": -1.0},
        {"max_upload_mb": 0.0},
        {"max_seconds": -1.0},
        {"batch_wait": math.inf},
        {"max_upload_mb": math.nan},
    ],
)
def test_settings_no_service_can_use_are_refused(changes):
    with pytest.raises(InputError, match="need"):
        Settings(**changes)


def test_a_port_in_use_is_one_line_and_exit_2(capsys):
    with listen("127.0.0.1", 0) as taken:
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", "m", "--port", str(port)]) == 2
    error = capsys.readouterr().err.strip()
    assert f"cannot listen on 127.0.0.1:{port}" in error and len(error.splitlines()) == 1


@pytest.mark.parametrize("package", ["fastapi", "python_multipart"])
def test_serve_without_the_extra_says_how_to_install_it(monkeypatch, capsys, package):
    monkeypatch.setitem(sys.modules, package, None)  # importing it now fails
    monkeypatch.delitem(sys.modules, "emosphere.serve")
    assert main(["serve", "--model", "m"]) == 2
    error = capsys.readouterr().err.strip()
    assert "pip install 'emosphere[serve]'" in error and len(error.splitlines()) == 1


@pytest.mark.parametrize("options, batching", [([], False), (["--batching", "on"], True)])
def test_emosphere_serve_answers_until_interrupted(model, clips, tmp_path, options, batching):
    """On a CPU, --batching auto (the default) runs each request alone; on asks for batching."""
    model_dir = model.save_pretrained(tmp_path / "model")
    with served(model_dir, *options) as (address, line):
        health = httpx.get(f"{address}/health").json()
        assert health["model"] == str(model_dir)
        assert health["settings"]["cross_request"] is batching
        assert f"cross-request batching {'on' if batching else 'off'}" in line
        answer = post(address, "a.wav", clips["a.wav"].read_bytes()).json()
        assert_same(answer, expected(model, clips["a.wav"]), model.region_names)


@pytest.mark.cuda
def test_emosphere_serve_on_cuda_batches_requests_and_answers_the_cpu_numbers(model, clips, tmp_path):
    """On a GPU, --batching auto (the default) batches concurrent requests; fp32 there is exact."""
    model_dir = model.save_pretrained(tmp_path / "model")
    with served(model_dir, "--device", "cuda") as (address, line):
        health = httpx.get(f"{address}/health").json()
        assert health["settings"]["cross_request"] is True and "cross-request batching on" in line
        names = ["a.wav", "b.flac", "c.ogg", "long.wav"]
        with ThreadPoolExecutor(len(names)) as pool:
            answers = list(pool.map(lambda name: post(address, name, clips[name].read_bytes()), names))
        for name, response in zip(names, answers):
            assert response.status_code == 200, response.text
            assert_same(response.json(), expected(model, clips[name]), model.region_names, atol=1e-5)


# --- the page in a browser ---------------------------------------------------------------------


@contextlib.contextmanager
def chromium(*extra_args: str):
    """Debian's chromium through Playwright, headless, with a fake microphone (skipped where missing)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (apt-get install chromium; make test installs it)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                *extra_args,
            ],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def test_the_page_shows_the_values_of_an_uploaded_clip(browser, url, clips, tmp_path):
    answer = post(url, "long.wav", clips["long.wav"].read_bytes()).json()
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    page.goto(f"{url}/")
    page.set_input_files("#file", str(clips["long.wav"]))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    for name in DIMENSIONS:
        assert page.text_content(f"#{name}-value") == f"{answer[name]:.2f}"
    assert page.text_content("#region-value") == answer["region_classifier"]
    assert page.text_content("#region-point") == answer["region_point"]
    assert page.text_content("#result-file") == "long.wav"
    assert page.is_visible("#sphere-point")
    assert page.is_visible("#timeline") and page.locator("#chart polyline").count() == 3
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_the_page_names_both_regions_and_says_when_they_disagree_or_the_audio_is_silent(browser, url, clips):
    answer = post(url, "a.wav", clips["a.wav"].read_bytes()).json()
    answer.update(region_point="IV", region_classifier="I", silent=True)  # as the field report's clip
    page = browser.new_page()
    page.route("**/predict", lambda route: route.fulfill(json=answer))
    page.goto(f"{url}/")
    page.set_input_files("#file", str(clips["a.wav"]))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.text_content("#region-point") == "IV" and page.text_content("#region-value") == "I"
    assert page.is_visible("#region-note") and "disagree" in page.text_content("#region-note")
    assert page.is_visible("#silent-note")
    answer.update(file="b.flac", region_point="I", silent=False)
    page.set_input_files("#file", str(clips["b.flac"]))
    page.wait_for_function("document.getElementById('result-file').textContent === 'b.flac'")
    assert not page.is_visible("#region-note") and not page.is_visible("#silent-note")


def test_the_page_records_the_microphone_and_sends_readable_wav(browser, url):
    page = browser.new_page()
    page.goto(f"{url}/")
    page.click("#record")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Recording')")
    time.sleep(1.0)
    page.click("#record")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.text_content("#result-file").startswith("recording-")
    assert re.fullmatch(r"\d\.\d\d", page.text_content("#arousal-value"))
    assert "Predicted recording-" in page.text_content("#status")


def test_the_page_shows_why_an_upload_was_refused(browser, url, tmp_path):
    (tmp_path / "notes.txt").write_text("not audio\n")
    page = browser.new_page()
    page.goto(f"{url}/")
    page.set_input_files("#file", str(tmp_path / "notes.txt"))
    page.wait_for_selector("#status.error")
    assert "(422)" in page.text_content("#status") and "not audio" in page.text_content("#status")


def test_lanes_inside_exact_fp32_keep_tf32_off_until_the_last_one_leaves():
    import torch

    from emosphere.backends import exact_fp32

    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    try:
        matmul.allow_tf32 = True
        first, second = exact_fp32(), exact_fp32()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)  # one lane done while the other still runs
        assert matmul.allow_tf32 is False
        second.__exit__(None, None, None)
        assert matmul.allow_tf32 is True
    finally:
        matmul.allow_tf32 = before
