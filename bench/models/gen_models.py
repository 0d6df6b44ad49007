#!/usr/bin/env python3
"""bench/models/gen_models.py — generates the side-by-side benchmark's models from one set
of seeded NumPy weights: .npy files (read by bench/hand_tuned.c and the Python runners),
the Kiln model as TEXT IR (`kiln.graph 1.0`, every constant element printed exactly) and
the same graph as ONNX (onnx.helper). Needs only numpy (+ onnx for the .onnx files).

usage: gen_models.py OUTDIR [--no-onnx]
Writes OUTDIR/<model>/{spec.json, x.npy, <weights>.npy, model.ktxt, model.onnx, ref.npy}.
ref.npy is the float64 NumPy result every implementation is checked against.
"""
import json
import os
import sys

import numpy as np

# The 50-op chain: 10 blocks of 5 cheap ops, each binary op with its own [1,64] constant.
CHAIN_BLOCK = ["mul", "add", "relu", "sub", "minimum"]
CHAIN_BLOCKS = 10


def f32_text(a):
    """Every element exactly: repr of the float64 that equals the float32 value is the
    shortest decimal that reads back to the same double, hence to the same float32."""
    return ", ".join(repr(float(v)) for v in np.asarray(a, dtype=np.float32).ravel())


def dims(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


class Ktxt:
    """Builds a kiln.graph 1.0 text file, one node per line."""

    def __init__(self):
        self.lines = ["kiln.graph 1.0"]
        self.n = 0

    def node(self, name, op, inputs=(), attrs=""):
        ins = ", ".join("%%%d" % i for i in inputs)
        a = " {" + attrs + "}" if attrs else ""
        self.lines.append('%%%d "%s" = %s(%s)%s' % (self.n, name, op, ins, a))
        self.n += 1
        return self.n - 1

    def placeholder(self, name, shape):
        return self.node(name, "placeholder", (), "dtype = f32, shape = %s" % dims(shape))

    def const(self, name, arr):
        arr = np.asarray(arr, dtype=np.float32)
        return self.node(name, "constant", (),
                         "value = f32%s{%s}" % (dims(arr.shape), f32_text(arr)))

    def text(self):
        return "\n".join(self.lines) + "\n"


def relu(v):
    return np.maximum(v, 0.0)


def mlp_spec(batch):
    return {"kind": "dense", "layers": [[784, 512, True, True], [512, 512, True, True],
                                        [512, 10, True, False]], "batch": batch}


def lecture_spec():
    # The lecture's two-layer net: x[64,1000] @ w1[1000,100] -> relu -> @ w2[100,10], no bias.
    return {"kind": "dense", "layers": [[1000, 100, False, True], [100, 10, False, False]],
            "batch": 64}


def gen_dense(rng, spec, outdir):
    """spec layers: [in, out, has_bias, relu_after]. Weights W[in,out] (x @ W); the
    weights depend only on the layer sizes (one MLP at every batch size)."""
    b = spec["batch"]
    x = rng.standard_normal((b, spec["layers"][0][0])).astype(np.float32)
    rng = np.random.default_rng([spec["layers"][0][0], spec["layers"][0][1], 7])
    np.save(os.path.join(outdir, "x.npy"), x)
    k = Ktxt()
    cur = k.placeholder("x", x.shape)
    ref = x.astype(np.float64)
    for i, (fin, fout, has_bias, do_relu) in enumerate(spec["layers"], 1):
        w = (rng.standard_normal((fin, fout)) * np.sqrt(2.0 / fin)).astype(np.float32)
        np.save(os.path.join(outdir, "w%d.npy" % i), w)
        wn = k.const("w%d" % i, w)
        last = i == len(spec["layers"])
        cur = k.node("y" if last and not has_bias and not do_relu else "mm%d" % i,
                     "matmul", (cur, wn))
        ref = ref @ w.astype(np.float64)
        if has_bias:
            bias = (rng.standard_normal(fout) * 0.1).astype(np.float32)
            np.save(os.path.join(outdir, "b%d.npy" % i), bias)
            bn = k.const("b%d" % i, bias)
            cur = k.node("y" if last and not do_relu else "pre%d" % i, "add", (cur, bn))
            ref = ref + bias.astype(np.float64)
        if do_relu:
            cur = k.node("y" if last else "h%d" % i, "relu", (cur,))
            ref = relu(ref)
    return k, x, ref


def gen_chain(rng, outdir):
    x = rng.standard_normal((1, 64)).astype(np.float32)
    np.save(os.path.join(outdir, "x.npy"), x)
    consts = []
    k = Ktxt()
    cur = k.placeholder("x", x.shape)
    ref = x.astype(np.float64)
    n_ops = CHAIN_BLOCKS * len(CHAIN_BLOCK)
    step = 0
    for _ in range(CHAIN_BLOCKS):
        for op in CHAIN_BLOCK:
            step += 1
            name = "y" if step == n_ops else "s%d" % step
            if op == "relu":
                cur = k.node(name, "relu", (cur,))
                ref = relu(ref)
                consts.append(None)
                continue
            if op == "mul":
                c = rng.uniform(0.5, 1.5, (1, 64))
            elif op == "add":
                c = rng.uniform(-0.5, 0.5, (1, 64))
            elif op == "sub":
                c = rng.uniform(-0.2, 0.2, (1, 64))
            else:  # minimum
                c = rng.uniform(1.0, 2.0, (1, 64))
            c = c.astype(np.float32)
            consts.append(c)
            cn = k.const("c%d" % step, c)
            cur = k.node(name, op, (cur, cn))
            c64 = c.astype(np.float64)
            ref = {"mul": lambda r: r * c64, "add": lambda r: r + c64,
                   "sub": lambda r: r - c64, "minimum": lambda r: np.minimum(r, c64)}[op](ref)
    stacked = np.stack([c if c is not None else np.zeros((1, 64), np.float32)
                        for c in consts]).reshape(n_ops, 64)
    np.save(os.path.join(outdir, "consts.npy"), stacked)
    return k, x, ref


def onnx_dense(spec, outdir, path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    b = spec["batch"]
    nodes, inits = [], []
    cur = "x"
    nl = len(spec["layers"])
    for i, (fin, fout, has_bias, do_relu) in enumerate(spec["layers"], 1):
        w = np.load(os.path.join(outdir, "w%d.npy" % i))
        inits.append(numpy_helper.from_array(w, "w%d" % i))
        last = i == nl
        out = "y" if last and not has_bias and not do_relu else "mm%d" % i
        if has_bias:
            inits.append(numpy_helper.from_array(np.load(os.path.join(outdir, "b%d.npy" % i)),
                                                 "b%d" % i))
            # Gemm is what exporters emit for Linear (ORT fuses Gemm+Relu itself if it can).
            out = "y" if last and not do_relu else "pre%d" % i
            nodes.append(helper.make_node("Gemm", [cur, "w%d" % i, "b%d" % i], [out]))
        else:
            nodes.append(helper.make_node("MatMul", [cur, "w%d" % i], [out]))
        cur = out
        if do_relu:
            out = "y" if last else "h%d" % i
            nodes.append(helper.make_node("Relu", [cur], [out]))
            cur = out
    fin0, fout_last = spec["layers"][0][0], spec["layers"][-1][1]
    g = helper.make_graph(nodes, "dense",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, fin0])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [b, fout_last])],
                          inits)
    save_onnx(g, path)


