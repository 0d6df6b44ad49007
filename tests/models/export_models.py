#!/usr/bin/env python3
"""tests/models/export_models.py — exports real architectures with seeded random weights
from PyTorch to ONNX and records ONNX Runtime's outputs, for test_models (run_models.py).
Needs torch (+ torchvision for resnet18/mobilenetv2) and onnxruntime; never Kiln.

usage: export_models.py OUTDIR [--models mlp,lenet,resnet18,mobilenetv2] [--save-torch]
Writes, per model M: OUTDIR/M.onnx, M.input.npy (the seeded input), M.ort.npy (ONNX
Runtime's output on it) and M.json (ONNX node/op counts, ORT-vs-PyTorch error, times);
with --save-torch also M.pt, the module's state_dict (bench/side_by_side.py times
PyTorch eager on it).
A model whose files are already there from the same version of this script is kept.
Exit status: 0, 1 on an export or ORT failure, 77 when torch/onnxruntime are missing.
"""
import hashlib
import json
import os
import sys
import time
import warnings

SKIP = 77
OPSET = 13
# name: (batch, input shape without batch, needs torchvision)
MODELS = {
    "mlp": (4, (784,), False),
    "lenet": (2, (1, 28, 28), False),
    "resnet18": (1, (3, 224, 224), True),
    "mobilenetv2": (1, (3, 224, 224), True),
}


def script_version():
    with open(os.path.abspath(__file__), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def randomize_batchnorm(torch, model):
    """Non-trivial running statistics and affine parameters, so that Kiln's batch-norm
    folding has something to fold (fresh modules have mean 0, var 1, gamma 1, beta 0).
    Kept near 1 in scale so activations stay O(1) through deep networks."""
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n) * 0.2)
                m.running_var.copy_(torch.rand(n) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n) + 0.5)
                m.bias.copy_(torch.randn(n) * 0.2)
            m.eps = 1e-5


def build(torch, name):
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    if name == "lenet":
        # LeNet-5 layout (28x28 input, padded first conv), with one BatchNorm2d, one max
        # and one average pool, tanh and ReLU, so each of those ops is exercised.
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.Tanh(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    import torchvision
    if name == "resnet18":
        return torchvision.models.resnet18(weights=None)
    if name == "mobilenetv2":
        return torchvision.models.mobilenet_v2(weights=None)
    raise ValueError(name)


def rel_error(a, ref):
    import numpy as np
    a = np.asarray(a, np.float64).ravel()
    ref = np.asarray(ref, np.float64).ravel()
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(a - ref) / (den if den > 0 else 1.0))


def export_one(torch, ort, np, name, outdir, seed, save_torch):
    batch, shape, _ = MODELS[name]
    torch.manual_seed(seed)
    model = build(torch, name)
    randomize_batchnorm(torch, model)
    model.eval()
    x = torch.randn((batch,) + shape)
    path = os.path.join(outdir, name + ".onnx")
    t0 = time.time()
    # TrainingMode.PRESERVE on a model in eval mode exports inference-mode
    # BatchNormalization nodes; TrainingMode.EVAL would fold them into the convolutions
    # itself (torch's eval peephole) and leave Kiln's fold nothing to do.
    with warnings.catch_warnings():  # "constant folding in training-amenable mode": the
        warnings.simplefilter("ignore")  # model is in eval mode, folding is what we want
        torch.onnx.export(model, x, path, opset_version=OPSET, do_constant_folding=True,
                          input_names=["x"], output_names=["y"],
                          training=torch.onnx.TrainingMode.PRESERVE)
    t_export = time.time() - t0
    with torch.no_grad():
        ref_torch = model(x).numpy()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    y = sess.run(None, {"x": xn})[0]
    if not np.all(np.isfinite(y)):
        raise RuntimeError("%s: ONNX Runtime's output is not finite" % name)
    if save_torch:
        torch.save(model.state_dict(), os.path.join(outdir, name + ".pt"))
    np.save(os.path.join(outdir, name + ".input.npy"), xn)
    np.save(os.path.join(outdir, name + ".ort.npy"), y)
    ops = {}
    try:
        import onnx
        for n in onnx.load(path).graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
    except ImportError:
        pass
    info = {"model": name, "seed": seed, "opset": OPSET, "input_shape": list(xn.shape),
            "output_shape": list(y.shape), "onnx_nodes": sum(ops.values()) if ops else None,
            "onnx_ops": ops, "ort_vs_torch_rel": rel_error(y, ref_torch),
            "output_norm": float(np.linalg.norm(y)), "export_s": round(t_export, 3),
            "onnx_bytes": os.path.getsize(path), "script": script_version(),
            "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__,
                         "numpy": np.__version__}}
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    return info


def up_to_date(outdir, name, save_torch):
    try:
        with open(os.path.join(outdir, name + ".json")) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return False
    files = [name + s for s in (".onnx", ".input.npy", ".ort.npy")]
    if save_torch:
        files.append(name + ".pt")
    return info.get("script") == script_version() and all(
        os.path.isfile(os.path.join(outdir, p)) for p in files)


def main(argv):
    if len(argv) < 2 or argv[1].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    outdir = argv[1]
    names = list(MODELS)
    save_torch = "--save-torch" in argv
    if "--models" in argv[:-1]:
        names = [n for n in argv[argv.index("--models") + 1].split(",") if n]
    bad = [n for n in names if n not in MODELS]
    if bad:
        print("export_models: unknown model(s) %s (have %s)" % (bad, ", ".join(MODELS)),
              file=sys.stderr)
        return 2
    os.makedirs(outdir, exist_ok=True)
    todo = [n for n in names if not up_to_date(outdir, n, save_torch)]
    if not todo:
        return 0
    try:
        import numpy as np
        import onnxruntime as ort
        import torch
        if any(MODELS[n][2] for n in todo):
            import torchvision  # noqa: F401
        torch.from_numpy(np.zeros(1))  # Debian's torch 1.13 fails here with NumPy 2
    except Exception as e:  # noqa: BLE001 - any import problem means "not installed"
        print("export_models: SKIP: %s: %s (tests/models/setup.sh installs torch, "
              "torchvision and onnxruntime)" % (type(e).__name__, str(e).splitlines()[0]),
              file=sys.stderr)
        return SKIP
    torch.set_num_threads(1)
    rc = 0
    for name in todo:
        try:
            info = export_one(torch, ort, np, name, outdir, 1000 + list(MODELS).index(name),
                              save_torch)
            print("export_models: %s: %s ONNX nodes, ORT vs PyTorch %.2e, %.1f s" % (
                name, info["onnx_nodes"], info["ort_vs_torch_rel"], info["export_s"]),
                file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - report and go on with the others
            print("export_models: %s: %s: %s" % (name, type(e).__name__, e), file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
