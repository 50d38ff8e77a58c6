"""hoist_quantization: the quantisation moves above operators that only move data, with the same result."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from emosphere.quantize import hoist_quantization


def im2col_graph(shared: bool = False) -> onnx.ModelProto:
    """x (2, 8, 4) -> two slices of 6 steps as (2, 3, 8) rows, side by side -> quantised -> x int8 weights.
    ``shared``: one slice is also an output of its own."""
    starts = [numpy_helper.from_array(np.array([v], np.int64), f"start{v}") for v in (0, 2)]
    constants = [
        *starts,
        numpy_helper.from_array(np.array([6], np.int64), "end6"),
        numpy_helper.from_array(np.array([8], np.int64), "end8"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([2, 3, 8], np.int64), "shape"),
        numpy_helper.from_array(np.random.default_rng(0).integers(-64, 65, (16, 5)).astype(np.int8), "w"),
    ]
    nodes = [
        helper.make_node("Slice", ["x", "start0", "end6", "axis1"], ["a"], name="slice_a"),
        helper.make_node("Slice", ["x", "start2", "end8", "axis1"], ["b"], name="slice_b"),
        helper.make_node("Reshape", ["a", "shape"], ["ra"], name="reshape_a"),
        helper.make_node("Reshape", ["b", "shape"], ["rb"], name="reshape_b"),
        helper.make_node("Concat", ["ra", "rb"], ["columns"], axis=-1, name="concat"),
        helper.make_node("DynamicQuantizeLinear", ["columns"], ["q", "scale", "zero"], name="quantize"),
        helper.make_node("MatMulInteger", ["q", "w", "zero"], ["y"], name="product"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.INT32, [2, 3, 5])]
    if shared:
        outputs.append(helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 6, 4]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 4])], outputs, constants
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def test_the_im2col_moves_uint8_and_gives_the_same_products():
    x = np.random.default_rng(1).standard_normal((2, 8, 4)).astype(np.float32)
    model = im2col_graph()
    expected = run(model, x)
    assert hoist_quantization(model.graph) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops[0] == "DynamicQuantizeLinear" and model.graph.node[0].input[0] == "x"
    assert ops.count("DynamicQuantizeLinear") == 1 and ops.count("Slice") == 2 and ops.count("Concat") == 1
    # x's range covers the columns' range here (every step is in some column), so the products are equal.
    np.testing.assert_array_equal(run(model, x), expected)


def test_a_data_path_also_read_elsewhere_stays_float():
    model = im2col_graph(shared=True)
    before = [n.name for n in model.graph.node]
    assert hoist_quantization(model.graph) == 0
    assert [n.name for n in model.graph.node] == before
