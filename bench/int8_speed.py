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
    CPUID_MASK=avx2 LD_PRELOAD=bench/cpuid_mask.so HF_HUB_OFFLINE=1 .venv/bin/python bench/int8_speed.py
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from predict_speed import build_model, make_audio

STEPS = [
    ("fp32", "fp32-conv", "convolutions as matrix products (fp32)"),
    ("int8-v0", "fp32-conv", "linear layers in int8, 8-bit weights (the int8 before)"),
    ("int8-v1", "int8-v0", "weights in [-64, 64]"),
    ("int8-v2", "int8-v1", "feature extractor and pooling in int8 too"),
    ("int8", "int8-v2", "quantisation above the im2col"),
    ("int8", "fp32", "what export writes: int8 against fp32"),
]
"""(step, the file it is measured against, what it changes), in the order they run."""


def write_files(model: Any, folder: Path) -> dict[str, Path]:
    """The fp32 and int8 files of every step."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from emosphere.channels_last import RAW_AUDIO_WEIGHT
    from emosphere.export import export_onnx
    from emosphere.quantize import quantize_onnx

    files = {
        "fp32-conv": export_onnx(model, folder / "fp32-conv.onnx", channels_last=False),
        "fp32": export_onnx(model, folder / "fp32.onnx"),
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
    files["int8"] = quantize_onnx(files["fp32"], folder / "int8.onnx")
    return files


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from emosphere.inference import Item, window_batches
    from emosphere.runtime import OnnxModel

    audio = make_audio(args.utterances, args.min_seconds, args.max_seconds, args.seed)
    items = [Item(i, f"utt{i}", wave, [(0, len(wave))]) for i, wave in enumerate(audio)]
    batches = list(window_batches(items, args.batch_size))
    audio_seconds = sum(len(wave) for wave in audio) / 16000
    model = build_model(args.hidden, args.layers, audio)

    def run(engine: OnnxModel) -> np.ndarray:
        owner, avd = zip(*((batch.owner, engine(batch.waveform, batch.lengths)[0]) for batch in batches))
        return np.concatenate(avd)[np.argsort(np.concatenate(owner))]

    steps, outputs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(model, Path(tmp))
        sizes = {name: round(path.stat().st_size / 2**20, 1) for name, path in files.items()}
        for step, base, what in STEPS:
            engines = {name: OnnxModel.load(files[name], threads=args.threads, spinning=False) for name in (base, step)}
            for engine in engines.values():  # warm-up
                engine(batches[0].waveform[:1], batches[0].lengths[:1])
            wall: dict[str, list[float]] = {name: [] for name in engines}
            cpu: dict[str, list[float]] = {name: [] for name in engines}
            for _ in range(args.repeats):  # the two take turns, so that a busy spell hits both
                for name, engine in engines.items():
                    start, start_cpu = time.perf_counter(), time.process_time()
                    outputs[name] = run(engine)
                    wall[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
            del engines
            steps.append(
                {
                    "step": step,
                    "against": base,
                    "what": what,
                    "wall_seconds": {name: [round(t, 2) for t in times] for name, times in wall.items()},
                    "cpu_seconds": {name: [round(t, 2) for t in times] for name, times in cpu.items()},
                    "gain_wall": round(min(wall[base]) / min(wall[step]), 3),
                    "gain_cpu": round(min(cpu[base]) / min(cpu[step]), 3),
                    "rtf": round(min(wall[step]) / audio_seconds, 4),
                }
            )
    reference = {"int8-v0": "fp32-conv", "int8-v1": "fp32-conv", "int8-v2": "fp32", "int8": "fp32"}
    return {
        "machine": f"{os.cpu_count()} CPUs, {args.threads} threads; CPUID_MASK={os.environ.get('CPUID_MASK', '')}",
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "model": f"random WavLM, hidden {args.hidden}, {args.layers} layers; style pooling; octant head",
        "utterances": len(items),
        "audio_seconds": round(audio_seconds, 1),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "file_mib": sizes,
        "steps": steps,
        "max_abs_difference_from_fp32": {
            name: float(np.abs(outputs[name] - outputs[fp32]).max()) for name, fp32 in reference.items()
        },
    }


def report(figures: dict[str, Any]) -> None:
    print(
        f"{figures['model']}\n{figures['utterances']} utterances, {figures['audio_seconds']} s of audio, batches of "
        f"{figures['batch_size']}; {figures['machine']}; load average {figures['load_average_at_end']}"
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=16, help="generated utterances (default 16)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="shortest utterance (default 2)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="longest utterance (default 10)")
    parser.add_argument("--batch-size", type=int, default=8, help="utterances per batch (default 8)")
    parser.add_argument("--hidden", type=int, default=768, help="encoder hidden size (default 768, base)")
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (default 12, base)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of each pair; the fastest counts (default 3)")
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
