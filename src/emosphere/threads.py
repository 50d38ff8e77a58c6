"""How many CPU threads the model gets, and how they wait, when the user does not say.

The model's threads meet at the end of every operation. OpenMP's default wait
there is busy (threads spin before they sleep): on a machine of one's own that
saves microseconds, on a shared one it is ruinous, since a spinning thread
burns the core that the thread it waits for, or another job, needs. On 2 cores
shared with other jobs, ``emosphere predict`` with one thread per core and
OpenMP's default waiting ran 4-5 times slower than with passive waiting, which
in turn was never slower than one thread (bench/predict_threads.py). So by
default:

* threads wait passively: ``OMP_WAIT_POLICY=PASSIVE``, set by the
  ``emosphere`` command before torch loads (unless the environment sets it;
  the Python API leaves the process's environment alone), and onnxruntime's
  threads do not spin;
* the model gets the engine's own count (torch and onnxruntime: one thread
  per physical core, or ``OMP_NUM_THREADS``), unless this process may use
  fewer cores than the machine has (its CPU affinity, or a container's cgroup
  CPU quota, which those defaults do not see): then one per usable core.

``--threads`` (and torchrun's share of the node per process) overrides the count.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

WAIT_POLICY = ("OMP_WAIT_POLICY", "PASSIVE")


def wait_passively() -> None:
    """Make OpenMP threads sleep when they wait, unless the environment says otherwise; it takes
    effect for OpenMP runtimes loaded afterwards (torch's, when torch is imported)."""
    os.environ.setdefault(*WAIT_POLICY)


def quota() -> float:
    """The cgroup v2 CPU quota of this process, in cores (inf without one)."""
    try:
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return math.inf if limit == "max" else int(limit) / int(period)
    except (OSError, ValueError):
        return math.inf


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, within its cgroup quota, at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, math.floor(min(cpus, quota())))


def default_threads() -> tuple[int | None, str]:
    """The intra-op threads of a model on the CPU (see the module docstring; None: the engine's own
    count), and why, in words."""
    cores, cpus = usable_cores(), os.cpu_count() or 1
    waiting = f"{WAIT_POLICY[0]}={os.environ.get(WAIT_POLICY[0]) or '(unset)'}"
    if cores < cpus:
        return cores, f"{cores} of the {cpus} CPUs are usable here; {waiting}"
    return None, f"the engine's count, one per physical core; {waiting}"
