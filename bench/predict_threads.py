"""CPU threads of ``emosphere predict``: the default against 1 thread and one per core, idle and busy.

Each setting runs ``emosphere predict`` in a fresh process on the same
generated clips and the figure is the time the command reports for the
prediction itself ("predicted in X s": after the model has loaded). Settings:

* ``default``: no ``--threads`` (emosphere.threads: passive OpenMP waiting,
  the engine's thread count unless fewer cores are usable);
* ``1 thread`` and ``all cores`` (``--threads N``), passive waiting too;
* ``+1 decoder``: the default with one thread that decodes audio ahead of
  the model (``--workers 1``; the default is 0);
* ``before``: the default before issue 19, the engine's thread count with
  OpenMP's own wait policy (``OMP_WAIT_POLICY`` set empty, which libgomp
  ignores, so the command's passive default does not apply).

Two conditions: ``idle`` (nothing started by the bench; on a shared machine
only approximately idle, so the load average is printed) and ``busy``
(``--competitors`` processes, default one per core, that keep a core each
busy for the whole measurement). The settings take turns, ``--repeats``
times per condition; the median and the range are reported, and each
setting's median against the best median of its condition.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/predict_threads.py --model runs/demo/model [--json figures.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from predict_speed import SAMPLE_RATE, make_audio

SPIN = "while True: pass"


def settings(cores: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each setting's extra arguments and environment."""
    return {
        "default": ([], {}),
        "1 thread": (["--threads", "1"], {}),
        f"all cores ({cores})": (["--threads", str(cores)], {}),
        "+1 decoder": (["--workers", "1"], {}),
        "before": ([], {"OMP_WAIT_POLICY": ""}),
    }


def run_once(model: str, clips: Path, extra: list[str], env: dict[str, str]) -> tuple[float, str]:
    """One ``emosphere predict``: the seconds it reports for the prediction, and its thread line."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "emosphere", "predict", str(clips), "--model", model]
        command += ["--output", f"{tmp}/out.csv", "--quiet", *extra]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, check=False)
    found = re.search(r"predicted in ([0-9.]+) s", done.stdout)
    if done.returncode != 0 or not found:
        raise SystemExit(f"{' '.join(command)} failed (exit code {done.returncode}):\n{done.stdout}\n{done.stderr}")
    threads = re.search(r"CPU threads of the model: (\S+) \((.*); --threads to choose\)", done.stderr)
    return float(found.group(1)), f"{threads.group(1)} ({threads.group(2)})" if threads else ""


def condition(args: argparse.Namespace, clips: Path, busy: int) -> dict[str, Any]:
    """Every setting ``args.repeats`` times, in turns, with ``busy`` competing processes."""
    competitors = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
    times: dict[str, list[float]] = {}
    chosen: list[str] = []
    try:
        time.sleep(1.0 if busy else 0.0)  # the competitors are running before the first measurement
        for _ in range(args.repeats):
            for name, (extra, env) in settings(args.cores).items():
                seconds, threads = run_once(args.model, clips, extra, env)
                times.setdefault(name, []).append(seconds)
                if name == "default":
                    chosen.append(threads)
    finally:
        for process in competitors:
            process.kill()
            process.wait()
    medians = {name: float(np.median(values)) for name, values in times.items()}
    best = min(medians.values())
    return {
        "competitors": busy,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "default_chose": chosen,
        "settings": {
            name: {
                "median_s": round(medians[name], 2),
                "min_s": round(min(values), 2),
                "max_s": round(max(values), 2),
                "vs_best": round(medians[name] / best, 2),
            }
            for name, values in times.items()
        },
    }


def report(figures: dict[str, Any]) -> None:
    print(f"{figures['clips']}; model {figures['model']}; {figures['machine']}")
    for name, result in figures["conditions"].items():
        print(
            f"\n{name}: {result['competitors']} competing process(es), load average "
            f"{result['load_average_1min_at_end']} at the end; the default's threads: {result['default_chose'][0]}"
        )
        print(f"  {'setting':<16} {'median s':>9} {'range s':>13} {'vs best':>8}")
        for setting, row in result["settings"].items():
            spread = f"{row['min_s']:.2f}-{row['max_s']:.2f}"
            print(f"  {setting:<16} {row['median_s']:>9.2f} {spread:>13} {row['vs_best']:>7.2f}x")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory, e.g. runs/demo/model")
    parser.add_argument("--clips", type=int, default=40, help="generated clips (default 40)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="shortest clip (default 2)")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="longest clip (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each setting per condition (default 3)")
    parser.add_argument("--competitors", type=int, help="competing processes when busy (default: one per core)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    import soundfile as sf

    args.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    audio = make_audio(args.clips, args.min_seconds, args.max_seconds, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        for i, samples in enumerate(audio):
            sf.write(f"{tmp}/clip{i:03d}.wav", samples, SAMPLE_RATE)
        conditions = {
            "idle": condition(args, Path(tmp), 0),
            "busy": condition(args, Path(tmp), args.competitors or args.cores),
        }
    figures = {
        "clips": f"{args.clips} generated clips of {args.min_seconds:g}-{args.max_seconds:g} s "
        f"({sum(map(len, audio)) / SAMPLE_RATE:.0f} s of audio)",
        "model": args.model,
        "machine": f"{args.cores} usable cores, {os.cpu_count()} CPUs",
        "conditions": conditions,
    }
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
