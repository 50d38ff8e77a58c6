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

``--fairness`` measures instead how long a 1 s clip waits while a long upload
(``--long-seconds``, default 400 s) is in flight, on one server with the
default settings (``--model``: a model directory, e.g. runs/demo/model):
the clip's latency alone (median of ``--repeats``), while the long upload is
being predicted (posted ``--head-start`` seconds before the clip), and after
the long upload's client gave up (its request timed out after the head
start). ``--before SRC`` runs the same on a server from another source tree
(e.g. an earlier checkout's ``src``), side by side.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/serve_load.py [--json figures.json]
    python bench/serve_load.py --hidden 64 --layers 2 --requests 16        # a quick check
    python bench/serve_load.py --fairness --model runs/demo/model --before /tmp/main/src
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from predict_speed import SAMPLE_RATE, build_model, make_audio

PARITY = 1e-5
MODES = {"batched": ["--batching", "on"], "one request at a time": ["--batching", "off"]}


def wav(samples: np.ndarray) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def start_server(
    model_dir: Path, options: list[str], batch_size: int, src: str | None = None
) -> tuple[subprocess.Popen, str]:
    """``emosphere serve`` (from the source tree ``src``, default the one installed) on a free loopback
    port, and its address once it answers /health."""
    import httpx

    command = [
        sys.executable,
        "-m",
        "emosphere.cli",
        "serve",
        "--model",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--batch-size",
        str(batch_size),
        *options,
    ]
    env = {**os.environ, "PYTHONPATH": src} if src else None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    found = re.search(r"http://127\.0\.0\.1:\d+", process.stdout.readline())
    # The access log goes on to stdout: drain it, or a full pipe blocks the server after ~1,000 requests.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    if not found:
        process.kill()
        raise SystemExit(f"the server did not start: {' '.join(command)}")
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"{found.group()}/health").raise_for_status()
            return process, found.group()
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
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

    audio = make_audio(args.clips, args.min_seconds, args.max_seconds, args.seed)
    clips = [wav(samples) for samples in audio]
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(args.hidden, args.layers, audio).save_pretrained(Path(tmp) / "model")
        servers = {}
        try:
            for mode, options in MODES.items():
                servers[mode] = start_server(model_dir, options, args.batch_size)
                asyncio.run(load(servers[mode][1], clips, 1, min(2, args.requests), args.timeout))  # warm-up
            for clients in args.clients:  # the modes take turns, so that a busy spell hits them alike
                for mode, (_, address) in servers.items():
                    run = asyncio.run(load(address, clips, clients, args.requests, args.timeout))
                    results.setdefault(mode, []).append(run)
        finally:
            for process, _ in servers.values():
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
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs; server and clients on the same machine",
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "versions": {"torch": torch.__version__},
        "model": f"random WavLM, hidden {args.hidden}, {args.layers} layers; style pooling; octant head",
        "clips": f"{args.clips} generated clips of {args.min_seconds:g}-{args.max_seconds:g} s, 16 kHz 16-bit WAV",
        "audio_seconds_per_request": round(float(np.mean([len(a) for a in audio])) / SAMPLE_RATE, 2),
        "batch_size": args.batch_size,
        "results": results,
        "max_abs_difference_between_modes": difference,
    }


def clip_latency(address: str, clip: bytes, long: bytes | None, head_start: float, gone: bool) -> float:
    """Seconds to answer ``clip``, posted ``head_start`` s after ``long`` (when given); with ``gone``,
    the long upload's client gives up (times out) at the head start, before the clip is posted."""
    import httpx

    def post_long() -> None:
        with contextlib.suppress(httpx.TimeoutException):
            httpx.post(f"{address}/predict", files={"file": ("long.wav", long)}, timeout=head_start if gone else 600)

    sender = threading.Thread(target=post_long)
    if long is not None:
        sender.start()
        time.sleep(head_start)
        if gone:
            sender.join()
    start = time.perf_counter()
    response = httpx.post(f"{address}/predict", files={"file": ("clip.wav", clip)}, timeout=600)
    seconds = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"the clip was answered {response.status_code}: {response.text}")
    if long is not None:
        sender.join()
    return seconds


