"""CPU speed of smaller encoders: WavLM-large shapes with fewer layers, and base size, fp32 and int8 onnxruntime.

For each encoder shape (default: large with 24, 12 and 6 layers, ``model.encoder.layers``, and base
size with 12) a random model (style pooling, octant head; speed does not depend on the weights) is
exported fp32 and int8 (``emosphere export [--quantize int8]``) and run on the same batches of
generated speech-like audio as the reference, the 24-layer large fp32 file, in turns (``--repeats``
rounds, the fastest counts; onnxruntime with ``--threads`` threads and sleeping idle threads). It
prints each file's real-time factor (wall seconds per audio second), its speed against the
reference measured in the same rounds (wall time, and process CPU time: the work done, less
disturbed when other jobs share the cores), and the largest int8 - fp32 difference on [0, 1].
See docs/benchmarks.md.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/cpu_encoders.py [--json figures.json]
    HF_HUB_OFFLINE=1 .venv/bin/python bench/cpu_encoders.py --shapes 1024x24 1024x12 --utterances 6
    HF_HUB_OFFLINE=1 .venv/bin/python bench/cpu_encoders.py --tiny     # does it run? (seconds)
"""

from __future__ import annotations

import argparse
import gc
import tempfile
from pathlib import Path
from typing import Any

import benchlib
import numpy as np

TINY_SHAPES = [(32, 2), (32, 1)]
"""--tiny: two tiny encoder shapes, so that every part runs in seconds."""


def measure(args: argparse.Namespace) -> dict[str, Any]:
    audio = benchlib.make_audio(args.utterances, args.min_seconds, args.max_seconds, args.seed)
    batches = benchlib.window_batches(audio, args.batch_size)
    audio_seconds = sum(len(wave) for wave in audio) / benchlib.SAMPLE_RATE

    rows = []
    with tempfile.TemporaryDirectory() as tmp:

        def export(hidden: int, layers: int, quantize: str | None) -> Path:
            model = benchlib.build_model(benchlib.encoder_config(hidden, layers), audio)
            return benchlib.export(model, Path(tmp) / f"{hidden}x{layers}-{quantize or 'fp32'}.onnx", quantize=quantize)

        reference_path = export(*args.shapes[0], None)
        for hidden, layers in args.shapes:
            first = (hidden, layers) == args.shapes[0]
            files = {
                "fp32": reference_path if first else export(hidden, layers, None),
                "int8": export(hidden, layers, "int8"),
            }
            paths = {
                kind: (benchlib.onnx_backend(path, threads=args.threads, spinning=False), batches)
                for kind, path in {"reference": reference_path, **files}.items()
            }
            timed = benchlib.take_turns(paths, args.repeats)
            del paths
            gc.collect()
            for kind in ("fp32", "int8"):
                rows.append(
                    {
                        "shape": f"hidden {hidden}, {layers} layers",
                        "engine": kind,
                        "mib": round(files[kind].stat().st_size / 2**20, 1),
                        "rtf": round(min(timed[kind]["wall"]) / audio_seconds, 4),
                        "wall_seconds": [round(t, 2) for t in timed[kind]["wall"]],
                        "reference_wall_seconds": [round(t, 2) for t in timed["reference"]["wall"]],
                        "speed_vs_reference_wall": round(min(timed["reference"]["wall"]) / min(timed[kind]["wall"]), 2),
                        "speed_vs_reference_cpu": round(min(timed["reference"]["cpu"]) / min(timed[kind]["cpu"]), 2),
                        "max_abs_int8_vs_fp32": float(np.abs(timed["int8"]["avd"] - timed["fp32"]["avd"]).max()),
                    }
                )
    return {
        "machine": f"{benchlib.machine()}, {args.threads} threads; {benchlib.cpuid_mask()}",
        "load_average_at_end": benchlib.load_average(),
        "model": "random WavLM shapes; style pooling; octant head",
        "reference": f"hidden {args.shapes[0][0]}, {args.shapes[0][1]} layers, fp32",
        "utterances": len(audio),
        "audio_seconds": round(audio_seconds, 1),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "rows": rows,
    }


def report(figures: dict[str, Any]) -> None:
    benchlib.heading(
        figures,
        f"{figures['utterances']} utterances, {figures['audio_seconds']} s of audio, batches of "
        f"{figures['batch_size']}; reference {figures['reference']}",
    )
    print(f"{'shape':<26} {'engine':<6} {'MiB':>7} {'RTF':>7} {'vs ref wall':>11} {'vs ref cpu':>10}  rounds (wall s)")
    for row in figures["rows"]:
        print(
            f"{row['shape']:<26} {row['engine']:<6} {row['mib']:>7} {row['rtf']:>7.4f} "
            f"{row['speed_vs_reference_wall']:>10.2f}x {row['speed_vs_reference_cpu']:>9.2f}x  {row['wall_seconds']}"
        )


def shape(text: str) -> tuple[int, int]:
    hidden, layers = text.split("x")
    return int(hidden), int(layers)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    options = benchlib.parser(__doc__)
    options.add_argument(
        "--shapes",
        nargs="+",
        type=shape,
        help="HIDDENxLAYERS encoder shapes; the first is the reference (default 1024x24 1024x12 1024x6 768x12)",
    )
    benchlib.add_onnx_speed_options(options, utterances=12, batch_size=4, repeats=2)
    args = benchlib.defaults(
        options.parse_args(argv),
        shapes=([(1024, 24), (1024, 12), (1024, 6), (768, 12)], TINY_SHAPES),
        utterances=(12, 2),
        repeats=(2, 1),
    )
    figures = benchlib.finish(measure(args), args.json)
    report(figures)
    return figures


if __name__ == "__main__":
    main()
