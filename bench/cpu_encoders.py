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
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from predict_speed import build_model, make_audio


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from emosphere.export import export_onnx
    from emosphere.inference import Item, window_batches
    from emosphere.runtime import OnnxModel

    audio = make_audio(args.utterances, args.min_seconds, args.max_seconds, args.seed)
    items = [Item(i, f"utt{i}", wave, [(0, len(wave))]) for i, wave in enumerate(audio)]
    batches = list(window_batches(items, args.batch_size))
    audio_seconds = sum(len(wave) for wave in audio) / 16000

    def timed(engine: OnnxModel) -> tuple[float, float, np.ndarray]:
        start, start_cpu = time.perf_counter(), time.process_time()
        owner, avd = zip(*((batch.owner, engine(batch.waveform, batch.lengths)[0]) for batch in batches))
        values = np.concatenate(avd)[np.argsort(np.concatenate(owner))]
        return time.perf_counter() - start, time.process_time() - start_cpu, values

    rows = []
    with tempfile.TemporaryDirectory() as tmp:

        def export(hidden: int, layers: int, quantize: str | None) -> Path:
            model = build_model(hidden, layers, audio)
            return export_onnx(model, Path(tmp) / f"{hidden}x{layers}-{quantize or 'fp32'}.onnx", quantize=quantize)

        reference_path = export(*args.shapes[0], None)
        for hidden, layers in args.shapes:
            first = (hidden, layers) == args.shapes[0]
            files = {
                "fp32": reference_path if first else export(hidden, layers, None),
                "int8": export(hidden, layers, "int8"),
            }
            engines = {"reference": OnnxModel.load(reference_path, threads=args.threads, spinning=False)}
            engines |= {
                kind: OnnxModel.load(path, threads=args.threads, spinning=False) for kind, path in files.items()
            }
            for engine in engines.values():  # warm-up
                engine(batches[0].waveform[:1], batches[0].lengths[:1])
            wall: dict[str, list[float]] = {name: [] for name in engines}
            cpu: dict[str, list[float]] = {name: [] for name in engines}
            values = {}
            for _ in range(args.repeats):  # take turns, so that a busy spell hits all alike
                for name, engine in engines.items():
                    seconds, cpu_seconds, values[name] = timed(engine)
                    wall[name].append(seconds)
                    cpu[name].append(cpu_seconds)
            for kind in ("fp32", "int8"):
                rows.append(
                    {
                        "shape": f"hidden {hidden}, {layers} layers",
                        "engine": kind,
                        "mib": round(files[kind].stat().st_size / 2**20, 1),
                        "rtf": round(min(wall[kind]) / audio_seconds, 4),
                        "wall_seconds": [round(t, 2) for t in wall[kind]],
                        "reference_wall_seconds": [round(t, 2) for t in wall["reference"]],
                        "speed_vs_reference_wall": round(min(wall["reference"]) / min(wall[kind]), 2),
                        "speed_vs_reference_cpu": round(min(cpu["reference"]) / min(cpu[kind]), 2),
                        "max_abs_int8_vs_fp32": float(np.abs(values["int8"] - values["fp32"]).max()),
                    }
                )
            del engines
            gc.collect()
    return {
        "machine": f"{os.cpu_count()} CPUs, {args.threads} threads; CPUID_MASK={os.environ.get('CPUID_MASK', '')}",
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "reference": f"hidden {args.shapes[0][0]}, {args.shapes[0][1]} layers, fp32",
        "utterances": len(items),
        "audio_seconds": round(audio_seconds, 1),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "rows": rows,
    }


def report(figures: dict[str, Any]) -> None:
    print(
        f"{figures['utterances']} utterances, {figures['audio_seconds']} s of audio, "
        f"batches of {figures['batch_size']}; {figures['machine']}; load average {figures['load_average_at_end']}; "
        f"reference {figures['reference']}"
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shapes",
        nargs="+",
        type=shape,
        default=[(1024, 24), (1024, 12), (1024, 6), (768, 12)],
        help="HIDDENxLAYERS encoder shapes; the first is the reference (default 1024x24 1024x12 1024x6 768x12)",
    )
    parser.add_argument("--utterances", type=int, default=12, help="generated utterances (default 12)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="shortest utterance (default 2)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="longest utterance (default 10)")
    parser.add_argument("--batch-size", type=int, default=4, help="utterances per batch (default 4)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds; the fastest counts (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="audio seed (default 0)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    figures = measure(args)
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
