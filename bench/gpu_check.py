"""The GPU check: emosphere's CUDA tests and speed targets on one GPU, as one command of about 6 minutes.

    python3 bench/gpu_check.py --output $OUT                 # on a GPU machine (docs/benchmarks.md, "GPU check")
    python3 bench/gpu_check.py --output /tmp/check --dry-run  # on a CPU: tiny models, the same steps

On a bare GPU machine (torch, transformers, lightning, onnxruntime and pytest
installed, nothing to download) it installs the wheels carried in ``.whl/``
(``bench/fetch_wheels.sh`` fetches them) into a folder of its own, puts that
folder and ``src/`` on the PYTHONPATH of every part, and runs the parts in
turn, each a child process with a time limit:

  prepare             the device, the versions, and the modules that cannot be imported;
  cuda-tests          ``pytest -m cuda -k "not compiled"``: attention, prediction, the service and
                      training on CUDA;
  train-fp16          bench/train_speed.py, the paper recipe, eager and fused+sub, fp16 mixed;
  predict-scale       bench/predict_scale.py --device cuda: files to table, WavLM-large, bf16;
  predict-speed       bench/predict_speed.py --device cuda: fp32 batched vs alone, bf16, fp16;
  cuda-compile-tests  ``pytest -m cuda -k compiled``: training with trainer.compile (compiling is slow);
  train-bf16          bench/train_speed.py as train-fp16, bf16 mixed;
  train-compile       bench/train_speed.py fused+sub+compile, fp16, in the time that is left.

A part that outlives its limit gets SIGINT (pytest then writes what it ran),
then SIGKILL, and the check goes on; a part is skipped when less than
``MINIMUM`` seconds of ``--budget`` remain. After each part it writes to
``--output``: ``gpu-check.json`` (``device``, ``train_valid_audio_s_per_s``
and ``train_peak_gib`` of the fastest training variant,
``predict_audio_s_per_s`` for files to table in bf16, ``fp32_batch_parity``,
the targets, and each part's and each test's outcome and figures),
``gpu-check.md`` (the same, to read) and ``gpu-check.log`` (every part's
output), so a check stopped from outside keeps the parts it finished.
``--dry-run`` runs the same kinds of parts on the CPU with tiny models and few
steps (the test suite does), so the check cannot rot between GPU runs. This
file uses the standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gpu_summary import markdown, summarise

ROOT = Path(__file__).resolve().parents[1]
GRACE = 20  # seconds between SIGINT and SIGKILL
MINIMUM = 20  # a part starts only with at least this many seconds of the budget left
RESERVE = 5  # seconds of the budget kept for the summary
CUDA_TESTS = ["tests/test_attention.py", "tests/test_predict.py", "tests/test_serve.py", "tests/test_train.py"]
MODULES = ["torch", "transformers", "lightning", "onnxruntime", "soundfile", "soxr", "fastapi", "uvicorn"]
MODULES += ["python_multipart", "httpx", "pytest", "emosphere"]


@dataclass
class Part:
    """A child process of the check. ``command(limit, out)``: its command line, for the seconds it may
    take and the path (without suffix) where it writes its figures; ``limit`` None: what is left."""

    name: str
    limit: float | None
    command: Callable[[float, Path], list[str]]


def script(name: str, *args: str) -> Callable[[float, Path], list[str]]:
    """A bench script that writes its figures to <out>.json."""
    return lambda limit, out: [sys.executable, str(ROOT / "bench" / name), *args, "--json", f"{out}.json"]


def compile_part(*args: str) -> Part:
    """bench/train_speed.py's compiled variant, warming up for all but 40 s of its limit."""
    command = script("train_speed.py", *args, "--variants", "fused+sub+compile")
    warmup = lambda limit: f"{max(10, limit - 40):.0f}"  # noqa: E731
    return Part("train-compile", None, lambda limit, out: [*command(limit, out), "--warmup-seconds", warmup(limit)])


