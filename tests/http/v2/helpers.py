"""What the V2 tests share: the Triton client's inputs, in-process answers, a model with string labels."""

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException


def in_process(model_file, x):
    """Every output of the model file, run by onnxruntime here with the server's thread settings."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: x}), strict=True))


def tensor_input(x, binary, name="inputs", datatype=None):
    t = triton.InferInput(name, list(x.shape), datatype or triton_datatype(x))
    t.set_data_from_numpy(x, binary_data=binary)
    return t


def triton_datatype(x):
    return {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64", "object": "BYTES",
            "bool": "BOOL"}[x.dtype.name]


def field_inputs(records, binary):
    """One V2 input per raw field: BYTES for strings, FP64 for numbers (missing numbers as NaN in binary)."""
    inputs = []
    for field in dict.fromkeys(f for r in records for f in r):
        values = [r.get(field) for r in records]
        if any(isinstance(v, str) for v in values):
            x = np.array([str(v).encode() for v in values], dtype=object)
        else:
            x = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        inputs.append(tensor_input(x, binary, name=field))
    return inputs


def failure(call):
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def write_string_label_model(folder):
    """A real logistic regression whose class labels are strings: its `label` output is a BYTES tensor."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4))
    y = np.where(x[:, 0] > 0, "yes", "no")
    model = LogisticRegression().fit(x, y)
    onx = to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}},
                  target_opset={"": 17, "ai.onnx.ml": 3})
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
