"""int8 quantisation of an exported model, the same on every CPU.

:func:`quantize_onnx` rewrites an fp32 file from :func:`emosphere.export.export_onnx`
with onnxruntime's dynamic quantisation: the weights of every matrix product
(the linear layers, and the convolutions the export writes as matrix products:
:mod:`emosphere.channels_last`) stored as int8 per output channel in
:data:`WEIGHT_RANGE`, the activations entering them quantised to uint8 on the
fly, batch by batch; everything else stays fp32. :func:`hoist_quantization`
then moves each activation quantisation above the operators that only move
data into it, so that they move uint8 instead of float32.

The weight range is what makes the result independent of the CPU: onnxruntime's
integer kernels compute exact int32 sums on every instruction set, except the
``vpmaddubsw`` kernels of x86 CPUs without VNNI (AVX2-only CPUs such as Haswell
to Zen 3, and AVX-512 CPUs without VNNI such as Skylake-SP), which add pairs of
uint8 x int8 products in signed 16 bits and saturate above 32767. Full int8
weights reach 2 * 255 * 127 = 64770 there; weights in [-64, 64] reach
2 * 255 * 64 = 32640 at most, so no kernel saturates. See docs/onnx.md.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from .backends import METADATA_KEY
from .channels_last import RAW_AUDIO_WEIGHT
from .io import atomic_path

if TYPE_CHECKING:
    import onnx

QUANTIZATIONS = ("int8",)
QUANTIZED_OPS = ("MatMul",)
"""The operators whose weights are stored in 8 bits: every linear layer (onnxruntime quantises the Gemm
of the heads with them), and the convolutions of the feature extractor and of style pooling, which the
export writes as matrix products, except the first, which reads raw audio. The positional convolution
stays fp32 (docs/onnx.md)."""
WEIGHT_RANGE = (-64, 64)
"""int8 weights lie in [-64, 64] (onnxruntime's ``reduce_range``, 7 bits), so that no CPU's integer
kernel saturates (the module docstring)."""
_MOVERS = {"Concat": None, "Reshape": (0,), "Slice": (0,), "Transpose": (0,), "Squeeze": (0,), "Unsqueeze": (0,)}
"""Operators that only select or move elements, and which of their inputs carry the data (None: all)."""


def quantize_onnx(
    source: str | os.PathLike, path: str | os.PathLike, *, op_types: tuple[str, ...] = QUANTIZED_OPS
) -> Path:
    """Write an int8 copy of the fp32 file ``source`` (from :func:`emosphere.export.export_onnx`) to
    ``path``, atomically: weights of ``op_types`` in :data:`WEIGHT_RANGE` per output channel,
    activations uint8 per batch, the first feature-extractor layer and everything else fp32, then
    :func:`hoist_quantization`. The ``emosphere`` metadata records ``quantization: "int8"``, the
    operators and the weight range."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = Path(path)
    fp32 = onnx.load(str(source))
    raw_audio = [n.name for n in fp32.graph.node if n.op_type == "MatMul" and n.input[1].endswith(RAW_AUDIO_WEIGHT)]
    root = logging.getLogger()
    advice = _DropAdvice()  # onnxruntime's advice to pre-process the graph first: measured, it does not help here
    root.addFilter(advice)
    try:
        with atomic_path(path) as tmp:
            quantize_dynamic(
                fp32,
                tmp,
                op_types_to_quantize=list(op_types),
                nodes_to_exclude=raw_audio,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,  # WEIGHT_RANGE
            )
            quantized = onnx.load(str(tmp))
            hoist_quantization(quantized.graph)
            props = {prop.key: prop for prop in quantized.metadata_props}
            described = json.loads(props[METADATA_KEY].value)
            described.update(quantization="int8", quantized_ops=list(op_types), weight_range=list(WEIGHT_RANGE))
            props[METADATA_KEY].value = json.dumps(described)
            onnx.save(quantized, str(tmp))
            onnx.checker.check_model(str(tmp), full_check=False)
    finally:
        root.removeFilter(advice)
    return path


def hoist_quantization(graph: onnx.GraphProto) -> int:
    """Move each ``DynamicQuantizeLinear`` whose input comes from one tensor through :data:`_MOVERS` only
    (the feature extractor's im2col, the attention's head split) above them, in place: they then move
    uint8 instead of float32 (a quarter of the memory traffic). The range is taken over that tensor, a
    superset of the elements that reached the quantisation: the same scale, or one a few elements
    coarser. Returns how many moved."""
    producer = {name: node for node in graph.node for name in node.output}
    users: dict[str, list[str]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            users[name].append(node.name)
    for value in graph.output:
        users[value.name].append("")  # read by the caller
    nodes = list(graph.node)
    moved = 0
    for quantize in [node for node in nodes if node.op_type == "DynamicQuantizeLinear"]:
        found = _movers_into(quantize, producer, users)
        if found is None:
            continue
        source, chain = found
        hoisted = _copy(quantize, [source], [f"{quantize.output[0]}/{source}", *quantize.output[1:]])
        renamed = {source: hoisted.output[0]}
        copies = [hoisted]
        for node in sorted(chain, key=nodes.index):  # graph order
            out = node.output[0]
            renamed[out] = quantize.output[0] if out == quantize.input[0] else f"{quantize.output[0]}/{out}"
            data = range(len(node.input)) if _MOVERS[node.op_type] is None else _MOVERS[node.op_type]
            inputs = [renamed[name] if i in data else name for i, name in enumerate(node.input)]
            copies.append(_copy(node, inputs, [renamed[out]]))
        # Everything the copies read exists before the quantisation did, and its users come after it.
        at = nodes.index(quantize)
        nodes[at : at + 1] = copies
        nodes = [node for node in nodes if node not in chain]
        moved += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return moved


def _movers_into(
    quantize: onnx.NodeProto, producer: dict[str, onnx.NodeProto], users: dict[str, list[str]]
) -> tuple[str, list[onnx.NodeProto]] | None:
    """(the one source tensor, the movers between it and ``quantize``), or None if there are no movers,
    several sources, or a mover's output is also read elsewhere."""
    chain: list[onnx.NodeProto] = []
    sources: set[str] = set()
    pending = [quantize.input[0]]
    while pending:
        name = pending.pop()
        node = producer.get(name)
        if node is None or node.op_type not in _MOVERS or len(node.output) != 1:
            sources.add(name)
        elif node not in chain:
            chain.append(node)
            data = _MOVERS[node.op_type]
            pending += list(node.input) if data is None else [node.input[i] for i in data]
    inside = {quantize.name} | {node.name for node in chain}
    if not chain or len(sources) != 1 or any(set(users[node.output[0]]) - inside for node in chain):
        return None
    return sources.pop(), chain


def _copy(node: onnx.NodeProto, inputs: list[str], outputs: list[str]) -> onnx.NodeProto:
    import onnx

    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.name = f"{node.name}/uint8"
    del copy.input[:], copy.output[:]
    copy.input.extend(inputs)
    copy.output.extend(outputs)
    return copy


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()
