"""Bootstrap speed and coverage: how long the intervals of ``emosphere evaluate`` and the paired test of
``emosphere compare`` take, and how often a 95 % interval covers a known CCC.

Speed (target: 10,000 utterances x 1,000 replicates x 3 dimensions in under 5 s on a CPU):
``bootstrap.score_intervals`` with CCC only, with the region metrics too (8 octants and 73 classes),
by speaker (500 speakers), and ``bootstrap.paired_comparison`` of two systems. Each is timed
``--repeats`` times; the minimum, median and maximum wall times are printed (the machine may be shared).

Coverage (``--coverage-seeds N``): for each of N seeds, 400 simulated test sets of 100 utterances with
a known population CCC (y ~ N(4, 1), p = 4 + b + beta (y - 4) + noise, as in tests/test_bootstrap.py);
prints the share of 95 % intervals that cover it, per dimension and for the mean.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bootstrap_speed.py [--n 10000] [--repeats 5] [--coverage-seeds 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from emosphere.bootstrap import paired_comparison, score_intervals


def timed(function, repeats: int) -> str:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return f"min {min(times):6.3f} s  median {np.median(times):6.3f} s  max {max(times):6.3f} s"


def speed(n: int, resamples: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    target = rng.normal(4, 1, (n, 3))
    pred = 4.1 + 0.6 * (target - 4) + rng.normal(0, 0.6, (n, 3))
    other = pred + rng.normal(0, 0.2, (n, 3))
    speakers = rng.integers(0, 500, n)
    print(f"{n} utterances x {resamples} replicates x 3 dimensions, {repeats} runs each:")
    octants, grid = (rng.integers(0, k, (2, n)) for k in (8, 73))
    cases = {
        "CCC (utterances)": lambda: score_intervals(pred, target, resamples=resamples),
        "CCC + regions, 8 classes": lambda: score_intervals(
            pred, target, region_pred=octants[0], region_target=octants[1], num_classes=8, resamples=resamples
        ),
        "CCC + regions, 73 classes": lambda: score_intervals(
            pred, target, region_pred=grid[0], region_target=grid[1], num_classes=73, resamples=resamples
        ),
        "CCC by speaker (500)": lambda: score_intervals(pred, target, groups=speakers, resamples=resamples),
        "paired, 2 systems": lambda: paired_comparison(target, {"a": pred, "b": other}, resamples=resamples),
    }
    for name, function in cases.items():
        print(f"  {name:28s} {timed(function, repeats)}")


def coverage(seeds: int, draws: int = 400, n: int = 100) -> None:
    beta, noise, bias = np.array([0.8, 0.5, 0.3]), np.array([0.5, 0.7, 0.9]), np.array([0.2, -0.1, 0.0])
    true = 2 * beta / (beta**2 + noise**2 + 1 + bias**2)
    true = np.append(true, true.mean())
    print(f"coverage of 95 % intervals, {draws} draws of {n} utterances; true CCC {np.round(true, 3).tolist()}")
    print("  seed  arousal valence dominance mean")
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        covered = np.zeros(4)
        for draw in range(draws):
            target = rng.normal(4, 1, (n, 3))
            pred = 4 + bias + beta * (target - 4) + rng.normal(0, 1, (n, 3)) * noise
            intervals = score_intervals(pred, target, seed=draw)["ccc"]
            covered += [low <= t <= high for (low, high), t in zip(intervals.values(), true)]
        print(f"  {seed:4d}  " + "  ".join(f"{c:.4f}" for c in covered / draws))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--coverage-seeds", type=int, default=0)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}")
    speed(args.n, args.resamples, args.repeats)
    if args.coverage_seeds:
        coverage(args.coverage_seeds)


if __name__ == "__main__":
    main()
