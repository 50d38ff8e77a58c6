"""Accuracy of the int8 ONNX model against fp32 on a labelled split (the demo held-out set by default).

Exports the trained model to ONNX twice, fp32 and int8 (``emosphere export
--quantize int8``: ``emosphere.quantize.quantize_onnx``), predicts every file of
the split with both through the one inference path, and prints the CCC per
dimension (1-7 scale, as ``emosphere evaluate`` scores it) of PyTorch fp32,
onnxruntime fp32 and onnxruntime int8, and the largest absolute difference
between the int8 and fp32 file values on the 1-7 scale. ``--op-types`` tries
other operator sets (e.g. ``MatMul Conv``). Speed: bench/predict_speed.py (a
model this small says little about it).

    make demo   # or: emosphere demo-corpus data/demo_corpus && emosphere train --config recipes/demo/tiny.yaml
    HF_HUB_OFFLINE=1 .venv/bin/python bench/int8_accuracy.py --model runs/demo/model --corpus data/demo_corpus
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import export, file_values, finish, onnx_backend, parser, quantize, torch_backend


def main(argv: list[str] | None = None) -> dict[str, Any]:
    options = parser(__doc__, tiny=False)
    options.add_argument("--model", type=Path, default=Path("runs/demo/model"), help="trained model directory")
    options.add_argument("--corpus", type=Path, default=Path("data/demo_corpus"), help="labelled corpus")
    options.add_argument("--split", default="Test1", help="split to score (default Test1, the demo's held-out set)")
    options.add_argument("--op-types", nargs="+", help="operators to quantise (default: emosphere's choice)")
    options.add_argument("--batch-size", type=int, default=16)
    args = options.parse_args(argv)

    from emosphere.evaluate import score
    from emosphere.labels import Corpus, prepare_labels, split
    from emosphere.model import EmoSphereSER
    from emosphere.quantize import QUANTIZED_OPS

    model = EmoSphereSER.from_pretrained(args.model)
    rows = split(prepare_labels(Corpus.at(args.corpus), model.regions, progress=False), args.split)
    op_types = tuple(args.op_types or QUANTIZED_OPS)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export(model, Path(tmp) / "fp32.onnx")
        int8 = quantize(fp32, Path(tmp) / "int8.onnx", op_types=op_types)
        backends = {
            "pytorch fp32": torch_backend(model),
            "onnxruntime fp32": onnx_backend(fp32),
            "onnxruntime int8": onnx_backend(int8),
        }
        sizes = {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size}
        values, metrics = {}, {}
        for name, backend in backends.items():
            avd, probs = file_values(backend, rows["path"].tolist(), args.batch_size)
            values[name] = 1 + 6 * np.clip(avd, 0, 1)
            metrics[name] = score(rows, avd, probs, model.regions, split=args.split)
    figures = {
        "model": str(args.model),
        "split": args.split,
        "n": len(rows),
        "quantized_ops": list(op_types),
        "file_mib": {k: round(v / 2**20, 2) for k, v in sizes.items()},
        "ccc": {name: m["ccc"] for name, m in metrics.items()},
        "region_accuracy": {name: m["region"]["accuracy"] for name, m in metrics.items()},
        "max_abs_difference_1_7": {
            "onnxruntime fp32 vs pytorch fp32": float(
                np.abs(values["onnxruntime fp32"] - values["pytorch fp32"]).max()
            ),
            "int8 vs fp32": float(np.abs(values["onnxruntime int8"] - values["onnxruntime fp32"]).max()),
        },
        "mean_abs_difference_1_7_int8_vs_fp32": float(
            np.abs(values["onnxruntime int8"] - values["onnxruntime fp32"]).mean()
        ),
    }
    print(
        f"{args.split} of {args.corpus}, n={len(rows)}; int8 quantises {', '.join(op_types)}; "
        f"file {figures['file_mib']['fp32']} MiB fp32, {figures['file_mib']['int8']} MiB int8"
    )
    for name, ccc in figures["ccc"].items():
        print(
            f"{name:<18} CCC arousal {ccc['arousal']:.4f}  valence {ccc['valence']:.4f}  "
            f"dominance {ccc['dominance']:.4f}  mean {ccc['mean']:.4f} | region accuracy "
            f"{figures['region_accuracy'][name]:.4f}"
        )
    print(
        "max |difference| on 1-7: "
        + ", ".join(f"{k} {v:.4f}" for k, v in figures["max_abs_difference_1_7"].items())
        + f"; mean int8 vs fp32 {figures['mean_abs_difference_1_7_int8_vs_fp32']:.4f}"
    )
    return finish(figures, args.json)


if __name__ == "__main__":
    main()
