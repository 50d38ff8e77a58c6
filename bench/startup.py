"""Start-up: how long ``emosphere --help``, ``emosphere <command> --help`` and a config mistake take to answer.

Each command runs in a fresh process (``python -m emosphere ...``), ``--repeats``
times, the source trees taking turns; the median and range of the wall time are
reported per tree. Give trees as ``LABEL=PATH`` (the folder holding the
``emosphere`` package, e.g. an earlier checkout's ``src``); the default is the
installed package alone. The target is at most 1.5 s (issue 19).

    .venv/bin/python bench/startup.py --tree before=/tmp/old/src --tree now=src [--json figures.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

COMMANDS = {
    "emosphere --help": ["--help"],
    "emosphere predict --help": ["predict", "--help"],
    "emosphere train --help": ["train", "--help"],
    "a config mistake": ["train", "trainer.max_epoch=2"],
}


def seconds(tree: str | None, argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": tree} if tree else None
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "emosphere", *argv], capture_output=True, env=env, check=False)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH", help="a source tree to time")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command per tree (default 5)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    trees = dict(tree.split("=", 1) for tree in args.tree) or {"installed": None}
    times: dict[str, dict[str, list[float]]] = {label: {} for label in trees}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            for label, tree in trees.items():
                times[label].setdefault(name, []).append(seconds(tree, command))
    figures = {
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end",
        "results": {
            label: {
                name: {"median_s": round(float(np.median(v)), 2), "min_s": round(min(v), 2), "max_s": round(max(v), 2)}
                for name, v in by_command.items()
            }
            for label, by_command in times.items()
        },
    }
    print(figures["machine"])
    print(f"{'command':<26}" + "".join(f"{label:>22}" for label in trees))
    for name in COMMANDS:
        cells = [figures["results"][label][name] for label in trees]
        print(f"{name:<26}" + "".join(f"{c['median_s']:>8.2f} s ({c['min_s']:.2f}-{c['max_s']:.2f})" for c in cells))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
