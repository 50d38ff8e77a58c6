"""int8 on CPUs step by step: what each change to the exported graph and its quantisation gains.

Exports one random model (base-size WavLM by default, as bench/predict_speed.py)
twice, with its convolutions as convolutions (the export before issue 15) and as
channels-last matrix products (emosphere.channels_last, the export now), and
quantises them step by step:

  fp32-conv   fp32, convolutions (``export_onnx(..., channels_last=False)``)
  fp32        fp32, convolutions as matrix products, no transposes around the layer norms
  int8-v0     fp32-conv with its linear layers in int8, full 8-bit weights (the int8 before issue 15)
  int8-v1     int8-v0 with weights in [-64, 64] (reduce_range: no 16-bit saturation without VNNI)
  int8-v2     fp32 with every matrix product in int8 but the first (raw audio), weights in [-64, 64]
  int8        int8-v2 with the quantisation moved above the im2col (``emosphere export --quantize int8``)

Each step runs side by side with the one it changes (the two take turns, ``--repeats`` rounds, the
same batches of generated speech-like audio, onnxruntime with ``--threads`` threads and sleeping
idle threads), and the script prints each step's gain in wall time and in process CPU time (the work
done; less disturbed when other jobs share the cores), the largest deviation of every int8 file from
its fp32 file on [0, 1], and last int8 against fp32 directly. Run it under bench/cpuid_mask.c to
measure another instruction set's kernels on this CPU. See docs/benchmarks.md.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/int8_speed.py [--json figures.json]
    HF_HUB_OFFLINE=1 .venv/bin/python bench/int8_speed.py --tiny                 # does it run? (seconds)
    CPUID_MASK=avx2 LD_PRELOAD=bench/cpuid_mask.so HF_HUB_OFFLINE=1 .venv/bin/python bench/int8_speed.py
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import benchlib
import numpy as np

STEPS = [
    ("fp32", "fp32-conv", "convolutions as matrix products (fp32)"),
    ("int8-v0", "fp32-conv", "linear layers in int8, 8-bit weights (the int8 before)"),
    ("int8-v1", "int8-v0", "weights in [-64, 64]"),
    ("int8-v2", "int8-v1", "feature extractor and pooling in int8 too"),
    ("int8", "int8-v2", "quantisation above the im2col"),
    ("int8", "fp32", "what export writes: int8 against fp32"),
]
"""(step, the file it is measured against, what it changes), in the order they run."""
REFERENCE = {"int8-v0": "fp32-conv", "int8-v1": "fp32-conv", "int8-v2": "fp32", "int8": "fp32"}
"""The fp32 file of each int8 file."""


def write_files(model: Any, folder: Path) -> dict[str, Path]:
    """The fp32 and int8 files of every step."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from emosphere.channels_last import RAW_AUDIO_WEIGHT

    files = {
        "fp32-conv": benchlib.export(model, folder / "fp32-conv.onnx", channels_last=False),
        "fp32": benchlib.export(model, folder / "fp32.onnx"),
    }
    settings = {"op_types_to_quantize": ["MatMul"], "weight_type": QuantType.QInt8, "per_channel": True}
    for name, source, reduce_range in [("int8-v0", "fp32-conv", False), ("int8-v1", "fp32-conv", True)]:
        files[name] = folder / f"{name}.onnx"
        quantize_dynamic(files[source], files[name], reduce_range=reduce_range, **settings)
    raw = [
        n.name
        for n in onnx.load(str(files["fp32"])).graph.node
        if n.input[1:2] and n.input[1].endswith(RAW_AUDIO_WEIGHT)
    ]
    files["int8-v2"] = folder / "int8-v2.onnx"
    quantize_dynamic(files["fp32"], files["int8-v2"], reduce_range=True, nodes_to_exclude=raw, **settings)
    files["int8"] = benchlib.quantize(files["fp32"], folder / "int8.onnx")
    return files


def measure(args: argparse.Namespace) -> dict[str, Any]:
    audio = benchlib.make_audio(args.utterances, args.min_seconds, args.max_seconds, args.seed)
    batches = benchlib.window_batches(audio, args.batch_size)
    audio_seconds = sum(len(wave) for wave in audio) / benchlib.SAMPLE_RATE
    encoder = benchlib.model_encoder(args)
    model = benchlib.build_model(encoder, audio)
    steps, outputs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(model, Path(tmp))
        sizes = {name: round(path.stat().st_size / 2**20, 1) for name, path in files.items()}
        for step, base, what in STEPS:
            paths = {
                name: (benchlib.onnx_backend(files[name], threads=args.threads, spinning=False), batches)
                for name in (base, step)
            }
            timed = benchlib.take_turns(paths, args.repeats)
            del paths
            outputs |= {name: times["avd"] for name, times in timed.items()}
            steps.append(
                {
                    "step": step,
                    "against": base,
                    "what": what,
                    "wall_seconds": {name: [round(t, 2) for t in times["wall"]] for name, times in timed.items()},
                    "cpu_seconds": {name: [round(t, 2) for t in times["cpu"]] for name, times in timed.items()},
                    "gain_wall": round(min(timed[base]["wall"]) / min(timed[step]["wall"]), 3),
                    "gain_cpu": round(min(timed[base]["cpu"]) / min(timed[step]["cpu"]), 3),
                    "rtf": round(min(timed[step]["wall"]) / audio_seconds, 4),
                }
            )
    return {
        "machine": f"{benchlib.machine()}, {args.threads} threads; {benchlib.cpuid_mask()}",
        "load_average_at_end": benchlib.load_average(),
        "model": benchlib.describe_model(encoder),
        "utterances": len(audio),
        "audio_seconds": round(audio_seconds, 1),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "file_mib": sizes,
        "steps": steps,
        "max_abs_difference_from_fp32": {
            name: float(np.abs(outputs[name] - outputs[fp32]).max()) for name, fp32 in REFERENCE.items()
        },
    }


def report(figures: dict[str, Any]) -> None:
    benchlib.heading(
        figures,
        f"{figures['utterances']} utterances, {figures['audio_seconds']} s of audio, "
        f"batches of {figures['batch_size']}",
    )
    print(f"{'step':<9} {'against':<10} {'gain wall':>9} {'gain cpu':>9} {'RTF':>7}  what; rounds (wall s)")
    for row in figures["steps"]:
        print(
            f"{row['step']:<9} {row['against']:<10} {row['gain_wall']:>8.2f}x {row['gain_cpu']:>8.2f}x "
            f"{row['rtf']:>7.4f}  {row['what']}; {row['wall_seconds']}"
        )
    print(
        "max |int8 - fp32| on [0, 1]: "
        + ", ".join(f"{k} {v:.4f}" for k, v in figures["max_abs_difference_from_fp32"].items())
    )
    print("file MiB: " + ", ".join(f"{k} {v}" for k, v in figures["file_mib"].items()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    options = benchlib.parser(__doc__)
    benchlib.add_onnx_speed_options(options, utterances=16, batch_size=8, repeats=3)
    benchlib.add_model_options(options)
    args = benchlib.defaults(options.parse_args(argv), utterances=(16, 2), repeats=(3, 1))
    figures = benchlib.finish(measure(args), args.json)
    report(figures)
    return figures


if __name__ == "__main__":
    main()
