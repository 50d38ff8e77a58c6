"""What the bench scripts share: options, generated inputs, random models, child processes, reports.

Each script builds its parser with :func:`parser` (``--json``, and ``--tiny``: a
tiny random encoder and the fewest inputs, so that the test suite runs the
script in seconds; it checks that the script runs, not its figures), measures
generated audio (:func:`make_audio`) with random models (:func:`encoder_config`,
:func:`build_model`), runs parts that need a fresh process as children that
answer one line of JSON (:func:`child_json`, :func:`answer`), and ends with
:func:`finish`, which writes the figures atomically.

Every call of the bench scripts into emosphere's inference path goes through
the section "emosphere's inference path" below, so that a change of that API
is made here once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emosphere.audio import SAMPLE_RATE

TINY_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "demo" / "tiny.yaml"
"""Whose encoder ``--tiny`` takes: the demo's tiny random WavLM (seconds on a CPU; nothing to read in its speed)."""


# --- options and reports ------------------------------------------------------------------------


def parser(doc: str, *, tiny: bool = True) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of ``doc``, with ``--json`` and (``tiny``) ``--tiny``."""
    result = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    result.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    if tiny:
        result.add_argument(
            "--tiny",
            action="store_true",
            help="a tiny random encoder and the fewest inputs: checks that the script runs (the test suite), "
            "not its figures",
        )
    return result


def defaults(args: argparse.Namespace, **values: tuple[Any, Any]) -> argparse.Namespace:
    """Fill each option left unset (None) with its ``(default, default with --tiny)``."""
    for name, (usual, tiny) in values.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else usual)
    return args


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--hidden and --layers of the random WavLM (base size by default; --tiny replaces it)."""
    parser.add_argument("--hidden", type=int, default=768, help="encoder hidden size (default 768, base)")
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (default 12, base)")


def add_onnx_speed_options(parser: argparse.ArgumentParser, *, utterances: int, batch_size: int, repeats: int) -> None:
    """The generated audio, batches, threads and rounds of an onnxruntime speed comparison; ``utterances``
    and ``repeats`` stay None until :func:`defaults` fills them (``--tiny``: 2 utterances, 1 round)."""
    parser.add_argument("--utterances", type=int, help=f"generated utterances (default {utterances}; --tiny 2)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="shortest utterance (default 2)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="longest utterance (default 10)")
    parser.add_argument(
        "--batch-size", type=int, default=batch_size, help=f"utterances per batch (default {batch_size})"
    )
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, help=f"rounds; the fastest counts (default {repeats}; --tiny 1)")
    parser.add_argument("--seed", type=int, default=0, help="audio seed (default 0)")


def machine(device: str = "cpu") -> str:
    """The device's name (the CUDA device's, or the CPU's architecture) and the machine's CPU count."""
    if device.startswith("cuda"):
        import torch

        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} CPUs"


def cpuid_mask() -> str:
    """The instruction sets bench/cpuid_mask.c hides from this process (docs/benchmarks.md), if any."""
    return f"CPUID_MASK={os.environ.get('CPUID_MASK') or '(none)'}"


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def heading(figures: dict[str, Any], inputs: str) -> None:
    """The first line of a report: the model, ``inputs``, the machine and its load."""
    print(f"{figures['model']}; {inputs}; {figures['machine']}; load average {figures['load_average_at_end']}")


def finish(figures: Any, path: Path | None) -> Any:
    """Write ``figures`` as JSON to ``path`` (atomically), where one is given; return them."""
    if path is not None:
        from emosphere.io import write_text_atomic

        write_text_atomic(path, json.dumps(figures, indent=2) + "\n")
    return figures


def answer(figures: dict[str, Any]) -> None:
    """A child's answer to :func:`child_json`: its figures as the last line of its output."""
    print(json.dumps(figures), flush=True)


class ChildError(RuntimeError):
    """A child process that failed; the message ends with the end of its error output."""


def child_json(command: Sequence[str], env: dict[str, str] | None = None, what: str = "") -> dict[str, Any]:
    """Run ``command`` (a child that ends with :func:`answer`) and return its figures, or raise
    :class:`ChildError`."""
    done = subprocess.run(list(command), check=False, capture_output=True, text=True, env=env)
    if done.returncode or not done.stdout.strip():
        raise ChildError(f"{what or ' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- generated audio and random models ------------------------------------------------------------


def make_audio(count: int, min_seconds: float, max_seconds: float, seed: int) -> list[np.ndarray]:
    """Deterministic utterances: a gliding harmonic tone with a syllable-like envelope, plus noise."""
    rng = np.random.default_rng(seed)
    utterances = []
    for _ in range(count):
        t = np.arange(int(rng.uniform(min_seconds, max_seconds) * SAMPLE_RATE)) / SAMPLE_RATE
        f0 = rng.uniform(90, 260) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        tone = sum(np.sin(k * phase) / k for k in range(1, 6))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t) ** 2
        wave = 0.1 * envelope * tone + rng.uniform(0.002, 0.02) * rng.standard_normal(len(t))
        utterances.append(wave.astype(np.float32))
    return utterances


def encoder_config(hidden: int = 768, layers: int = 12, *, tiny: bool = False, **settings: Any) -> dict[str, Any]:
    """A WavLM config: ``hidden`` wide (heads of 64, feed-forward 4x), ``layers`` deep, no layer drop,
    or the demo's tiny one (``tiny``: :data:`TINY_RECIPE`); ``settings`` (transformers config values) go on top."""
    if tiny:
        import yaml

        return {**yaml.safe_load(TINY_RECIPE.read_text())["model"]["encoder"]["config"], **settings}
    size = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": max(1, hidden // 64),
        "intermediate_size": 4 * hidden,
    }
    return {"model_type": "wavlm", **size, "feat_extract_norm": "layer", "layerdrop": 0.0, **settings}


