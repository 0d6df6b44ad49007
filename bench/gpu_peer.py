#!/usr/bin/env python3
"""bench/gpu_peer.py — the PyTorch CUDA side of scripts/gpu-check.sh's table (issue 5).

Times, on the GPU this runs on, with CUDA events after warm-up (median of many runs;
inputs rotated through several copies so no run finds its input in L2 from the last):
  copy        device-to-device copy of a 1 GiB tensor (the bandwidth the chain goal is
              measured against: bytes read plus written per second)
  mlp_bN      MLP 784-512-512-10 (ReLU after the first two layers), PyTorch eager, N = 1,
              256, 4096; weights from bench/models (gen_models.py) when given, else seeded
  chain50     the 50-op elementwise chain of bench/bench_graphs.c (10 x {add, mul, relu,
              sub, maximum}, scalar constants) on a [ROWS, 64] f32 tensor, eager
Prints one JSON object: {"torch": version, "gpu": name, "rows": {name: {median_us, ...}}}.

usage: gpu_peer.py [--chain-rows R] [--models DIR] [--only a,b]
"""
import argparse
import json
import os
import sys

import numpy as np


def timed(torch, fn, inputs, warmup, iters):
    """Median/p10/p90 in microseconds of fn(inputs[i % len]) measured with CUDA events."""
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        starts[i].record()
        fn(inputs[i % len(inputs)])
        ends[i].record()
    torch.cuda.synchronize()
    t = np.sort([s.elapsed_time(e) * 1000.0 for s, e in zip(starts, ends)])
    n = len(t)
    return {"median_us": float(t[n // 2]), "p10_us": float(t[n // 10]),
            "p90_us": float(t[n * 9 // 10]), "runs": n}


def wall_timed(torch, fn, inputs, warmup, iters):
    """Latency as the caller sees it: host time from the call to the result synchronized."""
    import time
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    torch.cuda.synchronize()
    t = []
    for i in range(iters):
        a = time.perf_counter_ns()
        fn(inputs[i % len(inputs)])
        torch.cuda.synchronize()
        t.append((time.perf_counter_ns() - a) / 1000.0)
    t = np.sort(t)
    n = len(t)
    return {"median_us": float(t[n // 2]), "p10_us": float(t[n // 10]),
            "p90_us": float(t[n * 9 // 10]), "runs": n}


def mlp_weights(models):
    d = os.path.join(models, "mlp_b1") if models else None
    if d and os.path.exists(os.path.join(d, "w1.npy")):
        return [(np.load(os.path.join(d, "w%d.npy" % i)), np.load(os.path.join(d, "b%d.npy" % i)))
                for i in (1, 2, 3)]
    rng = np.random.default_rng(5)
    dims = [784, 512, 512, 10]
    return [((rng.standard_normal((dims[i], dims[i + 1])) / np.sqrt(dims[i])).astype(np.float32),
             (rng.standard_normal(dims[i + 1]) * 0.1).astype(np.float32)) for i in range(3)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chain-rows", type=int, default=1 << 22)  # 4M x 64 f32 = 1 GiB
    ap.add_argument("--models", default="")
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    import torch
    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch sees no CUDA device"}))
        return 1
    dev = torch.device("cuda:0")
    only = set(a.only.split(",")) if a.only else None
    rows = {}
    want = lambda n: only is None or n in only

    with torch.no_grad():
        if want("copy"):
            src = [torch.empty(1 << 28, dtype=torch.float32, device=dev).fill_(1.0) for _ in range(2)]
            dst = torch.empty_like(src[0])
            r = timed(torch, lambda s: dst.copy_(s), src, 5, 40)
            r["gbps"] = 2 * src[0].numel() * 4 / (r["median_us"] * 1e-6) / 1e9
            rows["copy"] = r
            del src, dst

        ws = [(torch.from_numpy(w.T.copy()).to(dev), torch.from_numpy(b).to(dev))
              for w, b in mlp_weights(a.models)]

        def mlp(x):
            h = torch.relu(torch.nn.functional.linear(x, *ws[0]))
            h = torch.relu(torch.nn.functional.linear(h, *ws[1]))
            return torch.nn.functional.linear(h, *ws[2])
        for batch, iters in ((1, 2000), (256, 1000), (4096, 300)):
            name = "mlp_b%d" % batch
            if not want(name):
                continue
            g = torch.Generator(device="cpu").manual_seed(batch)
            xs = [torch.randn(batch, 784, generator=g).to(dev) for _ in range(8)]
            r = timed(torch, mlp, xs, iters // 10, iters)
            # batch 1: what a caller waits for, host to synchronized result
            r["wall"] = wall_timed(torch, mlp, xs, iters // 10, iters)
            rows[name] = r

        if want("chain50"):
            # bench_graphs.c's chain: 10 x {add, mul, relu, sub, maximum} with scalar
            # constants, on a [ROWS, 64] f32 tensor; eager runs one kernel per op
            rng = np.random.default_rng(50)
            ops = ["add", "mul", "relu", "sub", "maximum"] * 10
            fns = []
            for op in ops:
                c = float(rng.uniform(-1, 1))
                fns.append({"add": lambda v, c=c: v + c, "mul": lambda v, c=c: v * c,
                            "sub": lambda v, c=c: v - c, "relu": torch.relu,
                            "maximum": lambda v, c=c: torch.clamp_min(v, c)}[op])

            def chain(v):
                for f in fns:
                    v = f(v)
                return v
            xs = [torch.randn(a.chain_rows, 64, device=dev) for _ in range(2)]
            r = timed(torch, chain, xs, 3, 20)
            r["gbps_fused_equiv"] = 2 * a.chain_rows * 64 * 4 / (r["median_us"] * 1e-6) / 1e9
            rows["chain50"] = r

    print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda,
                      "gpu": torch.cuda.get_device_name(0), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