def plan(dry_run: bool) -> list[Part]:
    """The parts in order; on a GPU the most telling first, with limits that add up to about 6 minutes."""
    pytest = [sys.executable, "-m", "pytest", "-m", "cuda", "-v", "-p", "no:cacheprovider", *CUDA_TESTS]
    parts = [
        Part("prepare", 40, lambda limit, out: [sys.executable, __file__, "--probe", f"{out}.json"]),
        Part("cuda-tests", 90, lambda limit, out: [*pytest, "-k", "not compiled", f"--junitxml={out}.xml"]),
    ]
    compiled_tests = Part(
        "cuda-compile-tests", 90, lambda limit, out: [*pytest, "-k", "compiled", f"--junitxml={out}.xml"]
    )
    if dry_run:  # the compiled variant builds what the others build, and compiles (capture only)
        train = ["--device", "cpu", "--tiny", "--steps", "1", "--warmup-max", "1", "--compile-backend", "eager"]
        return [
            *parts,
            compile_part(*train, "--precision", "bf16"),
            Part("predict-scale", 120, script("predict_scale.py", "--tiny")),
            Part(
                "predict-speed", 120, script("predict_speed.py", "--tiny", "--no-onnx", "--precisions", "bf16", "fp16")
            ),
        ]  # cuda-compile-tests: the command of cuda-tests, for two tests that skip on a CPU
    large = ["--hidden", "1024", "--layers", "24", "--batch-size", "32"]
    train = ["--device", "cuda", "--steps", "24", "--variants", "eager", "fused+sub"]
    scale = ["--device", "cuda", "--precision", "bf16", *large, "--utterances", "2000", "--workers", "8"]
    speed = ["--device", "cuda", *large, "--precisions", "bf16", "fp16", "--repeats", "2"]
    return [
        *parts,
        Part("train-fp16", 60, script("train_speed.py", *train, "--precision", "fp16")),
        Part("predict-scale", 75, script("predict_scale.py", *scale)),
        Part("predict-speed", 40, script("predict_speed.py", *speed)),
        compiled_tests,
        Part("train-bf16", 50, script("train_speed.py", *train, "--precision", "bf16")),
        compile_part("--device", "cuda", "--steps", "16", "--precision", "fp16"),
    ]


class Log:
    """Progress on stdout and every line in the log file, with the seconds since the check began."""

    def __init__(self, path: Path) -> None:
        self.file: IO[str] = open(path, "w", buffering=1)  # noqa: SIM115 - closed by close()
        self.start, self.lock = time.monotonic(), threading.Lock()

    def say(self, line: str, part: str = "check") -> None:
        with self.lock:
            stamped = f"[{time.monotonic() - self.start:6.1f} s] {part}: {line.rstrip()}"
            print(stamped, flush=True)
            self.file.write(stamped + "\n")

    def close(self) -> None:
        self.file.close()


