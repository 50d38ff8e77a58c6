"""Inference speed: one utterance at a time vs length-bucketed batches vs onnxruntime, fp32 and int8.

Runs the same generated audio through

  (a) eager PyTorch, one utterance at a time (the original recipe's way),
  (b) eager PyTorch, utterances sorted by length and batched as the inference
      engine batches them (emosphere.engine.Windowing.batches),
  (c) onnxruntime on the exported model, with the same batches as (b) (CPU only; ``--no-onnx``
      leaves it out, and (d)),
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
    HF_HUB_OFFLINE=1 .venv/bin/python bench/predict_speed.py --tiny --no-onnx    # does it run? (seconds)
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np

PARITY = 1e-4


def reference(key: str) -> str:
    """The path each path is compared with: (a) for (b), (c) for int8 (d), (b) for the others."""
    return {"b": "a", "d": "c"}.get(key, "b")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    audio = benchlib.make_audio(args.utterances, args.min_seconds, args.max_seconds, args.seed)
    lengths = np.array([len(wave) for wave in audio])
    audio_seconds = float(lengths.sum() / benchlib.SAMPLE_RATE)
    encoder = benchlib.model_encoder(args)
    model = benchlib.build_model(encoder, audio, args.attention)

    singles = benchlib.window_batches(audio, 1)
    batches = benchlib.window_batches(audio, args.batch_size)
    padded_samples = sum(batch.waveform.size for batch in batches)
    backend = benchlib.torch_backend(model, args.device)
    paths = {
        "a": ("eager PyTorch, one utterance at a time", backend, singles),
        "b": (f"eager PyTorch, batches of {args.batch_size} by length", backend, batches),
    }
    versions = {"torch": torch.__version__}
    export_seconds = None
    if backend.device.type == "cpu" and args.onnx:
        import onnxruntime

        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            path = benchlib.export(model, Path(tmp) / "model.onnx")
            export_seconds = round(time.perf_counter() - start, 1)
            paths["c"] = (
                f"onnxruntime, batches of {args.batch_size} by length",
                benchlib.onnx_backend(path, threads=args.threads, spinning=args.spin),
                batches,
            )
            if args.int8:
                int8 = benchlib.quantize(path, Path(tmp) / "int8.onnx")
                paths["d"] = (
                    f"onnxruntime int8, batches of {args.batch_size}",
                    benchlib.onnx_backend(int8, threads=args.threads, spinning=args.spin),
                    batches,
                )
        versions["onnxruntime"] = onnxruntime.__version__
    for precision in args.precisions:
        paths[f"b-{precision}"] = (
            f"PyTorch {precision} autocast, batches of {args.batch_size}",
            benchlib.torch_backend(model, args.device, precision),
            batches,
        )
    compile_seconds = None
    if args.compile:
        compiled = copy.deepcopy(model)
        compiled.encoder.model.forward = torch.compile(compiled.encoder.model.forward, dynamic=True)
        paths["b-compile"] = (
            f"PyTorch, encoder compiled, batches of {args.batch_size}",
            benchlib.torch_backend(compiled, args.device),
            batches,
        )
        start = time.perf_counter()
        for batch in batches:  # compiles for the shapes it meets; later rounds reuse the graphs
            paths["b-compile"][1](batch.waveform, batch.lengths)
        compile_seconds = round(time.perf_counter() - start, 1)

    timed = benchlib.take_turns({key: (engine, work) for key, (_, engine, work) in paths.items()}, args.repeats)
    rounds = {key: times["wall"] for key, times in timed.items()}
    avd = {key: times["avd"] for key, times in timed.items()}

    best = {key: min(times) for key, times in rounds.items()}
    return {
        "machine": f"{benchlib.machine(args.device)}; {args.threads} threads; "
        f"{'spinning' if args.spin else 'passive'} thread waits",
        "load_average_at_end": benchlib.load_average(),
        "versions": versions,
        "model": benchlib.describe_model(encoder, f"{args.attention} attention; style pooling; octant head"),
        "utterances": len(audio),
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
                "utterances_per_second": round(len(audio) / best[key], 2),
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
    benchlib.heading(figures, f"{figures['utterances']} utterances, {figures['audio_seconds']} s of audio")
    print(f"{'path':<56} {'seconds':>8} {'RTF':>7} {'utt/s':>6}  rounds")
    for key, row in figures["paths"].items():
        path, speed = f"({key}) {row['what']}", row["utterances_per_second"]
        print(f"{path:<56} {row['seconds']:>8.2f} {row['rtf']:>7.4f} {speed:>6.2f}  {row['rounds']}")
    differences = ", ".join(f"{key} {value:.1e}" for key, value in figures["max_abs_difference"].items())
    print(
        f"speed-up b/a {figures['speedup_b_over_a']:.2f}x, c/b {figures['speedup_c_over_b']}x, "
        f"d/c {figures['speedup_d_over_c']}x; "
        f"max |avd difference| on [0, 1]: {differences}; padding {figures['padding_fraction']:.1%}; "
        f"export {figures['export_seconds']} s; compile {figures['compile_seconds']} s"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    options = benchlib.parser(__doc__)
    options.add_argument("--utterances", type=int, help="generated utterances (default 48; --tiny 4)")
    options.add_argument("--min-seconds", type=float, default=2.0, help="shortest utterance (default 2)")
    options.add_argument("--max-seconds", type=float, default=10.0, help="longest utterance (default 10)")
    options.add_argument("--batch-size", type=int, default=8, help="utterances per batch in (b) and (c) (default 8)")
    benchlib.add_model_options(options)
    options.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)")
    options.add_argument("--repeats", type=int, help="rounds of the paths; the fastest counts (default 3; --tiny 1)")
    options.add_argument(
        "--spin",
        action="store_true",
        help="let idle threads spin (the engines' default); without it they sleep "
        "(OMP_WAIT_POLICY=PASSIVE, onnxruntime allow_spinning=0), which keeps other "
        "processes on a shared machine from distorting the figures",
    )
    options.add_argument(
        "--device",
        default="cpu",
        help="torch device for (a) and (b), e.g. cuda (default cpu); (c) runs on the CPU only",
    )
    options.add_argument("--no-onnx", dest="onnx", action="store_false", help="leave out (c) and (d), onnxruntime")
    options.add_argument("--no-int8", dest="int8", action="store_false", help="leave out (d), onnxruntime int8")
    options.add_argument(
        "--precisions",
        nargs="*",
        default=[],
        choices=["bf16", "fp16"],
        help="also run (b) under these autocast precisions",
    )
    options.add_argument(
        "--attention", choices=["fused", "eager"], default="fused", help="model.encoder.attention (default fused)"
    )
    options.add_argument("--compile", action="store_true", help="also run (b) with the encoder compiled")
    options.add_argument("--seed", type=int, default=0, help="audio seed (default 0)")
    args = benchlib.defaults(options.parse_args(argv), utterances=(48, 4), repeats=(3, 1))
    if not args.spin:  # read by OpenMP when torch loads, hence before the import
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

    figures = benchlib.finish(measure(args), args.json)  # written first: a failed parity check keeps its figures
    report(figures)
    exact = {key: value for key, value in figures["max_abs_difference"].items() if key.split("_vs_")[0] in ("b", "c")}
    if max(exact.values()) > PARITY:
        raise SystemExit(f"the fp32 paths disagree by more than {PARITY}: {exact}")
    return figures


if __name__ == "__main__":
    main()
