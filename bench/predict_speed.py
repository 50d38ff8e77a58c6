"""Inference speed: one utterance at a time vs length-bucketed batches vs onnxruntime, fp32 and int8.

Runs the same generated audio through

  (a) eager PyTorch, one utterance at a time (the original recipe's way),
  (b) eager PyTorch, utterances sorted by length and batched as the inference
      core batches them (emosphere.inference.window_batches),
  (c) onnxruntime on the exported model, with the same batches as (b) (CPU only),
  (d) onnxruntime on the int8 model (``emosphere export --quantize int8``), same batches (CPU only),
  (b-bf16), (b-fp16) with ``--precisions``: (b) under bf16 / fp16 autocast,
  (b-compile) with ``--compile``: (b) with the encoder under ``torch.compile``
      (dynamic shapes; the first batches compile, the warm-up absorbs that; the
      compile time is reported),

checks that (a), (b) and (c) give the same predictions (and reports how far
int8 and the reduced precisions are from fp32), and prints the real-time
factor (wall seconds per audio second) and utterances per second of each,
with the speed-ups b/a, c/b and d/c. The paths take turns, ``--repeats`` times, and each
one's fastest round is reported. The default model is a randomly initialised
WavLM of base size with style pooling and the octant head (speed does not
depend on the weights). See docs/benchmarks.md.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/predict_speed.py [--json figures.json]
    HF_HUB_OFFLINE=1 .venv/bin/python bench/predict_speed.py --hidden 1024 --layers 24 --utterances 16  # large
    python bench/predict_speed.py --device cuda --hidden 1024 --layers 24 --batch-size 32 \
        --precisions bf16 fp16 --compile
    HF_HUB_OFFLINE=1 .venv/bin/python bench/predict_speed.py --attention eager   # transformers' attention
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
PARITY = 1e-4


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


def build_model(hidden: int, layers: int, audio: list[np.ndarray], attention: str = "fused") -> Any:
    """A random WavLM (base size by default) with style pooling and the octant head, normalised for ``audio``;
    ``attention``: model.encoder.attention."""
    import torch

    from emosphere.audio import StatsAccumulator
    from emosphere.config import EncoderConfig, ModelConfig
    from emosphere.model import EmoSphereSER

    encoder = {
        "model_type": "wavlm",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": max(1, hidden // 64),
        "intermediate_size": 4 * hidden,
        "feat_extract_norm": "layer",
        "layerdrop": 0.0,
    }
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


def reference(key: str) -> str:
    """The path each path is compared with: (a) for (b), (c) for int8 (d), (b) for the others."""
    return {"b": "a", "d": "c"}.get(key, "b")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from emosphere.inference import Item, TorchBackend, window_batches

    torch.set_num_threads(args.threads)
    audio = make_audio(args.utterances, args.min_seconds, args.max_seconds, args.seed)
    items = [Item(i, f"utt{i}", wave, [(0, len(wave))]) for i, wave in enumerate(audio)]
    lengths = np.array([len(wave) for wave in audio])
    audio_seconds = float(lengths.sum() / SAMPLE_RATE)
    model = build_model(args.hidden, args.layers, audio, args.attention)

    singles = list(window_batches(items, 1))
    batches = list(window_batches(items, args.batch_size))
    padded_samples = sum(batch.waveform.size for batch in batches)
    backend = TorchBackend(model, args.device)
    paths = {
        "a": ("eager PyTorch, one utterance at a time", backend, singles),
        "b": (f"eager PyTorch, batches of {args.batch_size} by length", backend, batches),
    }
    versions = {"torch": torch.__version__}
    export_seconds = None
    if backend.device.type == "cpu":
        import onnxruntime

        from emosphere.export import export_onnx
        from emosphere.quantize import quantize_onnx
        from emosphere.runtime import OnnxModel

        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            path = export_onnx(model, Path(tmp) / "model.onnx")
            export_seconds = round(time.perf_counter() - start, 1)
            paths["c"] = (
                f"onnxruntime, batches of {args.batch_size} by length",
                OnnxModel.load(path, threads=args.threads, spinning=args.spin),
                batches,
            )
            if args.int8:
                int8 = quantize_onnx(path, Path(tmp) / "int8.onnx")
                paths["d"] = (
                    f"onnxruntime int8, batches of {args.batch_size}",
                    OnnxModel.load(int8, threads=args.threads, spinning=args.spin),
                    batches,
                )
        versions["onnxruntime"] = onnxruntime.__version__
    for precision in args.precisions:
        paths[f"b-{precision}"] = (
            f"PyTorch {precision} autocast, batches of {args.batch_size}",
            TorchBackend(model, args.device, precision),
            batches,
        )
    compile_seconds = None
    if args.compile:
        compiled = copy.deepcopy(model)
        compiled.encoder.model.forward = torch.compile(compiled.encoder.model.forward, dynamic=True)
        paths["b-compile"] = (
            f"PyTorch, encoder compiled, batches of {args.batch_size}",
            TorchBackend(compiled, args.device),
            batches,
        )
        start = time.perf_counter()
        for batch in batches:  # compiles for the shapes it meets; later rounds reuse the graphs
            paths["b-compile"][1](batch.waveform, batch.lengths)
        compile_seconds = round(time.perf_counter() - start, 1)

    def run(backend: Any, work: list) -> np.ndarray:
        """(n, 3) A/V/D in utterance order (numpy outputs: the device has finished)."""
        owner, avd = zip(*((batch.owner, backend(batch.waveform, batch.lengths)[0]) for batch in work))
        return np.concatenate(avd)[np.argsort(np.concatenate(owner))]

    for _, engine, work in paths.values():  # warm-up
        run(engine, work[:1])
    rounds: dict[str, list[float]] = {key: [] for key in paths}
    avd: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):  # the paths take turns, so that a busy spell hits them alike
        for key, (_, engine, work) in paths.items():
            start = time.perf_counter()
            avd[key] = run(engine, work)
            rounds[key].append(time.perf_counter() - start)

    best = {key: min(times) for key, times in rounds.items()}
    device = torch.cuda.get_device_name() if backend.device.type == "cuda" else platform.machine()
    return {
        "machine": f"{device}, {os.cpu_count()} CPUs; {args.threads} threads; "
        f"{'spinning' if args.spin else 'passive'} thread waits",
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "versions": versions,
        "model": f"random WavLM, hidden {args.hidden}, {args.layers} layers, {args.attention} attention; "
        "style pooling; octant head",
        "utterances": len(items),
        "audio_seconds": round(audio_seconds, 1),
        "batch_size": args.batch_size,
        "padding_fraction": round(1 - lengths.sum() / padded_samples, 4),
        "export_seconds": export_seconds,
        "compile_seconds": compile_seconds,
        "repeats": args.repeats,
        "paths": {
            key: {
                "what": what,
                "seconds": round(best[key], 2),
                "rounds": [round(t, 2) for t in rounds[key]],
                "rtf": round(best[key] / audio_seconds, 4),
                "utterances_per_second": round(len(items) / best[key], 2),
            }
            for key, (what, _, _) in paths.items()
        },
        "speedup_b_over_a": round(best["a"] / best["b"], 2),
        "speedup_c_over_b": round(best["b"] / best["c"], 2) if "c" in best else None,
        "speedup_d_over_c": round(best["c"] / best["d"], 2) if "d" in best else None,
        "max_abs_difference": {
            f"{key}_vs_{reference(key)}": float(np.abs(avd[key] - avd[reference(key)]).max())
            for key in paths
            if key != "a"
        },
    }


def report(figures: dict[str, Any]) -> None:
    print(
        f"{figures['model']}\n{figures['utterances']} utterances, {figures['audio_seconds']} s of audio; "
        f"{figures['machine']}; load average {figures['load_average_at_end']}"
    )
    print(f"{'path':<56} {'seconds':>8} {'RTF':>7} {'utt/s':>6}  rounds")
    for key, row in figures["paths"].items():
        print(
            f"{'(' + key + ') ' + row['what']:<56} {row['seconds']:>8.2f} {row['rtf']:>7.4f} "
            f"{row['utterances_per_second']:>6.2f}  {row['rounds']}"
        )
    differences = ", ".join(f"{key} {value:.1e}" for key, value in figures["max_abs_difference"].items())
    print(
        f"speed-up b/a {figures['speedup_b_over_a']:.2f}x, c/b {figures['speedup_c_over_b']}x, "
        f"d/c {figures['speedup_d_over_c']}x; "
        f"max |avd difference| on [0, 1]: {differences}; padding {figures['padding_fraction']:.1%}; "
        f"export {figures['export_seconds']} s; compile {figures['compile_seconds']} s"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=48, help="generated utterances (default 48)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="shortest utterance (default 2)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="longest utterance (default 10)")
    parser.add_argument("--batch-size", type=int, default=8, help="utterances per batch in (b) and (c) (default 8)")
    parser.add_argument("--hidden", type=int, default=768, help="encoder hidden size (default 768, base)")
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (default 12, base)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the paths; the fastest counts (default 3)")
    parser.add_argument(
        "--spin",
        action="store_true",
        help="let idle threads spin (the engines' default); without it they sleep "
        "(OMP_WAIT_POLICY=PASSIVE, onnxruntime allow_spinning=0), which keeps other "
        "processes on a shared machine from distorting the figures",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device for (a) and (b), e.g. cuda (default cpu); (c) runs on the CPU only",
    )
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="leave out (d), onnxruntime int8")
    parser.add_argument(
        "--precisions",
        nargs="*",
        default=[],
        choices=["bf16", "fp16"],
        help="also run (b) under these autocast precisions",
    )
    parser.add_argument(
        "--attention", choices=["fused", "eager"], default="fused", help="model.encoder.attention (default fused)"
    )
    parser.add_argument("--compile", action="store_true", help="also run (b) with the encoder compiled")
    parser.add_argument("--seed", type=int, default=0, help="audio seed (default 0)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not args.spin:  # read by OpenMP when torch loads, hence before the import
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

    figures = measure(args)
    report(figures)
    exact = {key: value for key, value in figures["max_abs_difference"].items() if key.split("_vs_")[0] in ("b", "c")}
    if max(exact.values()) > PARITY:
        raise SystemExit(f"the fp32 paths disagree by more than {PARITY}: {exact}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
