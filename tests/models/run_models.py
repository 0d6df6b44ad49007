#!/usr/bin/env python3
"""tests/models/run_models.py — test_models: real networks exported from PyTorch (by
export_models.py, seeded) through Kiln, checked against ONNX Runtime. For each model:
`kiln import M.onnx -o M.kiln`, `kiln compile M.kiln -o M.kart`, `kiln run M.kart` (the
cpu target) and, for the models named by --ref, `kiln run M.kiln --target ref` (the
reference interpreter); each output must be within --tol of ORT's in normwise relative
error ||k - o|| / ||o||. Prints one table (model, nodes, times, errors).

usage: run_models.py --kiln BIN/kiln --dir WORKDIR --models a,b [--ref a,b] [--tol 1e-4]
Exit status: 0 all within tolerance, 1 a failure, 77 (skip) when PyTorch, torchvision
or onnxruntime are not installed (tests/models/setup.sh installs them).
"""
import argparse
import json
import os
import subprocess
import sys
import time

try:
    import numpy as np
except ImportError:
    np = None

SKIP = 77
STEP_TIMEOUT_S = 600  # one kiln command; ctest's TIMEOUT bounds the whole test
HERE = os.path.dirname(os.path.abspath(__file__))


def sh(cmd):
    """Runs cmd; returns (ok, seconds, last lines of stderr/stdout)."""
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, time.time() - t0, "timed out after %d s" % STEP_TIMEOUT_S
    except OSError as e:
        return False, time.time() - t0, str(e)
    dt = time.time() - t0
    msg = (p.stderr.strip() or p.stdout.strip()).splitlines()
    if p.returncode < 0:
        msg.append("killed by signal %d" % -p.returncode)
    if len(msg) > 4:  # a usage text: its first line says what was wrong
        msg = msg[:2] + ["..."] + msg[-2:]
    return p.returncode == 0, dt, " | ".join(msg)[:600]


def errors(out_path, ref):
    """(normwise relative error, max abs error) of the .npy at out_path against ref; a
    shape mismatch or non-finite output is reported as a string."""
    try:
        k = np.load(out_path)
    except (OSError, ValueError) as e:
        return "cannot read %s: %s" % (out_path, e), None
    if k.shape != ref.shape:
        return "shape %s, ORT %s" % (list(k.shape), list(ref.shape)), None
    if not np.all(np.isfinite(k)):
        return "%d non-finite values" % int(np.sum(~np.isfinite(k))), None
    k64, r64 = k.astype(np.float64), ref.astype(np.float64)
    den = np.linalg.norm(r64)
    return float(np.linalg.norm(k64 - r64) / (den if den > 0 else 1.0)), \
        float(np.max(np.abs(k64 - r64))) if k.size else 0.0


def kiln_nodes(kiln, model):
    """Node count of a Kiln graph from `kiln show --format json`, or None."""
    p = subprocess.run([kiln, "show", model, "--format", "json"], capture_output=True,
                       text=True)
    if p.returncode != 0:
        return None
    try:
        j = json.loads(p.stdout)
    except ValueError:
        return None
    nodes = j.get("nodes") if isinstance(j, dict) else None
    return len(nodes) if isinstance(nodes, list) else None


class Row:
    def __init__(self, name):
        self.name = name
        self.onnx_nodes = self.kiln_nodes = None
        self.t = {}        # step -> seconds
        self.err = {}      # target -> (rel, maxabs) or (message, None)
        self.failures = []  # messages

    def fail(self, step, msg):
        self.failures.append("%s: %s: %s" % (self.name, step, msg))