def onnx_chain(outdir, path):
    from onnx import TensorProto, helper, numpy_helper
    consts = np.load(os.path.join(outdir, "consts.npy"))
    onnx_op = {"mul": "Mul", "add": "Add", "sub": "Sub", "minimum": "Min", "relu": "Relu"}
    nodes, inits = [], []
    cur = "x"
    ops = CHAIN_BLOCK * CHAIN_BLOCKS
    for step, op in enumerate(ops, 1):
        out = "y" if step == len(ops) else "s%d" % step
        if op == "relu":
            nodes.append(helper.make_node("Relu", [cur], [out]))
        else:
            cname = "c%d" % step
            inits.append(numpy_helper.from_array(consts[step - 1].reshape(1, 64), cname))
            nodes.append(helper.make_node(onnx_op[op], [cur, cname], [out]))
        cur = out
    g = helper.make_graph(nodes, "chain",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
                          inits)
    save_onnx(g, path)


def save_onnx(g, path):
    import onnx
    from onnx import helper
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8  # readable by any onnxruntime >= 1.10
    onnx.checker.check_model(m)
    onnx.save(m, path)


MODELS = [
    ("mlp_b1", lambda: mlp_spec(1)),
    ("mlp_b8", lambda: mlp_spec(8)),
    ("mlp_b32", lambda: mlp_spec(32)),
    ("mlp_b256", lambda: mlp_spec(256)),
    ("lecture", lecture_spec),
    ("chain50", lambda: {"kind": "chain", "ops": CHAIN_BLOCK * CHAIN_BLOCKS}),
]


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = argv[1]
    want_onnx = "--no-onnx" not in argv
    for i, (name, mk) in enumerate(MODELS):
        spec = mk()
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        rng = np.random.default_rng(20261127 + i)
        if spec["kind"] == "dense":
            k, x, ref = gen_dense(rng, spec, d)
        else:
            k, x, ref = gen_chain(rng, d)
        with open(os.path.join(d, "model.ktxt"), "w") as f:
            f.write(k.text())
        np.save(os.path.join(d, "ref.npy"), ref)
        if want_onnx:
            (onnx_dense(spec, d, os.path.join(d, "model.onnx")) if spec["kind"] == "dense"
             else onnx_chain(d, os.path.join(d, "model.onnx")))
        spec["name"] = name
        with open(os.path.join(d, "spec.json"), "w") as f:
            json.dump(spec, f)
        print("gen_models: %s (x %s)" % (name, "x".join(map(str, x.shape))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
