#!/usr/bin/env python3
"""bench/side_by_side.py — the driver behind bench/run.sh: checks that Kiln, the hand-tuned
OpenBLAS program, ONNX Runtime and PyTorch compute the same outputs from the same weights
(normwise relative error <= 1e-4 against a float64 NumPy reference; for the convolutional
networks, which have no hand-tuned line, against ONNX Runtime's output), then times each at
1 and 2 threads and prints one table, the goals from issue 6 as ratios, the machine, and
Kiln's deployment figures. Every number comes from this one run. A convolutional network
Kiln cannot compile or run yet keeps its ORT and PyTorch columns, Kiln's says n/a.

usage: side_by_side.py --kiln BIN/kiln --hand BIN/bench_hand_tuned --models DIR
                       [--threads 1,2] [--quick] [--only NAME,...]
       side_by_side.py --time-ort|--time-torch MODEL_DIR THREADS ITERS WARMUP
           (internal: one framework, one thread count, in a fresh process; prints JSON)
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np

TOL = 1e-4
INPUT_SETS = 8  # rotating copies of the input, for every implementation alike
# iterations per measurement (warm-up is a tenth); --quick divides by 10
ITERS = {"mlp_b1": 3000, "mlp_b8": 1500, "mlp_b32": 600, "mlp_b256": 100, "lecture": 600, "chain50": 20000,
         "resnet18": 40, "mobilenetv2": 100}
# Rows from tests/models/export_models.py (torchvision, seeded): no hand-tuned line; Kiln
# imports the ONNX file; PyTorch eager runs the torchvision module from the saved state.
CONVNETS = ("resnet18", "mobilenetv2")
ROWS = [("mlp_b1", "MLP 784-512-512-10, batch 1"), ("mlp_b8", "MLP 784-512-512-10, batch 8"),
        ("mlp_b32", "MLP 784-512-512-10, batch 32"),
        ("mlp_b256", "MLP 784-512-512-10, batch 256"),
        ("lecture", "lecture 2-layer net, N=64 1000-100-10"),
        ("chain50", "chain of 50 elementwise ops, 1x64"),
        ("resnet18", "ResNet-18, batch 1, 3x224x224"),
        ("mobilenetv2", "MobileNetV2, batch 1, 3x224x224")]


def rel_error(a, ref):
    a = np.asarray(a, np.float64)
    ref = np.asarray(ref, np.float64)
    if a.shape != ref.shape:
        return float("inf")
    den = np.max(np.abs(ref))
    return float(np.max(np.abs(a - ref)) / (den if den > 0 else 1.0))


def stats(samples_ns):
    s = np.sort(np.asarray(samples_ns, np.float64))
    n = len(s)
    return {"median_ns": float(s[n // 2]), "p10_ns": float(s[n // 10]),
            "p90_ns": float(s[n * 9 // 10])}


# ---- the frameworks (each run in its own process: --time-ort / --time-torch) ----------

def ort_session(d, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(os.path.join(d, "model.onnx"), so,
                                providers=["CPUExecutionProvider"])


def torch_model(d):
    import torch
    spec = json.load(open(os.path.join(d, "spec.json")))
    if spec["kind"] == "torchvision":
        import torchvision
        m = getattr(torchvision.models, spec["arch"])(weights=None)
        m.load_state_dict(torch.load(os.path.join(d, "model.pt")))
        return m.eval()
    if spec["kind"] == "chain":
        consts = torch.from_numpy(np.load(os.path.join(d, "consts.npy")))
        ops = []
        for k, op in enumerate(spec["ops"]):
            c = consts[k].reshape(1, 64).clone()
            ops.append({"mul": lambda v, c=c: torch.mul(v, c),
                        "add": lambda v, c=c: torch.add(v, c),
                        "sub": lambda v, c=c: torch.sub(v, c),
                        "minimum": lambda v, c=c: torch.minimum(v, c),
                        "relu": torch.relu}[op])

        def chain(v):
            for f in ops:
                v = f(v)
            return v
        return chain
    layers = []
    for i, (fin, fout, has_bias, do_relu) in enumerate(spec["layers"], 1):
        lin = torch.nn.Linear(fin, fout, bias=has_bias)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.load(os.path.join(d, "w%d.npy" % i)).T.copy()))
            if has_bias:
                lin.bias.copy_(torch.from_numpy(np.load(os.path.join(d, "b%d.npy" % i))))
        layers.append(lin)
        if do_relu:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


def time_framework(which, d, threads, iters, warmup):
    x = np.load(os.path.join(d, "x.npy"))
    xs = [x.copy() for _ in range(INPUT_SETS)]
    if which == "ort":
        import onnxruntime as ort
        sess = ort_session(d, threads)
        out = sess.run(None, {"x": x})[0]
        run = lambda v: sess.run(None, {"x": v})
        version = "onnxruntime " + ort.__version__
    else:
        import torch
        torch.set_num_threads(threads)
        m = torch_model(d)
        txs = [torch.from_numpy(v) for v in xs]
        with torch.no_grad():
            out = m(torch.from_numpy(x)).numpy()
        xs = txs
        version = "torch %s (%s)" % (torch.__version__, torch.__config__.parallel_info()
                                     .splitlines()[0] if hasattr(torch, "__config__") else "")

        def run(v):
            with torch.no_grad():
                return m(v)
    for i in range(warmup):
        run(xs[i % INPUT_SETS])
    t = np.empty(iters)
    clock = time.perf_counter_ns
    for i in range(iters):
        v = xs[i % INPUT_SETS]
        t0 = clock()
        run(v)
        t[i] = clock() - t0
    r = stats(t)
    r["output"] = out.astype(np.float64).ravel().tolist()
    r["version"] = version
    return r


# ---- the driver ---------------------------------------------------------------------

def sh(cmd, env=None, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), p.returncode,
                                                   (p.stderr or p.stdout).strip()[-2000:]))
    return p.stdout


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON in: " + text[-500:])


def run_framework(which, d, threads, iters, warmup):
    try:
        out = sh([sys.executable, os.path.abspath(__file__), "--time-" + which, d,
                  str(threads), str(iters), str(warmup)])
        return last_json(out)
    except Exception as e:  # the column says n/a with the reason
        return {"error": str(e).strip().splitlines()[-1][:160]}


def kiln_json(kiln, art, threads, iters, warmup):
    out = sh([kiln, "bench", art, "--format", "json", "--threads", str(threads),
              "--iterations", str(iters), "--warmup", str(warmup), "--inputs", str(INPUT_SETS)])
    j = json.loads(" ".join(out.split("\n")))
    lat = j["latency_ns"]
    return {"median_ns": lat["median"], "p10_ns": lat["p10"], "p90_ns": lat["p90"],
            "gflops": j.get("gflops_per_s"), "flops": j.get("flops"),
            "arena": j.get("arena_peak_bytes"), "inter": j.get("intermediates_bytes")}


def check_outputs(a, name, d, tmp):
    """Runs all four once on x.npy; returns {impl: rel error} (a message on failure, None
    where the row has no such implementation)."""
    ref = np.load(os.path.join(d, "ref.npy"))
    errs = {}
    kout = os.path.join(tmp, name + ".kiln.npy")
    compile_err = os.path.join(d, "compile_error.txt")  # run.sh: why kiln compile failed
    try:
        if os.path.exists(compile_err):
            raise RuntimeError(open(compile_err).read().strip().splitlines()[-1])
        sh([a.kiln, "run", os.path.join(d, "model.kart"), "--input",
            "x=" + os.path.join(d, "x.npy"), "--output", "y=" + kout])
        errs["kiln"] = rel_error(np.load(kout), ref)
    except Exception as e:
        errs["kiln"] = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
    hout = os.path.join(tmp, name + ".hand.npy")
    errs["hand"] = None  # no hand-tuned line for the convolutional networks
    if name not in CONVNETS:
        try:
            sh([a.hand, d, "--iterations", "10", "--warmup", "0", "--out", hout])
            errs["hand"] = rel_error(np.load(hout), ref)
        except Exception as e:
            errs["hand"] = str(e)
    for fw in ("ort", "torch"):
        r = run_framework(fw, d, 1, 10, 0)
        errs[fw] = r["error"] if "error" in r else rel_error(
            np.array(r["output"]).reshape(ref.shape), ref)
    return errs


def fmt_us(r, ms=False):
    if r is None or "error" in r:
        return "n/a"
    if ms:  # the convolutional networks: milliseconds, marked
        return "%.1f ms (%.1f-%.1f)" % (r["median_ns"] / 1e6, r["p10_ns"] / 1e6,
                                        r["p90_ns"] / 1e6)
    return "%.2f (%.2f-%.2f)" % (r["median_ns"] / 1e3, r["p10_ns"] / 1e3, r["p90_ns"] / 1e3)


def ratio(k, o):
    if not k or not o or "error" in k or "error" in o:
        return "n/a"
    return "%.3g" % (k["median_ns"] / o["median_ns"])


def machine(a):
    lines = []
    lscpu = sh(["lscpu"], check=False)
    get = lambda key: (re.search(r"^%s:\s*(.*)$" % re.escape(key), lscpu, re.M) or
                       [None, "?"])[1]
    flags = get("Flags").split()
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16") if f in flags]
    lines.append("cpu       %s, %s CPU(s), %s core(s)/socket, L2 %s, L3 %s, SIMD %s" % (
        get("Model name"), get("CPU(s)"), get("Core(s) per socket"), get("L2 cache"),
        get("L3 cache"), "+".join(simd)))
    lines.append("kernel    %s; load average at start %s" % (
        platform.release(), " ".join("%.2f" % v for v in os.getloadavg())))
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    own = sh([a.hand, "--corename", "--no-coretype"], env=env, check=False).strip()
    best = sh([a.hand, "--corename"], env=env, check=False).strip()
    lines.append("openblas  %s; core '%s' by itself, '%s' with OPENBLAS_CORETYPE chosen by "
                 "cpuid (the hand-tuned line)" % (dpkg_version("libopenblas0-pthread"), own,
                                                    best))
    vers = []
    for mod in ("numpy", "onnxruntime", "onnx", "torch"):
        try:
            vers.append("%s %s" % (mod, __import__(mod).__version__))
        except Exception as e:
            vers.append("%s n/a (%s)" % (mod, str(e).splitlines()[0][:80]))
    cc = sh(["cc", "--version"], check=False).splitlines()
    vers.append(cc[0] if cc else "cc ?")
    lines.append("versions  " + ", ".join(vers) + ", python " + platform.python_version())
    peaks = {}
    for t in (1, 2):
        try:
            peaks[t] = last_json(sh([a.hand, "--peak", str(t)]))["peak_gflops"]
        except Exception:
            peaks[t] = None
    lines.append("FP32 FMA peak (measured now, bench_hand_tuned --peak): %s GFLOP/s on 1 "
                 "thread, %s on 2" % (peaks[1], peaks[2]))
    return lines, peaks


def dpkg_version(pkg):
    v = sh(["dpkg-query", "-W", "-f=${Version}", pkg], check=False).strip()
    return "%s %s" % (pkg, v or "?")


def main_driver(a):
    threads = [int(t) for t in a.threads.split(",")]
    rows = [r for r in ROWS if not a.only or r[0] in a.only.split(",")]
    missing = [r[0] for r in rows if not os.path.exists(os.path.join(a.models, r[0],
                                                                      "spec.json"))]
    if missing:  # run.sh could not export them (no torchvision)
        print("side_by_side: no model files for %s; rows left out" % ", ".join(missing),
              file=sys.stderr)
        rows = [r for r in rows if r[0] not in missing]
    tmp = os.path.join(a.models, "out")
    os.makedirs(tmp, exist_ok=True)
    mlines, peaks = machine(a)
    print("== machine")
    print("\n".join(mlines))
    print("\n== correctness (normwise relative error vs float64 NumPy; %s: vs ONNX Runtime; "
          "limit %g)" % ("/".join(CONVNETS), TOL))
    ok = True
    no_kiln = {}  # convolutional rows Kiln cannot run yet: name -> why
    for name, _ in rows:
        errs = check_outputs(a, name, os.path.join(a.models, name), tmp)
        cells = []
        for impl in ("kiln", "hand", "ort", "torch"):
            e = errs[impl]
            if e is None:
                cells.append("%s -" % impl)
            elif isinstance(e, str):
                cells.append("%s n/a (%s)" % (impl, e[:160]))
                if impl == "kiln" and name in CONVNETS:
                    no_kiln[name] = e
                elif impl in ("kiln", "hand"):
                    ok = False
            else:
                cells.append("%s %.2e%s" % (impl, e, "" if e <= TOL else " FAIL"))
                ok = ok and e <= TOL
        print("%-9s %s" % (name, ", ".join(cells)))
    if not ok:
        print("side_by_side: outputs disagree; not timing", file=sys.stderr)
        return 1
    print("\n== latency, us (ms where marked): median (p10-p90); ratios are Kiln's median / "
          "the other's (< 1: Kiln faster)")
    hdr = "%-40s %2s | %-24s %-24s %-24s %-24s | %8s %8s %8s" % (
        "model", "T", "Kiln", "hand-tuned (OpenBLAS)", "ONNX Runtime", "PyTorch eager",
        "K/ORT", "K/torch", "K/hand")
    print(hdr)
    print("-" * len(hdr))
    res = {}
    for name, label in rows:
        d = os.path.join(a.models, name)
        n = max(20, ITERS[name] // (10 if a.quick else 1))
        w = max(2, n // 10)
        for t in threads:
            if name in no_kiln:
                k = {"error": no_kiln[name]}
            else:
                k = kiln_json(a.kiln, os.path.join(d, "model.kart"), t, n, w)
            try:
                if name in CONVNETS:
                    raise RuntimeError("no hand-tuned line")
                h = last_json(sh([a.hand, d, "--threads", str(t), "--iterations", str(n),
                                  "--warmup", str(w), "--inputs", str(INPUT_SETS)]))
            except Exception as e:
                h = {"error": str(e)}
            o = run_framework("ort", d, t, n, w)
            p = run_framework("torch", d, t, n, w)
            res[(name, t)] = {"kiln": k, "hand": h, "ort": o, "torch": p}
            print("%-40s %2d | %-24s %-24s %-24s %-24s | %8s %8s %8s" % (
                label, t, fmt_us(k, name in CONVNETS), fmt_us(h), fmt_us(o, name in CONVNETS),
                fmt_us(p, name in CONVNETS), ratio(k, o),
                ratio(k, p), ratio(k, h)))
            sys.stdout.flush()
    for name, why in no_kiln.items():
        print("note: Kiln %s n/a: %s" % (name, why[:300]))
    for (name, t), r in res.items():
        for impl in ("ort", "torch"):
            if "error" in r[impl]:
                print("note: %s %s T=%d n/a: %s" % (impl, name, t, r[impl]["error"]))
    goals(res, peaks, threads)
    deployment(a)
    return 0


def goals(res, peaks, threads):
    t = 2 if 2 in threads else threads[-1]
    print("\n== goals (issue 6), T=%d" % t)

    def med(name, impl):
        r = res.get((name, t), {}).get(impl)
        return None if not r or "error" in r else r["median_ns"]

    def line(text, ok, detail):
        print("%-8s %s: %s" % ("n/a" if ok is None else "MET" if ok else "MISSED", text, detail))

    k, o, h = med("mlp_b1", "kiln"), med("mlp_b1", "ort"), med("mlp_b1", "hand")
    line("MLP batch 1 <= 0.5x ORT", None if not (k and o) else k <= 0.5 * o,
         "Kiln/ORT = %.3g" % (k / o) if k and o else "")
    line("MLP batch 1 <= hand-tuned", None if not (k and h) else k <= h,
         "Kiln/hand = %.3g" % (k / h) if k and h else "")
    k, o = med("mlp_b256", "kiln"), med("mlp_b256", "ort")
    line("MLP batch 256 faster than ORT", None if not (k and o) else k < o,
         "Kiln/ORT = %.3g" % (k / o) if k and o else "")
    kr = res.get(("mlp_b256", t), {}).get("kiln")
    # A busy second core makes the T-thread peak read low: judge against the larger of it
    # and T x the one-thread peak (the stricter goal).
    peak = max([v for v in (peaks.get(t), (peaks.get(1) or 0) * t) if v] or [0])
    if kr and kr.get("flops") and peak:
        g = kr["flops"] / kr["median_ns"]
        line(">= 60%% of FP32 peak at batch 256 (peak %.1f GFLOP/s, T=%d)" % (peak, t),
             g >= 0.6 * peak, "%.1f GFLOP/s = %.0f%% of peak" % (g, 100 * g / peak))
    k, o = med("chain50", "kiln"), med("chain50", "ort")
    line("50-op chain >= 100x faster than ORT", None if not (k and o) else o >= 100 * k,
         "ORT/Kiln = %.1fx" % (o / k) if k and o else "")
    k, o = med("resnet18", "kiln"), med("resnet18", "ort")
    line("ResNet-18 batch 1 within 1.5x of ORT", None if not (k and o) else k <= 1.5 * o,
         "Kiln/ORT = %.3g (%.1f vs %.1f ms)" % (k / o, k / 1e6, o / 1e6) if k and o else
         "Kiln n/a" if o else "")


def deployment(a):
    print("\n== deployment (kiln bench --cold, MLP batch 1)")
    art = os.path.join(a.models, "mlp_b1", "model.kart")
    try:
        out = sh([a.kiln, "bench", art, "--cold", "--iterations", "20", "--warmup", "2"])
        for line in out.splitlines():
            if line.startswith(("cold", "library", "memory")):
                print(line)
    except Exception as e:
        print("n/a: " + str(e)[:300])


def main():
    if len(sys.argv) >= 2 and sys.argv[1] in ("--time-ort", "--time-torch"):
        which = sys.argv[1][len("--time-"):]
        d, t, n, w = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(time_framework(which, d, t, n, w)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--hand", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    return main_driver(ap.parse_args())


if __name__ == "__main__":
    sys.exit(main())
