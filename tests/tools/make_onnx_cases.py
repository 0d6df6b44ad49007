#!/usr/bin/env python3
"""make_onnx_cases.py DIR — writes the small ONNX models test_cli.sh feeds `kiln` (with
Debian's python3-onnx; the caller skips these checks when `import onnx` fails):
  sym.onnx          y = relu(x), x: f32[N,4] with N symbolic (needs --input-shape)
  sym_x.npy         an input for it at N=3, and sym_y.npy = relu(sym_x)
  unsupported.onnx  y = Hardmax(relu(x)): an operator Kiln does not import
  default.onnx      y = x @ w, w an initializer that is also a graph input (a default)
  external.onnx     y = x + w, w's data in external.bin beside the model
  ext_x.npy, ext_y.npy   an input for it and the expected output
  escape.onnx       the same with w's data at "../external.bin" (outside the model's dir)
  badopset.onnx     y = relu(x) at opset 99, newer than any Kiln knows
"""
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper, TensorProto, helper


def save(model, path):
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def model(nodes, inputs, outputs, initializers=(), opset=13):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             producer_name="kiln-test_cli")


def external_model(location):
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        e = w.external_data.add()
        e.key, e.value = k, v
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    return model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [x], [y], [w])


def main(out):
    rng = np.random.default_rng(7)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    save(model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [x], [y]),
         os.path.join(out, "sym.onnx"))
    sx = rng.standard_normal((3, 4)).astype(np.float32)
    np.save(os.path.join(out, "sym_x.npy"), sx)
    np.save(os.path.join(out, "sym_y.npy"), np.maximum(sx, 0))

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="r"),
             helper.make_node("Hardmax", ["r"], ["y"], name="hm")]
    save(model(nodes, [x], [y]), os.path.join(out, "unsupported.onnx"))

    w = np.array([1.5, -2.0, 0.25, 8.0], dtype=np.float32)
    with open(os.path.join(out, "external.bin"), "wb") as f:
        f.write(w.tobytes())
    save(external_model("external.bin"), os.path.join(out, "external.onnx"))
    ex = rng.standard_normal((2, 4)).astype(np.float32)
    np.save(os.path.join(out, "ext_x.npy"), ex)
    np.save(os.path.join(out, "ext_y.npy"), ex + w)
    os.makedirs(os.path.join(out, "sub"), exist_ok=True)
    save(external_model("../external.bin"), os.path.join(out, "sub", "escape.onnx"))

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    save(model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [x], [y], opset=99),
         os.path.join(out, "badopset.onnx"))
    # an initializer that is also a graph input: a default the caller may override
    xd = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    wd = helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2])
    yd = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    wv = np.array([[1, 2], [3, 4]], dtype=np.float32)
    save(model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [xd, wd], [yd],
               [numpy_helper.from_array(wv, "w")]), os.path.join(out, "default.onnx"))
    dx = np.array([[1, 1]], dtype=np.float32)
    np.save(os.path.join(out, "def_x.npy"), dx)
    np.save(os.path.join(out, "def_w.npy"), np.eye(2, dtype=np.float32))
    np.save(os.path.join(out, "def_y_default.npy"), dx @ wv)
    np.save(os.path.join(out, "def_y_given.npy"), dx)
    print("wrote ONNX cases to", out)


if __name__ == "__main__":
    main(sys.argv[1])
