"""Service fairness: how long a 1 s clip waits while a long upload is being predicted.

Starts ``emosphere serve`` (bench/serve_load.py's launcher) and posts a 1 s
clip alone, then ``--head-start`` seconds after a ``--long-seconds`` upload
(400 s by default), then after such an upload whose client gave up at the
head start (its windows must be dropped). Reported: the clip's median latency
in each case and its ratio to the clip alone (target: within 2x), for this
tree and, with ``--before SRC``, for another source tree side by side. See
docs/benchmarks.md.

    python bench/serve_fairness.py --model runs/demo/model [--before /tmp/main/src] [--options '--lanes 1']
    python bench/serve_fairness.py --tiny                                   # does it run? (seconds)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
from serve_load import address, launch, wav


def clip_latency(server: str, clip: bytes, long: bytes | None, head_start: float, gone: bool) -> float:
    """Seconds to answer ``clip``, posted ``head_start`` s after ``long`` (when given); with ``gone``,
    the long upload's client gives up (times out) at the head start, before the clip is posted."""
    import httpx

    def post_long() -> None:
        with contextlib.suppress(httpx.TimeoutException):
            httpx.post(f"{server}/predict", files={"file": ("long.wav", long)}, timeout=head_start if gone else 600)

    sender = threading.Thread(target=post_long)
    if long is not None:
        sender.start()
        time.sleep(head_start)
        if gone:
            sender.join()
    start = time.perf_counter()
    response = httpx.post(f"{server}/predict", files={"file": ("clip.wav", clip)}, timeout=600)
    seconds = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"the clip was answered {response.status_code}: {response.text}")
    if long is not None:
        sender.join()
    return seconds


def cases(server: str, args: argparse.Namespace) -> dict[str, Any]:
    """The clip's latencies on one server: alone, behind the long upload, behind a gone client's."""
    clip = wav(benchlib.make_audio(1, 1.0, 1.0, args.seed)[0][: benchlib.SAMPLE_RATE])
    long = wav(benchlib.make_audio(1, args.long_seconds, args.long_seconds, args.seed + 1)[0])
    clip_latency(server, clip, None, 0, False)  # warm-up
    found: dict[str, Any] = {}
    for case, (other, gone) in {"alone": (None, False), "long in flight": (long, False),
                                "long's client gone": (long, True)}.items():  # fmt: skip
        times = [clip_latency(server, clip, other, args.head_start, gone) for _ in range(args.repeats)]
        found[case] = {"median_s": round(float(np.median(times)), 3), "all_s": [round(t, 3) for t in times]}
    for case in ("long in flight", "long's client gone"):
        found[case]["vs_alone"] = round(found[case]["median_s"] / found["alone"]["median_s"], 2)
    return found


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        audio = benchlib.make_audio(2, 1.0, 3.0, args.seed)  # the random model's normalisation
        model = args.model or benchlib.build_model(benchlib.model_encoder(args), audio).save_pretrained(Path(tmp) / "m")
        results = {}
        for label, src in ({"before": args.before, "after": None} if args.before else {"after": None}).items():
            process = launch(Path(model), args.options.split(), args.batch_size, src)
            try:
                results[label] = cases(address(process), args)
            finally:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=120)
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs; server and clients on the same machine",
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "model": args.model or benchlib.describe_model(benchlib.model_encoder(args)),
        "long_seconds": args.long_seconds,
        "head_start_s": args.head_start,
        "results": results,
    }


def report(figures: dict[str, Any]) -> None:
    print(
        f"a 1 s clip behind a {figures['long_seconds']:g} s upload posted {figures['head_start_s']:g} s before it; "
        f"model {figures['model']}\n{figures['machine']}; load average {figures['load_average_at_end']}"
    )
    print(f"{'server':<8} {'case':<20} {'median s':>9} {'vs alone':>9}  all s")
    for label, found in figures["results"].items():
        for case, row in found.items():
            ratio = f"{row['vs_alone']:.2f}x" if "vs_alone" in row else ""
            print(f"{label:<8} {case:<20} {row['median_s']:>9.3f} {ratio:>9}  {row['all_s']}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    options = benchlib.parser(__doc__)
    options.add_argument("--model", help="the model directory the server runs (default: a random one)")
    benchlib.add_model_options(options)
    options.add_argument("--before", help="also run a server from this source tree (its src), side by side")
    options.add_argument("--long-seconds", type=float, help="the long upload (default 400; --tiny 20)")
    options.add_argument("--head-start", type=float, default=2.0, help="seconds before the clip (default 2)")
    options.add_argument("--repeats", type=int, help="clips per case (default 3; --tiny 1)")
    options.add_argument("--batch-size", type=int, default=8, help="the server's windows per forward pass (default 8)")
    options.add_argument("--options", default="", help="more options of the servers, e.g. '--lanes 1'")
    options.add_argument("--seed", type=int, default=0, help="audio seed (default 0)")
    args = benchlib.defaults(options.parse_args(argv), long_seconds=(400.0, 20.0), repeats=(3, 1))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the servers inherit it: idle threads sleep
    figures = benchlib.finish(measure(args), args.json)
    report(figures)
    return figures


if __name__ == "__main__":
    main()
