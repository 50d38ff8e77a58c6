"""Service load: requests per second and p50/p95 latency of ``emosphere serve`` on loopback.

Two servers are started, each in its own process on a free loopback port:
one with cross-request batching (``--batching on``; the default on GPUs), one
without (``--batching off``; the default on CPUs). Then 1, 4 and 16 concurrent clients (asyncio tasks
sharing one httpx client) post generated clips back to back to each server in
turn (the idle server sleeps) until ``--requests`` have been answered. Reported per mode and client
count: requests per second,
p50 / p95 latency (seconds from sending the upload to the parsed answer), and
the mean number of requests per pool the server ran (from ``/health``). Every
answer must be 200, and the two modes must give the same values for each
clip (within 1e-5 on [0, 1]), else the script fails.

The default model is a randomly initialised WavLM of base size with style
pooling and the octant head, as in bench/predict_speed.py (speed does not
depend on the weights). See docs/benchmarks.md.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/serve_load.py [--json figures.json]
    python bench/serve_load.py --hidden 64 --layers 2 --requests 16        # a quick check
    python bench/serve_load.py --tiny                                      # does it run? (seconds)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np

PARITY = 1e-5
MODES = {"batched": ["--batching", "on"], "one request at a time": ["--batching", "off"]}


def wav(samples: np.ndarray) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples, benchlib.SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def launch(model_dir: Path, options: list[str], batch_size: int, src: str | None = None) -> subprocess.Popen:
    """``emosphere serve`` (from the source tree ``src``, default the one installed) on a free loopback
    port, starting in the background."""
    command = [sys.executable, "-m", "emosphere.cli", "serve", "--model", str(model_dir), "--host", "127.0.0.1"]
    command += ["--port", "0", "--batch-size", str(batch_size), *options]
    env = {**os.environ, "PYTHONPATH": src} if src else None
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)


def address(process: subprocess.Popen) -> str:
    """A launched server's address, once it answers /health."""
    import httpx

    found = re.search(r"http://127\.0\.0\.1:\d+", process.stdout.readline())
    # The access log goes on to stdout: drain it, or a full pipe blocks the server after ~1,000 requests.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    if not found:
        raise SystemExit(f"the server did not start: {' '.join(process.args)}")
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"{found.group()}/health").raise_for_status()
            return found.group()
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the server did not answer /health") from None
            time.sleep(0.2)


async def load(address: str, clips: list[bytes], clients: int, requests: int, timeout: float) -> dict[str, Any]:
    """``clients`` tasks post clips (in turn) until ``requests`` are answered."""
    import httpx

    latencies: list[float] = []
    answers: dict[int, dict] = {}
    issued = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        for n in issued:
            k = n % len(clips)
            start = time.perf_counter()
            response = await http.post(f"{address}/predict", files={"file": (f"clip{k}.wav", clips[k])})
            body = response.json()
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise SystemExit(f"request {n} answered {response.status_code}: {body}")
            answers.setdefault(k, body)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        before = (await http.get(f"{address}/health")).json()
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - start
        after = (await http.get(f"{address}/health")).json()
    pools = after["pools"] - before["pools"]
    return {
        "clients": clients,
        "requests": requests,
        "seconds": round(seconds, 2),
        "requests_per_second": round(requests / seconds, 2),
        "p50_seconds": round(float(np.percentile(latencies, 50)), 3),
        "p95_seconds": round(float(np.percentile(latencies, 95)), 3),
        "requests_per_pool": round((after["requests"] - before["requests"]) / max(pools, 1), 2),
        "answers": answers,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    audio = benchlib.make_audio(args.clips, args.min_seconds, args.max_seconds, args.seed)
    clips = [wav(samples) for samples in audio]
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = benchlib.build_model(benchlib.model_encoder(args), audio).save_pretrained(Path(tmp) / "model")
        processes = {}
        try:
            for mode, options in MODES.items():  # the servers load the model at the same time
                processes[mode] = launch(model_dir, options, args.batch_size)
            servers = {mode: address(process) for mode, process in processes.items()}
            for server in servers.values():
                asyncio.run(load(server, clips, 1, min(2, args.requests), args.timeout))  # warm-up
            for clients in args.clients:  # the modes take turns, so that a busy spell hits them alike
                for mode, server in servers.items():
                    run = asyncio.run(load(server, clips, clients, args.requests, args.timeout))
                    results.setdefault(mode, []).append(run)
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
                    process.wait(timeout=60)
    keys = [f"{d}_unit" for d in ("arousal", "valence", "dominance")]
    values = {
        mode: {k: [a[key] for key in keys] for run in runs for k, a in run.pop("answers").items()}
        for mode, runs in results.items()
    }
    first, second = values.values()
    difference = max(float(np.abs(np.subtract(first[k], second[k])).max()) for k in first.keys() & second.keys())
    return {
        "machine": f"{benchlib.machine()}; server and clients on the same machine",
        "load_average_at_end": benchlib.load_average(),
        "versions": {"torch": torch.__version__},
        "model": benchlib.describe_model(benchlib.model_encoder(args)),
        "clips": f"{args.clips} generated clips of {args.min_seconds:g}-{args.max_seconds:g} s, 16 kHz 16-bit WAV",
        "audio_seconds_per_request": round(float(np.mean([len(a) for a in audio])) / benchlib.SAMPLE_RATE, 2),
        "batch_size": args.batch_size,
        "results": results,
        "max_abs_difference_between_modes": difference,
    }


def report(figures: dict[str, Any]) -> None:
    clips = f"{figures['clips']} (mean {figures['audio_seconds_per_request']} s)"
    benchlib.heading(figures, f"{clips}; batch size {figures['batch_size']}")
    print(f"{'mode':<22} {'clients':>7} {'requests':>8} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'req/pool':>8}")
    for mode, runs in figures["results"].items():
        for run in runs:
            print(
                f"{mode:<22} {run['clients']:>7} {run['requests']:>8} {run['requests_per_second']:>7.2f} "
                f"{run['p50_seconds']:>7.3f} {run['p95_seconds']:>7.3f} {run['requests_per_pool']:>8.2f}"
            )
    print(f"max |difference| between the modes on [0, 1]: {figures['max_abs_difference_between_modes']:.1e}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    options = benchlib.parser(__doc__)
    options.add_argument(
        "--clients", type=int, nargs="+", help="concurrent clients, one run each (default 1 4 16; --tiny 1 2)"
    )
    options.add_argument("--requests", type=int, help="requests per run (default 48; --tiny 4)")
    options.add_argument("--clips", type=int, help="generated clips, posted in turn (default 16; --tiny 2)")
    options.add_argument("--min-seconds", type=float, default=2.0, help="shortest clip (default 2)")
    options.add_argument("--max-seconds", type=float, default=6.0, help="longest clip (default 6)")
    options.add_argument("--batch-size", type=int, default=8, help="the server's windows per forward pass (default 8)")
    benchlib.add_model_options(options)
    options.add_argument("--timeout", type=float, default=300.0, help="seconds a request may take (default 300)")
    options.add_argument("--seed", type=int, default=0, help="audio seed (default 0)")
    args = benchlib.defaults(options.parse_args(argv), clients=([1, 4, 16], [1, 2]), requests=(48, 4), clips=(16, 2))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the servers inherit it: idle threads sleep

    figures = benchlib.finish(measure(args), args.json)
    report(figures)
    if figures["max_abs_difference_between_modes"] > PARITY:
        raise SystemExit(f"the modes disagree by more than {PARITY}")
    return figures


if __name__ == "__main__":
    main()
