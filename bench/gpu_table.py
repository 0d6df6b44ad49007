#!/usr/bin/env python3
"""bench/gpu_table.py KILN.json TORCH.json — the table scripts/gpu-check.sh prints last:
Kiln (bench_gpu: CUDA target through libkiln_rt, cuBLASLt alone, copy bandwidth) beside
PyTorch eager on the same GPU (gpu_peer.py), in microseconds (medians), and issue 5's
goals as ratios from these numbers. Exit status 0 even when a goal is missed: the table
reports, the correctness checks decide."""
import json
import sys


def med(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def fmt(v, unit="us"):
    return "n/a" if v is None else ("%.1f %s" % (v, unit))


def main():
    kiln = json.load(open(sys.argv[1]))
    torch = json.load(open(sys.argv[2]))
    kr, tr = kiln.get("rows", {}), torch.get("rows", {})
    print("GPU: %s; %s; PyTorch %s (CUDA %s)" % (kiln.get("device"), kiln.get("driver"),
                                                 torch.get("torch"), torch.get("cuda")))
    print("%-22s %14s %14s %14s %14s" % ("case (median)", "Kiln", "Kiln host io", "PyTorch eager",
                                         "cuBLASLt alone"))
    for name, label in (("mlp_b1", "MLP 784-512-512-10 b1"), ("mlp_b256", "MLP b256"),
                        ("mlp_b4096", "MLP b4096")):
        print("%-22s %14s %14s %14s %14s" % (
            label, fmt(med(kr, name, "kiln", "median_us")), fmt(med(kr, name, "kiln_host_io", "median_us")),
            fmt(med(tr, name, "wall", "median_us")), fmt(med(kr, name, "cublaslt", "median_us"))))
    print("%-22s %14s %14s %14s %14s" % ("50-op chain, 1 GiB", fmt(med(kr, "chain50", "kiln", "median_us")), "",
                                         fmt(med(tr, "chain50", "median_us")), ""))
    kg, cg, tg = med(kr, "chain50", "kiln_gbps"), med(kr, "chain50", "copy_gbps"), med(tr, "copy", "gbps")
    print("%-22s %14s %14s %14s" % ("bandwidth (GB/s)", fmt(kg, ""), "copy " + fmt(cg, ""),
                                     "torch copy " + fmt(tg, "")))
    print("goals (issue 5):")

    def goal(text, value, ok):
        verdict = "n/a" if value is None else ("met" if ok else "MISSED")
        print("  %-58s %8s  %s" % (text, "n/a" if value is None else "%.3f" % value, verdict))

    k4, l4 = med(kr, "mlp_b4096", "kiln", "median_us"), med(kr, "mlp_b4096", "cublaslt", "median_us")
    r = k4 / l4 if k4 and l4 else None
    goal("MLP b4096: Kiln / cuBLASLt alone <= 1.1", r, r is not None and r <= 1.1)
    k1, t1 = med(kr, "mlp_b1", "kiln", "median_us"), med(tr, "mlp_b1", "wall", "median_us")
    r = k1 / t1 if k1 and t1 else None
    goal("MLP b1 latency: Kiln / PyTorch eager <= 0.5 (device io)", r, r is not None and r <= 0.5)
    kh = med(kr, "mlp_b1", "kiln_host_io", "median_us")
    r = kh / t1 if kh and t1 else None
    goal("  (the same with host buffers, for reference)", r, r is not None and r <= 0.5)
    r = kg / cg if kg and cg else None
    goal("50-op chain: Kiln bandwidth / copy bandwidth >= 0.8", r, r is not None and r >= 0.8)
    return 0


if __name__ == "__main__":
    sys.exit(main())
