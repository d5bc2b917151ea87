"""Small ONNX graphs with known answers, built with onnx.helper: label = x0 > 0 and probabilities = [1 - s, s]
with s = sigmoid(x0), or variants whose disagreement, garbage or failures are known exactly."""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


def write(folder: Path, *, xor_column: int | None = None, shift_column: int | None = None,
          constant_label: bool = False, fails_above: int | None = None) -> Path:
    """`xor_column`: the label flips where that column is > 0; `shift_column`: s = sigmoid(x0 + that column);
    `constant_label`: the label is always 0; `fails_above`: a run fails when int(x0) is outside [-N, N)."""
    nodes, inits = [], []

    def const(name, value, dtype=np.float32):
        inits.append(onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def column(j, out):
        nodes.append(helper.make_node("Gather", ["inputs", const(f"col{j}", j, np.int64)], [out], axis=1))
        return out

    x0 = column(0, "x0")
    z = x0
    if shift_column is not None:
        nodes.append(helper.make_node("Add", [x0, column(shift_column, "shift")], ["z"]))
        z = "z"
    if fails_above is not None:  # Gather from a table of zeros: an index out of range fails the run
        nodes.append(helper.make_node("Cast", [x0], ["index"], to=TensorProto.INT64))
        nodes.append(helper.make_node("Gather", [const("table", np.zeros(fails_above)), "index"], ["zero"]))
        nodes.append(helper.make_node("Add", [z, "zero"], ["z_checked"]))
        z = "z_checked"
    nodes.append(helper.make_node("Sigmoid", [z], ["s"]))
    nodes.append(helper.make_node("Sub", [const("one", 1.0), "s"], ["q"]))
    nodes.append(helper.make_node("Unsqueeze", ["q", const("axis", [1], np.int64)], ["q1"]))
    nodes.append(helper.make_node("Unsqueeze", ["s", "axis"], ["s1"]))
    nodes.append(helper.make_node("Concat", ["q1", "s1"], ["probabilities"], axis=1))
    threshold = const("threshold", 1e30 if constant_label else 0.0)
    nodes.append(helper.make_node("Greater", [x0, threshold], ["positive"]))
    flag = "positive"
    if xor_column is not None:
        nodes.append(helper.make_node("Greater", [column(xor_column, "flip_col"), const("zero_f", 0.0)], ["flip"]))
        nodes.append(helper.make_node("Xor", ["positive", "flip"], ["flipped"]))
        flag = "flipped"
    nodes.append(helper.make_node("Cast", [flag], ["label"], to=TensorProto.INT64))
    graph = helper.make_graph(
        nodes, "formula", [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, [None, 22])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    return folder


def reference(x: np.ndarray, *, xor_column=None, shift_column=None, constant_label=False):
    """What `write(...)` computes, in numpy."""
    z = x[:, 0] + (x[:, shift_column] if shift_column is not None else 0)
    s = 1 / (1 + np.exp(-z.astype(np.float64)))
    label = (x[:, 0] > (1e30 if constant_label else 0)).astype(np.int64)
    if xor_column is not None:
        label ^= (x[:, xor_column] > 0).astype(np.int64)
    return label, np.stack([1 - s, s], axis=1)
