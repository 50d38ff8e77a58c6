"""Prediction throughput, files to table, in 1 and 2 processes on the CPU and on one GPU.

Writes generated utterances as WAV files to a temporary folder, saves a random
WavLM (base size by default; ``--hidden 1024 --layers 24`` for large) as a
model directory (or exports it to ONNX, ``--backend onnx [--int8]``), and
times ``torchrun ... -m emosphere predict FOLDER`` end to end, for each
setting:

* CPU (default): one process with all ``T`` cores' threads; one process with
  ``T/2``; two processes with ``T/2`` each (2 processes / 1 process with the
  same threads each is the scaling of processes; against all the threads in
  one, the gain of using processes at all);
* ``--device cuda``: one process on one GPU, at ``--precision``.

(``--tiny``, which checks that the script runs, takes the first CPU setting alone.)

For each it reports the seconds of prediction (from the command's summary
line: from the first source to the merged table, without start-up and model
loading) and of the whole command, utterances per second and audio hours per
hour, and checks that the settings' tables agree. The settings take turns
for ``--repeats`` rounds; each one's fastest round counts.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/predict_scale.py [--utterances 64] [--json figures.json]
    python bench/predict_scale.py --device cuda --precision bf16 --hidden 1024 --layers 24 \\
        --utterances 4000 --batch-size 32 --workers 8 --rate 24000
    HF_HUB_OFFLINE=1 .venv/bin/python bench/predict_scale.py --tiny          # does it run? (seconds)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np

SUMMARY = re.compile(r": (\d+) source\(s\), ([\d.]+) h of audio predicted in ([\d.]+) s")


def settings(args: argparse.Namespace) -> list[tuple[str, int, int | None]]:
    """(name, processes, threads per process); with --tiny, on the CPU, the first alone."""
    if args.device != "cpu":
        return [(f"1 GPU ({args.device}, {args.precision})", 1, None)]
    cores = args.cores
    half = max(1, cores // 2)
    chosen = [
        (f"1 process x {cores} threads", 1, cores),
        (f"1 process x {half} threads", 1, half),
        (f"2 processes x {half} threads", 2, half),
    ]
    return chosen[:1] if args.tiny else chosen


def run(
    args: argparse.Namespace, folder: Path, model: Path, output: Path, processes: int, threads: int | None
) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(processes),
        "-m",
        "emosphere",
        "predict",
        str(folder),
        "--model",
        str(model),
        "--output",
        str(output),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
        "--quiet",
        "--backend",
        args.backend,
    ]
    if threads:
        command += ["--threads", str(threads)]
    if args.device != "cpu":
        command += ["--device", args.device, "--precision", args.precision]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    start = time.perf_counter()
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    match = SUMMARY.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return {"sources": int(match[1]), "predict_seconds": float(match[3]), "wall_seconds": wall}


def write_inputs(args: argparse.Namespace, root: Path, audio: list[np.ndarray]) -> tuple[Path, Path]:
    """The utterances as WAV files at ``--rate`` in ``root``/audio, and the model (directory or ONNX file)."""
    import soundfile as sf
    import soxr

    (root / "audio").mkdir()
    for i, wave in enumerate(audio):
        if args.rate != benchlib.SAMPLE_RATE:
            wave = soxr.resample(wave, benchlib.SAMPLE_RATE, args.rate).astype(np.float32)
        sf.write(root / "audio" / f"{i:06d}.wav", wave, args.rate)
    model = benchlib.build_model(benchlib.model_encoder(args), audio)
    if args.backend == "onnx":
        return root / "audio", benchlib.export(model, root / "model.onnx", quantize="int8" if args.int8 else None)
    return root / "audio", model.save_pretrained(root / "model")


def measure(args: argparse.Namespace, audio_hours: float, audio: list[np.ndarray]) -> dict[str, dict[str, Any]]:
    """Each setting's fastest round, and its largest difference from the first setting's table."""
    from emosphere.io import read_table

    chosen = settings(args)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder, model_path = write_inputs(args, root, audio)
        for _ in range(args.repeats):  # the settings take turns
            for name, processes, threads in chosen:
                output = root / f"{len(rounds[name])}-{processes}-{threads}.csv"
                rounds[name].append(run(args, folder, model_path, output, processes, threads))
        tables = {name: read_table(root / f"0-{processes}-{threads}.csv") for name, processes, threads in chosen}
    numeric = {name: table.select_dtypes("number").to_numpy() for name, table in tables.items()}
    first = chosen[0][0]
    rows = {}
    for name, processes, threads in chosen:
        best = min(rounds[name], key=lambda r: r["predict_seconds"])
        rows[name] = {
            "processes": processes,
            "threads_per_process": threads,
            **best,
            "rounds": [r["predict_seconds"] for r in rounds[name]],
            "utterances_per_second": round(args.utterances / best["predict_seconds"], 2),
            "audio_seconds_per_second": round(audio_hours * 3600 / best["predict_seconds"], 1),
            "audio_hours_per_hour": round(audio_hours / (best["predict_seconds"] / 3600), 1),
            "audio_hours_per_hour_wall": round(audio_hours / (best["wall_seconds"] / 3600), 1),
            "max_abs_difference": float(np.abs(numeric[name] - numeric[first]).max()),
        }
    return rows


def report(figures: dict[str, Any]) -> None:
    seconds = figures["audio_hours"] * 3600
    benchlib.heading(figures, f"{figures['utterances']} utterances, {seconds:.0f} s of audio at {figures['rate']} Hz")
    print(f"{'setting':<32} {'predict s':>9} {'wall s':>8} {'utt/s':>7} {'audio h/h':>9} {'(wall)':>8}  rounds")
    for name, row in figures["settings"].items():
        print(
            f"{name:<32} {row['predict_seconds']:>9.1f} {row['wall_seconds']:>8.1f} "
            f"{row['utterances_per_second']:>7.2f} {row['audio_hours_per_hour']:>9.1f} "
            f"{row['audio_hours_per_hour_wall']:>8.1f}  {row['rounds']}  (max |diff| {row['max_abs_difference']:.1e})"
        )
    if "two_processes_over_one_same_threads" in figures:
        print(
            f"2 processes / 1 process: {figures['two_processes_over_one_same_threads']}x with the same threads "
            f"each, {figures['two_processes_over_one_all_threads']}x against one process with all the threads"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    options = benchlib.parser(__doc__)
    options.add_argument("--utterances", type=int, help="generated utterances (default 64; --tiny 4)")
    options.add_argument("--min-seconds", type=float, default=2.0)
    options.add_argument("--max-seconds", type=float, default=10.0)
    options.add_argument(
        "--rate",
        type=int,
        default=benchlib.SAMPLE_RATE,
        help="sample rate of the files (default 16000; 24000 for LibriTTS: resampled when read)",
    )
    benchlib.add_model_options(options)
    options.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    options.add_argument("--int8", action="store_true", help="with --backend onnx: the int8 model")
    options.add_argument("--device", default="cpu", help="cpu (1 and 2 processes) or cuda (1 GPU)")
    options.add_argument("--precision", default="bf16", help="on a GPU: fp32, bf16 or fp16 (default bf16)")
    options.add_argument("--batch-size", type=int, default=8)
    options.add_argument("--workers", type=int, default=0, help="decoding threads per process (default 0)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    options.add_argument("--cores", type=int, default=cores, help=f"CPU cores to use (default: all, {cores})")
    options.add_argument("--repeats", type=int, help="rounds of the settings; the fastest counts (default 2; --tiny 1)")
    args = benchlib.defaults(options.parse_args(argv), utterances=(64, 4), repeats=(2, 1))

    audio = benchlib.make_audio(args.utterances, args.min_seconds, args.max_seconds, seed=0)
    audio_hours = sum(len(wave) for wave in audio) / benchlib.SAMPLE_RATE / 3600
    rows = measure(args, audio_hours, audio)
    figures = {
        "machine": f"{benchlib.machine(args.device)} ({args.cores} CPUs used)",
        "load_average_at_end": benchlib.load_average(),
        "model": benchlib.describe_model(benchlib.model_encoder(args), f"{args.backend}{' int8' if args.int8 else ''}"),
        "utterances": args.utterances,
        "audio_hours": round(audio_hours, 4),
        "rate": args.rate,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "repeats": args.repeats,
        "settings": rows,
    }
    if len(rows) == 3:
        seconds = [row["predict_seconds"] for row in rows.values()]
        figures["two_processes_over_one_same_threads"] = round(seconds[1] / seconds[2], 2)
        figures["two_processes_over_one_all_threads"] = round(seconds[0] / seconds[2], 2)
    report(benchlib.finish(figures, args.json))
    return figures


if __name__ == "__main__":
    main()