def model_encoder(args: argparse.Namespace) -> dict[str, Any]:
    """The encoder config that --hidden, --layers and --tiny ask for."""
    return encoder_config(args.hidden, args.layers, tiny=args.tiny)


def build_model(encoder: dict[str, Any], audio: list[np.ndarray], attention: str = "fused") -> Any:
    """A random model on ``encoder`` with style pooling and the octant head, in eval mode, normalised for
    ``audio``; ``attention``: model.encoder.attention."""
    import torch

    from emosphere.audio import StatsAccumulator
    from emosphere.config import EncoderConfig, ModelConfig
    from emosphere.model import EmoSphereSER

    config = ModelConfig(
        encoder=EncoderConfig(name="wavlm-random", pretrained=False, config=encoder, attention=attention),
        pooling="style",
        regions="octant",
    )
    stats = StatsAccumulator()
    for wave in audio:
        stats.add(wave)
    torch.manual_seed(0)
    return EmoSphereSER.build(config, stats.result()).eval()


def describe_model(encoder: dict[str, Any], what: str = "style pooling; octant head") -> str:
    return f"random WavLM, hidden {encoder['hidden_size']}, {encoder['num_hidden_layers']} layers; {what}"


# --- emosphere's inference path -------------------------------------------------------------------


def torch_backend(model: Any, device: str = "cpu", precision: str = "fp32") -> Any:
    """``model`` on ``device`` at ``precision``, as the inference path runs it."""
    from emosphere.backends import TorchBackend

    return TorchBackend(model, device, precision)


def onnx_backend(path: Path, **options: Any) -> Any:
    """An exported model in onnxruntime; ``options``: ``threads``, ``spinning``."""
    from emosphere.backends import OnnxBackend

    return OnnxBackend.load(path, **options)


def export(model: Any, path: Path, **options: Any) -> Path:
    """``model`` exported to ONNX at ``path`` (``options``: ``quantize="int8"``)."""
    from emosphere.export import export_onnx

    return export_onnx(model, path, **options)


def quantize(path: Path, output: Path, **options: Any) -> Path:
    """The int8 model of an exported one (``options``: ``op_types``)."""
    from emosphere.quantize import quantize_onnx

    return quantize_onnx(path, output, **options)


def window_batches(audio: list[np.ndarray], batch_size: int) -> list[Any]:
    """Each utterance as one window, sorted by length and batched as the inference path batches them;
    each batch has ``waveform``, ``lengths`` and ``owner`` (the utterances' indices)."""
    from emosphere.engine import Item, Options, Windowing

    items = [Item(i, f"utt{i}", wave, [(0, len(wave))]) for i, wave in enumerate(audio)]
    return list(Windowing(Options(batch_size=batch_size), min_samples=1, crop_seconds=12.0).batches(items))


def utterance_values(backend: Any, batches: list[Any]) -> np.ndarray:
    """(n, 3) A/V/D on [0, 1] of :func:`window_batches`' utterances, in their order (numpy outputs: the
    device has finished)."""
    owner, avd = zip(*((batch.owner, backend(batch.waveform, batch.lengths)[0]) for batch in batches))
    return np.concatenate(avd)[np.argsort(np.concatenate(owner))]


def take_turns(paths: dict[str, tuple[Any, list[Any]]], repeats: int) -> dict[str, dict[str, Any]]:
    """Time each path (a backend and its batches) after one warm-up batch: the paths take turns,
    ``repeats`` rounds, so that a busy spell of a shared machine hits them alike. Per path: ``wall`` and
    ``cpu`` (process CPU time: the work done, which other jobs disturb less) seconds per round, and
    ``avd`` (:func:`utterance_values`, last round)."""
    import time

    for backend, batches in paths.values():
        utterance_values(backend, batches[:1])
    timed: dict[str, dict[str, Any]] = {key: {"wall": [], "cpu": []} for key in paths}
    for _ in range(repeats):
        for key, (backend, batches) in paths.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            timed[key]["avd"] = utterance_values(backend, batches)
            timed[key]["wall"].append(time.perf_counter() - start)
            timed[key]["cpu"].append(time.process_time() - start_cpu)
    return timed


def file_values(backend: Any, paths: list[str], batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A/V/D on [0, 1] and region probabilities of every file in ``paths`` (each must be predicted)."""
    from emosphere.engine import Options, Prediction, Predictor, file_values

    results = list(Predictor(backend, Options(batch_size=batch_size)).stream(enumerate(paths)))
    failed = [r for r in results if not isinstance(r, Prediction)]
    if failed:
        sys.exit(f"{len(failed)} file(s) could not be predicted, e.g. {failed[0]}")
    return file_values(results)


def predict_to_file(backend: Any, inputs: list[str], output: str, **options: Any) -> Any:
    """``emosphere predict``'s path from inputs to a table (one process); returns its summary."""
    from emosphere.engine import Options, Predictor
    from emosphere.predict import predict_to_file

    engine = {key: options.pop(key) for key in ("batch_size", "window", "hop", "workers") if key in options}
    return predict_to_file(Predictor(backend, Options(**engine)), inputs, output, **options)
