"""How many CPU threads the model gets, and how they wait, when the user does not say.

One thread per core is fastest on a machine of one's own. On a shared one
(other jobs, other users) it is the slowest choice: at every step of the model
the threads wait for each other, so one thread that another job keeps from
its core stalls them all, and OpenMP's default busy waiting burns the time
the other jobs need (on 2 cores shared with 3-4 other jobs, 2 threads ran a
model 3-4 times slower than 1; bench/predict_threads.py). So by default:

* threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, set by the
  ``emosphere`` command before torch loads, unless the environment sets it;
  onnxruntime's threads do not spin): a waiting thread sleeps;
* the model gets as many intra-op threads as cores are idle when it loads,
  measured over :data:`SAMPLE_SECONDS` from ``/proc/stat`` among the cores this
  process may use (its affinity and cgroup quota), at least 1;
  where that cannot be measured, one per usable core.

``--threads`` (and torchrun's share per process) overrides the count.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

SAMPLE_SECONDS = 0.2
WAIT_POLICY = ("OMP_WAIT_POLICY", "PASSIVE")


def wait_passively() -> None:
    """Make OpenMP threads sleep when they wait, unless the environment says otherwise; it takes
    effect for OpenMP runtimes loaded afterwards (torch's, when torch is imported)."""
    os.environ.setdefault(*WAIT_POLICY)


def usable_cpus() -> list[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def quota() -> float:
    """The cgroup v2 CPU quota of this process in cores (inf without one)."""
    try:
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return math.inf if limit == "max" else int(limit) / int(period)
    except (OSError, ValueError):
        return math.inf


def _idle_ticks(cpus: list[int]) -> tuple[int, int] | None:
    """(idle, total) clock ticks of ``cpus`` since boot, from /proc/stat; None where it cannot be read."""
    wanted = {f"cpu{n}" for n in cpus}
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    idle = total = 0
    for fields in (line.split() for line in lines):
        if fields and fields[0] in wanted:
            ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
            idle, total = idle + ticks[3] + ticks[4], total + sum(ticks)
    return (idle, total) if total else None


def idle_cores(cpus: list[int], seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many of ``cpus`` were idle, on average, over the next ``seconds``; None where unknown."""
    before = _idle_ticks(cpus)
    time.sleep(seconds)
    after = _idle_ticks(cpus)
    if before is None or after is None or after[1] <= before[1]:
        return None
    return len(cpus) * (after[0] - before[0]) / (after[1] - before[1])


def default_threads() -> tuple[int, str]:
    """The intra-op threads for a model on the CPU (see the module docstring), and why, in words."""
    cpus = usable_cpus()
    cores = max(1, math.floor(min(quota(), len(cpus))))
    idle = idle_cores(cpus)
    if idle is None:
        return cores, f"{cores} usable core(s)"
    threads = max(1, min(cores, math.floor(idle + 0.5)))
    return threads, f"{idle:.1f} of {cores} usable core(s) idle"