def stop(process: subprocess.Popen) -> int | None:
    """SIGINT to the part's process group, then SIGKILL; its exit code."""
    for signum, wait in ((signal.SIGINT, GRACE), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return process.wait(timeout=wait)
    return process.poll()


def run_part(part: Part, limit: float, out: Path, env: dict[str, str], log: Log) -> dict[str, Any]:
    """Run ``part`` for at most ``limit`` seconds, its output into ``log``; its outcome."""
    command = part.command(limit, out)
    log.say(f"started, limit {limit:.0f} s: {' '.join(command)}", part.name)
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    echo = threading.Thread(target=lambda: [log.say(line, part.name) for line in process.stdout], daemon=True)
    echo.start()
    try:
        code, status = process.wait(timeout=limit), None
    except subprocess.TimeoutExpired:
        code, status = stop(process), "timed out"
    echo.join(timeout=10)
    status = status or ("passed" if code == 0 else "failed")
    seconds = round(time.monotonic() - started, 1)
    log.say(f"{status} after {seconds} s (exit code {code})", part.name)
    return {"status": status, "seconds": seconds, "limit": round(limit), "exit_code": code, "command": command}


def install(wheels: Path, site: Path, log: Log) -> dict[str, Any]:
    """Install the wheels in ``wheels`` (none: nothing to do) into ``site``, without dependencies."""
    found = sorted(wheels.glob("*.whl"))
    if not found:
        log.say(f"no wheels in {wheels}: nothing to install")
        return {"installed": []}
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    command += ["--no-cache-dir", "--upgrade", "--target", str(site), *map(str, found)]
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        log.say("pip did not finish installing the wheels in 180 s")
        return {"installed": [], "error": "timed out"}
    log.say(f"installed {len(found)} wheels into {site} (exit code {done.returncode}) {done.stderr[-2000:]}")
    return {"installed": [w.name for w in found], "exit_code": done.returncode}


def environment(site: Path) -> dict[str, str]:
    paths = [str(ROOT / "src"), str(site), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once (a check stopped meanwhile leaves the previous file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def skip_reason(args: argparse.Namespace, left: float, work: Path) -> str | None:
    """Why the next part does not run: too little of the budget left, or no CUDA device (but in a dry run)."""
    if left < MINIMUM:
        return f"{max(left, 0):.0f} s of the budget left"
    probed = work / "prepare.json"
    if not args.dry_run and probed.is_file() and json.loads(probed.read_text())["cuda"] is None:
        return "no CUDA device (on a CPU, --dry-run runs the check with tiny models)"
    return None


def check(args: argparse.Namespace) -> int:
    """Run the chosen parts within the budget, writing the summary after each; 0 if every part passed."""
    args.output.mkdir(parents=True, exist_ok=True)
    log = Log(args.output / "gpu-check.log")
    deadline = log.start + args.budget
    parts = [p for p in plan(args.dry_run) if not args.parts or p.name in args.parts]
    state: dict[str, Any] = {"dry_run": args.dry_run, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    state.update(budget_s=args.budget, parts={})
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        state["wheels"] = install(args.wheels, work / "site", log)
        env = environment(work / "site")
        for part in parts:
            left = deadline - time.monotonic() - RESERVE
            limit = min(args.limits.get(part.name, part.limit or left), left)
            reason = skip_reason(args, left, work)
            if reason:
                state["parts"][part.name] = {"status": "skipped", "reason": reason}
                log.say(f"skipped: {reason}", part.name)
            else:
                state["parts"][part.name] = run_part(part, limit, work / part.name, env, log)
            state["seconds"] = round(time.monotonic() - log.start, 1)
            summary = summarise(state, work)
            write(args.output / "gpu-check.json", json.dumps(summary, indent=2) + "\n")
            write(args.output / "gpu-check.md", markdown(summary))
    log.say(f"done in {time.monotonic() - log.start:.0f} s; summary in {args.output}")
    log.close()
    return 0 if all(p["status"] == "passed" for p in state["parts"].values()) else 1


def probe(path: Path) -> int:
    """The prepare part: the device, the versions, and which modules cannot be imported (exit 1 if any)."""
    versions, missing = {}, {}
    for name in MODULES:
        try:
            versions[name] = getattr(importlib.import_module(name), "__version__", "?")
        except (ImportError, OSError) as error:
            missing[name] = f"{type(error).__name__}: {error}"
    import torch

    cuda = torch.cuda.is_available()
    figures = {
        "device": torch.cuda.get_device_name() if cuda else f"{platform.machine()} CPU (no CUDA device)",
        "cuda": torch.version.cuda if cuda else None,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "missing": missing,
    }
    write(path, json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 1 if missing else 0


def limits(values: list[str]) -> dict[str, float]:
    """PART=SECONDS pairs."""
    try:
        return {name: float(seconds) for name, seconds in (value.split("=", 1) for value in values)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"--limit takes PART=SECONDS, got {values}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, help="folder for gpu-check.json, gpu-check.md and gpu-check.log")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, tiny models and few steps")
    parser.add_argument("--budget", type=float, help="seconds for the whole check (default 360; dry run 1200)")
    parser.add_argument("--parts", nargs="+", help="run these parts only (default: all; see the docstring)")
    parser.add_argument("--limit", action="append", default=[], help="PART=SECONDS: another limit for a part")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl", help="wheels to install (default .whl/)")
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        return probe(args.probe)
    if args.output is None:
        parser.error("--output is required")
    unknown = set(args.parts or []) - {part.name for part in plan(args.dry_run)}
    if unknown:
        parser.error(
            f"no part {', '.join(sorted(unknown))}; the parts: {', '.join(p.name for p in plan(args.dry_run))}"
        )
    args.budget = args.budget or (1200 if args.dry_run else 360)
    args.limits = limits(args.limit)
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
