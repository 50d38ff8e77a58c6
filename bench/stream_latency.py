"""Live streams: hop latency and dropped hops of ``emosphere serve``'s /stream with 1, 2 and 4 streams at once.

Starts ``emosphere serve`` (a random WavLM of base size; torch fp32 and int8
ONNX by default) in its own process and, for each number of streams, sends
that many WebSocket streams of espeak-ng conversation (bench/longrec_common.py;
each from another offset) in real time, 100 ms of 16 kHz s16le per message,
for ``--seconds``. Each answer carries the server's latency: from the arrival
of the message that completed the hop to the answer being sent. Printed per
setting: p50 and p95 latency over the answers with values (the model ran) and
over all answers, hops answered, hops dropped (merged away because the model
was behind) and their share. Target: one stream, p95 <= 1 s at a 1 s hop.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/stream_latency.py [--streams 1 2 4] [--seconds 30] [--context 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from longrec_common import SAMPLE_RATE, material, models
from websockets.asyncio.client import connect

CHUNK = SAMPLE_RATE // 10


async def stream(address: str, audio: np.ndarray, seconds: float) -> list[dict]:
    """Send ``seconds`` of ``audio`` in real time; every hop answer."""
    answers: list[dict] = []
    async with connect(f"{address}/stream", max_size=None) as socket:
        await socket.recv()

        async def receive() -> None:
            async for message in socket:
                answer = json.loads(message)
                if answer["type"] == "hop":
                    answers.append(answer)

        reader = asyncio.create_task(receive())
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
        started = time.monotonic()
        for k, first in enumerate(range(0, int(seconds * SAMPLE_RATE), CHUNK)):
            await socket.send(pcm[first : first + CHUNK].tobytes())
            await asyncio.sleep(max(0.0, started + (k + 1) * CHUNK / SAMPLE_RATE - time.monotonic()))
        await asyncio.sleep(2.0)
        await socket.send('{"type": "end"}')
        await asyncio.wait_for(reader, 30)
    return answers


def summary(answers: list[dict]) -> dict:
    def percentiles(values: list[float]) -> list[float]:
        return [round(float(np.percentile(values, q)), 3) for q in (50, 95)] if values else [None, None]

    ran = [a["latency"] for a in answers if a["status"] == "ok"]
    dropped = sum(a["skipped"] for a in answers)
    (p50, p95), (_, p95_all) = percentiles(ran), percentiles([a["latency"] for a in answers])
    return {"p50_s": p50, "p95_s": p95, "p95_all_s": p95_all, "answered": len(answers), "with_values": len(ran),
            "dropped": dropped, "dropped_share": round(dropped / max(1, dropped + len(answers)), 3)}  # fmt: skip


async def measure(address: str, audio: np.ndarray, count: int, seconds: float) -> dict:
    offsets = [int(i * len(audio) / max(count, 1)) for i in range(count)]
    streams = [stream(address, np.roll(audio, -o), seconds) for o in offsets]
    results = await asyncio.gather(*streams)
    return summary([a for answers in results for a in answers])


def serve(model: Path, max_streams: int, context: float | None) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "emosphere", "serve", "--model", str(model), "--port", "0", "--max-streams",
               str(max_streams), *(["--stream-context", str(context)] if context else [])]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    found = re.search(r"http://([\d.]+:\d+)", line)
    deadline = time.monotonic() + 120
    while found and process.poll() is None and time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://{found.group(1)}/health", timeout=5)
            return process, f"ws://{found.group(1)}"
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"emosphere serve did not start: {line!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "emosphere-bench")
    parser.add_argument("--backends", nargs="+", default=["torch", "int8"], choices=["torch", "onnx", "int8"])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--context", type=float, help="the service's --stream-context (default: its own, 12 s)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    paths, audio = models(args.cache), material()
    figures: dict = {"cpus": os.cpu_count(), "seconds": args.seconds, "context": args.context, "runs": {}}
    for backend in args.backends:
        process, address = serve(paths[backend], max(args.streams), args.context)
        try:
            asyncio.run(measure(address, audio, 1, 5.0))  # warm up
            for count in args.streams:
                result = asyncio.run(measure(address, audio, count, args.seconds))
                figures["runs"][f"{backend} x{count}"] = result
                print(f"{backend:6} {count} stream(s): {result}", flush=True)
        finally:
            process.terminate()
            process.wait(30)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
