"""Inference speed: one utterance at a time vs length-bucketed batches vs onnxruntime.

Runs the same generated audio through

  (a) eager PyTorch, one utterance at a time (the original recipe's way),
  (b) eager PyTorch, utterances sorted by length and batched (data.collate),
  (c) onnxruntime on the exported model, with the same batches as (b),

checks that the three give the same predictions, and prints the real-time
factor (wall seconds per audio second) and utterances per second of each,
with the speed-ups b/a and c/b. The paths take turns, ``--repeats`` times,
and each one's fastest round is reported. The default model is a randomly
initialised WavLM of base size with style pooling and the octant head (speed
does not depend on the weights). See docs/benchmarks.md.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/predict_speed.py [--json figures.json]
"""

from __future__ import annotations

import argparse
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


def build_model(hidden: int, layers: int, audio: list[np.ndarray]) -> Any:
    """A random WavLM (base size by default) with style pooling and the octant head, normalised for ``audio``."""
    import torch

    from emosphere.audio import StatsAccumulator
    from emosphere.config import EncoderConfig, ModelConfig
    from emosphere.model import EmoSphereSER

    encoder = {
        "model_type": "wavlm", "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": max(1, hidden // 64), "intermediate_size": 4 * hidden,
        "feat_extract_norm": "layer", "layerdrop": 0.0,
    }
    config = ModelConfig(encoder=EncoderConfig(name="wavlm-random", pretrained=False, config=encoder),
                         pooling="style", regions="octant")
    stats = StatsAccumulator()
    for wave in audio:
        stats.add(wave)
    torch.manual_seed(0)
    return EmoSphereSER.build(config, stats.result()).eval()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import onnxruntime
    import torch

    from emosphere.data import BucketBatchSampler, collate
    from emosphere.export import OnnxModel, export_onnx
    from emosphere.predict import TorchBackend, infer

    torch.set_num_threads(args.threads)
    audio = make_audio(args.utterances, args.min_seconds, args.max_seconds, args.seed)
    items = [{"waveform": wave, "index": i} for i, wave in enumerate(audio)]
    lengths = np.array([len(wave) for wave in audio])
    audio_seconds = float(lengths.sum() / SAMPLE_RATE)
    model = build_model(args.hidden, args.layers, audio)

    singles = [collate([item]) for item in items]
    batches = [collate([items[i] for i in indices])
               for indices in BucketBatchSampler(lengths, args.batch_size, shuffle=False)]
    padded_samples = sum(batch.waveform.numel() for batch in batches)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = export_onnx(model, Path(tmp) / "model.onnx")
        export_seconds = time.perf_counter() - start
        onnx_model = OnnxModel.load(path, threads=args.threads, spinning=args.spin)
    torch_model = TorchBackend(model)
    paths = {
        "a": ("eager PyTorch, one utterance at a time", torch_model, singles),
        "b": (f"eager PyTorch, batches of {args.batch_size} by length", torch_model, batches),
        "c": (f"onnxruntime, batches of {args.batch_size} by length", onnx_model, batches),
    }
    for _, backend, work in paths.values():  # warm-up
        infer(backend, work[:1])
    rounds: dict[str, list[float]] = {key: [] for key in paths}
    avd: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):  # the paths take turns, so that a busy spell hits them alike
        for key, (_, backend, work) in paths.items():
            start = time.perf_counter()
            avd[key] = infer(backend, work)["avd"]
            rounds[key].append(time.perf_counter() - start)

    best = {key: min(times) for key, times in rounds.items()}
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs; {args.threads} threads; "
                   f"{'spinning' if args.spin else 'passive'} thread waits",
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "model": f"random WavLM, hidden {args.hidden}, {args.layers} layers; style pooling; octant head",
        "utterances": len(items),
        "audio_seconds": round(audio_seconds, 1),
        "batch_size": args.batch_size,
        "padding_fraction": round(1 - lengths.sum() / padded_samples, 4),
        "export_seconds": round(export_seconds, 1),
        "repeats": args.repeats,
        "paths": {key: {"what": what, "seconds": round(best[key], 2), "rounds": [round(t, 2) for t in rounds[key]],
                        "rtf": round(best[key] / audio_seconds, 4),
                        "utterances_per_second": round(len(items) / best[key], 2)}
                  for key, (what, _, _) in paths.items()},
        "speedup_b_over_a": round(best["a"] / best["b"], 2),
        "speedup_c_over_b": round(best["b"] / best["c"], 2),
        "max_abs_difference": {"b_vs_a": float(np.abs(avd["b"] - avd["a"]).max()),
                               "c_vs_b": float(np.abs(avd["c"] - avd["b"]).max())},
    }


def report(figures: dict[str, Any]) -> None:
    print(f"{figures['model']}\n{figures['utterances']} utterances, {figures['audio_seconds']} s of audio; "
          f"{figures['machine']}; load average {figures['load_average_at_end']}")
    print(f"{'path':<48} {'seconds':>8} {'RTF':>7} {'utt/s':>6}  rounds")
    for key, row in figures["paths"].items():
        print(f"({key}) {row['what']:<44} {row['seconds']:>8.2f} {row['rtf']:>7.4f} "
              f"{row['utterances_per_second']:>6.2f}  {row['rounds']}")
    diff = figures["max_abs_difference"]
    print(f"speed-up b/a {figures['speedup_b_over_a']:.2f}x, c/b {figures['speedup_c_over_b']:.2f}x; "
          f"max |avd difference| b-a {diff['b_vs_a']:.1e}, c-b {diff['c_vs_b']:.1e}; "
          f"padding {figures['padding_fraction']:.1%}; export {figures['export_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=48, help="generated utterances (default 48)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="shortest utterance (default 2)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="longest utterance (default 10)")
    parser.add_argument("--batch-size", type=int, default=8, help="utterances per batch in (b) and (c) (default 8)")
    parser.add_argument("--hidden", type=int, default=768, help="encoder hidden size (default 768, base)")
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (default 12, base)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the three paths; the fastest counts "
                                                               "(default 3)")
    parser.add_argument("--spin", action="store_true",
                        help="let idle threads spin (the engines' default); without it they sleep "
                             "(OMP_WAIT_POLICY=PASSIVE, onnxruntime allow_spinning=0), which keeps other "
                             "processes on a shared machine from distorting the figures")
    parser.add_argument("--seed", type=int, default=0, help="audio seed (default 0)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not args.spin:  # read by OpenMP when torch loads, hence before the import
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

    figures = measure(args)
    report(figures)
    if max(figures["max_abs_difference"].values()) > PARITY:
        raise SystemExit(f"the paths disagree by more than {PARITY}: {figures['max_abs_difference']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
