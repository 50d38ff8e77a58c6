"""Memory of prediction against the number of inputs: the input stream, decoding, chunks and merge.

For each count of files (default 1,000, 10,000 and 100,000), a fresh process
runs ``emosphere.predict.predict_to_file`` over that many generated short
files with a model-free backend (constant outputs: the model's own memory
does not depend on the number of files, and running a real one over 100,000
files takes hours on 2 cores), and reports its peak resident memory, the
wall time and the files per second of everything but the model. The files
are hard links to a few short WAV files (``--seconds`` long) in folders of
1,000, so the disk holds only the few. The input is a list file (one path a
line), a folder tree, or a segment table (``--input segments``: that many
distinct segments of a one-hour recording).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/predict_memory.py [--counts 1000 10000 100000] [--input list]
    HF_HUB_OFFLINE=1 .venv/bin/python bench/predict_memory.py --tiny          # does it run? (seconds)
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import SAMPLE_RATE, answer, child_json, defaults, finish, parser, predict_to_file

REGIONS = [f"R{i}" for i in range(8)]


class ConstantBackend:
    """A backend without a model: every window gets the same outputs."""

    region_names = REGIONS
    min_samples = 400
    window_seconds = 12.0

    @property
    def regions(self):
        from emosphere.sphere import RegionSet

        return RegionSet("octant")

    def __call__(self, waveform: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full((len(lengths), 3), 0.5, np.float32), np.zeros((len(lengths), len(REGIONS)), np.float32)


def make_inputs(root: Path, count: int, kind: str, seconds: float) -> Path:
    """``count`` inputs under ``root`` and the one path that names them all."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    if kind == "segments":  # one hour of 16-bit audio; distinct segments start every 0.5 s, then shifted
        import pandas as pd

        per_pass = 7000
        starts = (np.arange(count) % per_pass) * 0.5 + (np.arange(count) // per_pass) * 0.01
        with sf.SoundFile(root / "long.wav", "w", SAMPLE_RATE, 1, "PCM_16") as long:
            for _ in range(int(starts.max() + seconds) // 60 + 1):
                long.write(0.1 * rng.standard_normal(60 * SAMPLE_RATE))
        pd.DataFrame({"file": "long.wav", "start": starts, "end": starts + seconds}).to_csv(
            root / "segments.csv", index=False
        )
        return root / "segments.csv"
    originals = []
    for i in range(4):
        path = root / f"original{i}.wav"
        sf.write(
            path, 0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE * (1 + i / 4))).astype(np.float32), SAMPLE_RATE
        )
        originals.append(path)
    with open(root / "list.txt", "w") as listing:
        for i in range(count):
            folder = root / "audio" / f"{i // 1000:04d}"
            if i % 1000 == 0:
                folder.mkdir(parents=True)
            os.link(originals[i % len(originals)], folder / f"{i:07d}.wav")
            listing.write(f"audio/{i // 1000:04d}/{i:07d}.wav\n")
    return root / "list.txt" if kind == "list" else root / "audio"


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: since its exec, unlike ru_maxrss, which on Linux
    keeps the high-water mark of the process it was forked from)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args: argparse.Namespace) -> None:
    """In a fresh process: predict the inputs and print the figures as JSON."""
    start = time.perf_counter()
    summary = predict_to_file(
        ConstantBackend(), [args.worker], args.output, batch_size=args.batch_size, workers=args.workers
    )
    seconds = time.perf_counter() - start
    answer(
        {
            "sources": summary.sources,
            "failed": summary.failed,
            "seconds": round(seconds, 2),
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "output_mib": round(Path(args.output).stat().st_size / 2**20, 1),
        }
    )


def main(argv: list[str] | None = None) -> list[dict]:
    options = parser(__doc__)
    options.add_argument(
        "--counts", type=int, nargs="+", help="numbers of files (default 1000 10000 100000; --tiny 50)"
    )
    options.add_argument(
        "--input", choices=["list", "folder", "segments"], default="list", help="how the files are named (default list)"
    )
    options.add_argument("--seconds", type=float, default=0.5, help="length of each file or segment (default 0.5)")
    options.add_argument("--batch-size", type=int, default=8)
    options.add_argument("--workers", type=int, default=0, help="decoding threads (default 0)")
    options.add_argument("--worker", help=argparse.SUPPRESS)
    options.add_argument("--output", help=argparse.SUPPRESS)
    args = defaults(options.parse_args(argv), counts=([1000, 10_000, 100_000], [50]))
    if args.worker:
        worker(args)
        return []
    figures = []
    for count in args.counts:
        with tempfile.TemporaryDirectory() as tmp:
            inputs = make_inputs(Path(tmp), count, args.input, args.seconds)
            command = [sys.executable, __file__, "--worker", str(inputs), "--output", f"{tmp}/out.csv"]
            command += ["--batch-size", str(args.batch_size), "--workers", str(args.workers)]
            row = {"files": count, "input": args.input, **child_json(command, what=f"{count} files")}
        row["files_per_second"] = round(count / row["seconds"], 1)
        figures.append(row)
        print(
            f"{count:>8} {args.input} inputs: peak RSS {row['peak_rss_mib']:>7.1f} MiB, {row['seconds']:>7.1f} s, "
            f"{row['files_per_second']:>7.1f} files/s (no model), output {row['output_mib']} MiB",
            flush=True,
        )
    return finish(figures, args.json)


if __name__ == "__main__":
    main()
