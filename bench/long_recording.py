"""A long recording with ``--segments vad``: real-time factor, the VAD's share, and memory from 10 to 60 minutes.

For each backend (torch fp32, int8 ONNX) and each length (10 and 60 minutes of
espeak-ng conversation with pauses, music and silence; bench/longrec_common.py),
runs ``emosphere predict --segments vad`` in a fresh process and prints its
wall time, real-time factor (wall seconds per audio second), the speech found,
and the process's peak RSS; then the peak RSS growth from 10 to 60 minutes
(the target: <= 100 MiB, i.e. memory does not grow with the recording). The
VAD alone is timed over the 60-minute file in this process: its share is its
time over the whole run's. The model is a random WavLM of base size.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/long_recording.py [--cache /tmp/emosphere-bench] [--minutes 10 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from longrec_common import models, recording

MEASURE = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)
"""Runs a command and prints its peak resident set size in KiB."""


def run(model: Path, audio: Path, output: Path, threads: int) -> dict:
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "emosphere", "predict", "--model", str(model),
               "--segments", "vad", "--threads", str(threads), "--output", str(output), "--quiet",
               str(audio)]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    table = pd.read_csv(output)
    duration = float(table["end"].iloc[0])
    return {"wall_s": round(seconds, 1), "rtf": round(seconds / duration, 4), "audio_s": round(duration),
            "speech_s": round(float(table["speech_seconds"].iloc[0])), "rows": len(table),
            "peak_rss_mib": round(int(done.stdout.split()[-1]) / 1024, 1)}  # fmt: skip


def vad_seconds(audio: Path) -> float:
    from emosphere.audio import blocks
    from emosphere.vad import speech_regions

    started = time.perf_counter()
    speech_regions(blocks(audio))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "emosphere-bench")
    parser.add_argument("--minutes", type=float, nargs=2, default=[10, 60])
    parser.add_argument("--backends", nargs="+", default=["torch", "int8"], choices=["torch", "onnx", "int8"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    paths = models(args.cache)
    audio = {m: recording(args.cache / f"talk-{m:g}min.wav", m * 60) for m in args.minutes}
    figures: dict = {"cpus": os.cpu_count(), "threads": args.threads, "runs": {}}
    for backend in args.backends:
        for minutes, path in audio.items():
            with tempfile.TemporaryDirectory() as folder:
                result = run(paths[backend], path, Path(folder) / "out.csv", args.threads)
            figures["runs"][f"{backend} {minutes:g} min"] = result
            print(f"{backend:6} {minutes:4g} min: {result}", flush=True)
        short, long = (figures["runs"][f"{backend} {m:g} min"]["peak_rss_mib"] for m in args.minutes)
        figures["runs"][f"{backend} rss growth"] = round(long - short, 1)
        print(f"{backend:6} peak RSS growth {args.minutes[0]:g} -> {args.minutes[1]:g} min: {long - short:.1f} MiB")
    longest = audio[max(args.minutes)]
    vad = vad_seconds(longest)
    figures["vad_s"] = round(vad, 1)
    for backend in args.backends:
        share = vad / figures["runs"][f"{backend} {max(args.minutes):g} min"]["wall_s"]
        figures["runs"][f"{backend} vad share"] = round(share, 3)
        print(f"VAD alone over {max(args.minutes):g} min: {vad:.1f} s, {share:.1%} of the {backend} run")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