def fairness(args: argparse.Namespace) -> dict[str, Any]:
    """The clip's latency alone, behind a long upload, and behind one whose client went away."""
    clip = wav(make_audio(1, 1.0, 1.0, args.seed)[0][:SAMPLE_RATE])
    long = wav(make_audio(1, args.long_seconds, args.long_seconds, args.seed + 1)[0])
    trees = {"before": args.before, "after": None} if args.before else {"after": None}
    results: dict[str, dict[str, Any]] = {}
    for label, src in trees.items():
        process, address = start_server(Path(args.model), args.options.split(), args.batch_size, src)
        try:
            clip_latency(address, clip, None, 0, False)  # warm-up
            cases = {"alone": (None, False), "long in flight": (long, False), "long's client gone": (long, True)}
            results[label] = {}
            for case, (other, gone) in cases.items():
                times = [clip_latency(address, clip, other, args.head_start, gone) for _ in range(args.repeats)]
                results[label][case] = {
                    "median_s": round(float(np.median(times)), 3),
                    "all_s": [round(t, 3) for t in times],
                }
            alone = results[label]["alone"]["median_s"]
            for case in ("long in flight", "long's client gone"):
                results[label][case]["vs_alone"] = round(results[label][case]["median_s"] / alone, 2)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs; server and clients on the same machine",
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "model": args.model,
        "long_seconds": args.long_seconds,
        "head_start_s": args.head_start,
        "results": results,
    }


def report_fairness(figures: dict[str, Any]) -> None:
    print(
        f"a 1 s clip behind a {figures['long_seconds']:g} s upload posted {figures['head_start_s']:g} s before it; "
        f"model {figures['model']}\n{figures['machine']}; load average {figures['load_average_at_end']}"
    )
    print(f"{'server':<8} {'case':<20} {'median s':>9} {'vs alone':>9}  all s")
    for label, cases in figures["results"].items():
        for case, row in cases.items():
            ratio = f"{row['vs_alone']:.2f}x" if "vs_alone" in row else ""
            print(f"{label:<8} {case:<20} {row['median_s']:>9.3f} {ratio:>9}  {row['all_s']}")


def report(figures: dict[str, Any]) -> None:
    print(
        f"{figures['model']}; {figures['clips']} (mean {figures['audio_seconds_per_request']} s)\n"
        f"{figures['machine']}; batch size {figures['batch_size']}; load average {figures['load_average_at_end']}"
    )
    print(f"{'mode':<22} {'clients':>7} {'requests':>8} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'req/pool':>8}")
    for mode, runs in figures["results"].items():
        for run in runs:
            print(
                f"{mode:<22} {run['clients']:>7} {run['requests']:>8} {run['requests_per_second']:>7.2f} "
                f"{run['p50_seconds']:>7.3f} {run['p95_seconds']:>7.3f} {run['requests_per_pool']:>8.2f}"
            )
    print(f"max |difference| between the modes on [0, 1]: {figures['max_abs_difference_between_modes']:.1e}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrent clients, one run each (default 1 4 16)"
    )
    parser.add_argument("--requests", type=int, default=48, help="requests per run (default 48)")
    parser.add_argument("--clips", type=int, default=16, help="generated clips, posted in turn (default 16)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="shortest clip (default 2)")
    parser.add_argument("--max-seconds", type=float, default=6.0, help="longest clip (default 6)")
    parser.add_argument("--batch-size", type=int, default=8, help="the server's windows per forward pass (default 8)")
    parser.add_argument("--hidden", type=int, default=768, help="encoder hidden size (default 768, base)")
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (default 12, base)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a request may take (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="audio seed (default 0)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--fairness", action="store_true", help="measure a short clip behind a long upload instead")
    parser.add_argument("--model", help="with --fairness: the model directory the server runs")
    parser.add_argument("--before", help="with --fairness: also run a server from this source tree (its src)")
    parser.add_argument("--long-seconds", type=float, default=400.0, help="with --fairness: the long upload (400)")
    parser.add_argument("--head-start", type=float, default=2.0, help="with --fairness: seconds before the clip (2)")
    parser.add_argument("--repeats", type=int, default=3, help="with --fairness: clips per case (default 3)")
    parser.add_argument("--options", default="", help="with --fairness: more options of the servers, e.g. '--lanes 1'")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the servers inherit it: idle threads sleep

    if args.fairness:
        if not args.model:
            parser.error("--fairness needs --model")
        figures = fairness(args)
        report_fairness(figures)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return figures
    figures = measure(args)
    report(figures)
    if figures["max_abs_difference_between_modes"] > PARITY:
        raise SystemExit(f"the modes disagree by more than {PARITY}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