def run_model(a, name, wd):
    row = Row(name)
    onnx_path = os.path.join(wd, name + ".onnx")
    x_path = os.path.join(wd, name + ".input.npy")
    ref = np.load(os.path.join(wd, name + ".ort.npy"))
    with open(os.path.join(wd, name + ".json")) as f:
        row.onnx_nodes = json.load(f).get("onnx_nodes")
    model = os.path.join(wd, name + ".kiln")
    ok, row.t["import"], msg = sh([a.kiln, "import", onnx_path, "-o", model])
    if not ok:
        row.fail("kiln import", msg)
        return row
    row.kiln_nodes = kiln_nodes(a.kiln, model)
    art = os.path.join(wd, name + ".kart")
    ok, row.t["compile"], msg = sh([a.kiln, "compile", model, "-o", art])
    if not ok:
        row.fail("kiln compile", msg)
    targets = (["cpu"] if ok else []) + (["ref"] if name in a.ref else [])
    for target in targets:
        out = os.path.join(wd, "%s.kiln_%s.npy" % (name, target))
        if os.path.exists(out):
            os.remove(out)
        src = art if target == "cpu" else model
        cmd = [a.kiln, "run", src, "--input", "x=" + x_path, "--output", "y=" + out]
        if target == "ref":
            cmd[3:3] = ["--target", "ref"]
        ok, row.t[target], msg = sh(cmd)
        if not ok:
            row.fail("kiln run --target " + target, msg)
            continue
        rel, mx = errors(out, ref)
        row.err[target] = (rel, mx)
        if isinstance(rel, str):
            row.fail("target " + target, rel)
        elif not rel <= a.tol:
            row.fail("target " + target, "relative error %.3e > %g (max abs %.3e)" % (
                rel, a.tol, mx))
    return row


def fmt_t(row, key):
    return "%.2f" % row.t[key] if key in row.t else "-"


def fmt_err(row, target):
    if target not in row.err:
        return "-", "-"
    rel, mx = row.err[target]
    if isinstance(rel, str):
        return "FAIL", "-"
    return "%.2e%s" % (rel, "" if rel <= 1e-4 else "!"), "%.2e" % mx


def print_table(rows):
    hdr = ("%-12s %6s %6s | %7s %8s %7s %7s | %-9s %-9s | %-9s %-9s" % (
        "model", "onnx", "kiln", "import", "compile", "run", "ref", "rel cpu", "max cpu",
        "rel ref", "max ref"))
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        rc, mc = fmt_err(r, "cpu")
        rr, mr = fmt_err(r, "ref")
        print("%-12s %6s %6s | %7s %8s %7s %7s | %-9s %-9s | %-9s %-9s" % (
            r.name, r.onnx_nodes if r.onnx_nodes is not None else "?",
            r.kiln_nodes if r.kiln_nodes is not None else "?", fmt_t(r, "import"),
            fmt_t(r, "compile"), fmt_t(r, "cpu"), fmt_t(r, "ref"), rc, mc, rr, mr))
    print("(nodes: ONNX graph / imported Kiln graph; times: wall seconds of each `kiln` "
          "process, run = the compiled artifact, ref = the reference interpreter)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--ref", default="")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    a.ref = [m for m in a.ref.split(",") if m]
    names = [m for m in a.models.split(",") if m]
    if not os.access(a.kiln, os.X_OK):
        print("test_models: FAIL: %s is not an executable (build Kiln first)" % a.kiln)
        return 1
    if np is None:
        print("test_models: SKIP: no numpy in %s" % sys.executable)
        return SKIP
    os.makedirs(a.dir, exist_ok=True)
    p = subprocess.run([sys.executable, os.path.join(HERE, "export_models.py"), a.dir,
                        "--models", ",".join(names)])
    if p.returncode == SKIP:
        print("test_models: SKIP: PyTorch/torchvision/onnxruntime are not usable from %s" %
              sys.executable)
        return SKIP
    if p.returncode != 0:
        print("test_models: FAIL: export_models.py exited %d" % p.returncode)
        return 1
    rows = [run_model(a, n, a.dir) for n in names]
    print_table(rows)
    failures = [m for r in rows for m in r.failures]
    for m in failures:
        print("FAIL " + m)
    print("test_models: %d model(s), %d failure(s), tolerance %g (normwise relative)" % (
        len(rows), len(failures), a.tol))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
