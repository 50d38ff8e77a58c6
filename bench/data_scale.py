"""Data at scale: peak memory and time to the first batch, streaming vs decoding the corpus first.

Generates MSP-Podcast-layout corpora of the given sizes (minutes of audio;
utterances of 2-10 s, 16 kHz PCM_16 WAV) and runs two ways of feeding
training, each in a fresh process so that its peak memory is its own:

  (a) ours: ``labels.prepare_labels`` (audio headers only) and
      ``data.loader``, which decodes each file when its batch is asked for;
  (b) decode first (the original recipe's way): read the label table, decode
      every training file into memory, then batch from memory.

For each it reports the time to the first training batch, the time to go
through every training batch once, and the peak resident memory above the
process's memory after imports (``ru_maxrss`` minus the RSS measured before
any data is touched), at the first batch and over the whole pass. The loader runs in the main
process (``num_workers=0``) so that all its memory is counted. Target: (a)'s peak does not grow with the
corpus, (b)'s grows with it. See docs/benchmarks.md.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/data_scale.py [--minutes 10 100 300] [--json figures.json]
    HF_HUB_OFFLINE=1 .venv/bin/python bench/data_scale.py --tiny       # does it run? (seconds)
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import SAMPLE_RATE, answer, child_json, defaults, finish, parser

BATCH_SIZE = 16
WAYS = ("streaming", "decode-first")


def make_corpus(root: Path, minutes: float, seed: int = 0) -> Path:
    """Write utterances of 2-10 s until ``minutes`` of audio, 80 % Train and 20 % Development."""
    import pandas as pd
    import soundfile as sf

    rng = np.random.default_rng(seed)
    (root / "Audios").mkdir(parents=True)
    (root / "Labels").mkdir()
    rows, total, i = [], 0.0, 0
    while total < minutes * 60:
        seconds = rng.uniform(2, 10)
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        wave = 0.1 * np.sin(2 * np.pi * rng.uniform(90, 260) * t) + 0.01 * rng.standard_normal(len(t))
        name = f"BENCH_{i:06d}.wav"
        sf.write(root / "Audios" / name, wave.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        avd = np.round(rng.uniform(1, 7, 3), 1)
        rows.append(
            {
                "FileName": name,
                "EmoClass": "ASHUFDCN"[i % 8],
                "EmoAct": avd[0],
                "EmoVal": avd[1],
                "EmoDom": avd[2],
                "SpkrID": i // 10,
                "Gender": "Female" if i % 2 else "Male",
                "Split_Set": "Development" if i % 5 == 4 else "Train",
            }
        )
        total += seconds
        i += 1
    pd.DataFrame(rows).to_csv(root / "Labels" / "labels_consensus.csv", index=False)
    return root


def rss_kib() -> int:
    """Current resident memory of this process, KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(way: str, corpus: Path) -> dict:
    """Run one way over ``corpus`` in this process and return its figures."""
    import pandas as pd
    import torch

    from emosphere import audio
    from emosphere.data import BucketBatchSampler, collate, loader
    from emosphere.labels import Corpus, prepare_labels, split
    from emosphere.sphere import DIMENSIONS, RegionSet

    torch.set_num_threads(1)
    base = rss_kib()
    start = time.perf_counter()
    if way == "streaming":
        table = split(prepare_labels(Corpus.at(corpus), RegionSet(), progress=False), "Train")
        batches = loader(table, batch_size=BATCH_SIZE, max_seconds=12.0, bucket=False)
    else:
        labels = pd.read_csv(corpus / "Labels" / "labels_consensus.csv")
        labels = labels[labels["Split_Set"] == "Train"].reset_index(drop=True)
        waves = [audio.load(corpus / "Audios" / name, 12.0) for name in labels["FileName"]]
        targets = (labels[["EmoAct", "EmoVal", "EmoDom"]].to_numpy(np.float32) - 1) / 6
        lengths = np.array([len(w) for w in waves])
        batches = (
            collate([{"waveform": waves[i], "index": i, "avd": targets[i]} for i in batch])
            for batch in BucketBatchSampler(lengths, BATCH_SIZE, bucket=False)
        )
    n_batches, seconds = 0, 0.0
    first = None
    for batch in batches:
        if first is None:
            first = time.perf_counter() - start
            first_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        n_batches += 1
        seconds += float(batch.lengths.sum()) / SAMPLE_RATE
        assert batch.avd is not None and batch.avd.shape[1] == len(DIMENSIONS)
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "way": way,
        "first_batch_s": first,
        "epoch_s": total,
        "batches": n_batches,
        "audio_minutes_read": seconds / 60,
        "rss_after_imports_mib": base / 1024,
        "peak_rss_mib": peak / 1024,
        "peak_growth_mib": (peak - base) / 1024,
        "first_batch_growth_mib": (first_peak - base) / 1024,
    }


def main(argv: list[str] | None = None) -> dict:
    options = parser(__doc__)
    options.add_argument("--minutes", type=float, nargs="+", help="corpus sizes (default 10 100 300; --tiny 0.2)")
    options.add_argument("--work-dir", type=Path, help="where to write the corpora (default: a temporary folder)")
    options.add_argument("--child", nargs=2, metavar=("WAY", "CORPUS"), help=argparse.SUPPRESS)
    args = defaults(options.parse_args(argv), minutes=([10, 100, 300], [0.2]))
    if args.child:
        answer(child(args.child[0], Path(args.child[1])))
        return {}
    results = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        for minutes in args.minutes:
            corpus = make_corpus(Path(work) / f"corpus_{minutes:g}min", minutes)
            files = len(list((corpus / "Audios").iterdir()))
            for way in WAYS:
                figures = child_json([sys.executable, __file__, "--child", way, str(corpus)], what=way)
                figures.update(corpus_minutes=minutes, files=files)
                results.append(figures)
                print(
                    f"{minutes:6g} min ({files:5d} files) {way:13s} first batch {figures['first_batch_s']:7.2f} s"
                    f"  epoch {figures['epoch_s']:7.2f} s  peak RSS {figures['peak_rss_mib']:7.0f} MiB"
                    f"  (+{figures['first_batch_growth_mib']:4.0f} MiB at the first batch,"
                    f" +{figures['peak_growth_mib']:4.0f} MiB over the pass)",
                    flush=True,
                )
    small, large = min(args.minutes), max(args.minutes)
    for way in WAYS:
        growth = {r["corpus_minutes"]: r["peak_growth_mib"] for r in results if r["way"] == way}
        print(
            f"{way}: peak growth {growth[small]:.0f} MiB at {small:g} min, {growth[large]:.0f} MiB at "
            f"{large:g} min ({growth[large] / max(growth[small], 1e-9):.1f}x for {large / small:g}x the audio)"
        )
    machine = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
    }
    print(f"machine: {machine}")
    return finish({"machine": machine, "results": results}, args.json)


if __name__ == "__main__":
    main()
