#!/usr/bin/env bash
# scripts/gpu-check.sh — the checks that need a CUDA GPU (issue 5), in one short run.
# On the lent GPU machine, after `. .gpu/env.sh .gpu/debs` (../shared/GPU.md: the Debian
# libraries Kiln links are not installed there), with the binaries built here carried in
# build-gpu/ (scripts/gpu-pack.sh; KILN_BUILD_DIR picks the folder, default build/):
#   . .gpu/env.sh .gpu/debs && KILN_BUILD_DIR=build-gpu scripts/gpu-check.sh
# 1. prints the GPU, driver and library versions and checks that the driver, NVRTC,
#    cuBLASLt and cuDNN resolve;
# 2. correctness, against the reference interpreter (outputs poisoned first, f32 within
#    1e-5, NaN never passes): test_cuda_codegen's test_on_gpu runs every op's generated
#    kernels in every dtype; test_cuda_runtime compiles CUDA artifacts (every op, the fused
#    patterns, random mixed CPU/GPU graphs, the MLP and the seed's networks, convolutions
#    through cuDNN) and runs them through libkiln_rt with host and device buffers, eagerly
#    and as replayed CUDA graphs, plus the bad input that needs a device; and the lecture
#    MLP goes through kiln compile --target cuda / run / compare / bench;
# 3. benchmarks: bench_gpu (Kiln, cuBLASLt alone, copy bandwidth) and bench/gpu_peer.py
#    (PyTorch eager, same GPU), and prints the table (bench/gpu_table.py) last.
# Exit status: nonzero when a correctness check fails; the table reports goals, it does
# not fail. The card is measured as found: no clock, power or mode changes.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=${KILN_BUILD_DIR:-$root/build}
case $build in /*) ;; *) build=$root/$build ;; esac
export LD_LIBRARY_PATH="$build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The CPU part of a mixed artifact is compiled by cc against OpenBLAS: its headers and
# link library come from the -dev package env.sh unpacked, when the machine lacks them.
deps=/tmp/kiln-deps
if [ -e "$deps/usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h" ]; then
  export CPATH="$deps/usr/include/x86_64-linux-gnu/openblas-pthread${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LIBRARY_PATH:+:$LIBRARY_PATH}"
fi
status=0
logs=${KILN_GPU_LOGS:-$build}
mkdir -p "$logs"

echo "== machine"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader 2>/dev/null ||
  echo "nvidia-smi: not found"
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
arch=sm_${cap:-90}
for lib in libcuda.so.1 libnvrtc.so.13 libcublasLt.so.13 libcudnn.so.9; do
  found=$(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l {print $NF; exit}')
  if [ -z "$found" ]; then
    IFS=: read -r -a dirs <<<"${LD_LIBRARY_PATH:-}"
    for d in "${dirs[@]}"; do [ -e "$d/$lib" ] && found="$d/$lib" && break; done
  fi
  printf '%-18s %s\n' "$lib" "${found:-NOT FOUND}"
done
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no device")' 2>/dev/null ||
  echo "torch: not importable"
echo "cc: $(command -v cc || echo none) $(cc --version 2>/dev/null | head -1)"
echo "architecture under test: $arch"

if [ ! -x "$build/tests/test_cuda_runtime" ]; then
  echo "== no build in $build: building with cmake + ninja here"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    ninja -C "$build" test_nvrtc test_cuda_codegen test_cuda_runtime bench_gpu || exit 1
fi

echo "== correctness on the GPU"
for t in test_nvrtc test_cuda_codegen test_cuda_runtime; do
  start=$(date +%s.%N)
  (cd "$logs" && KILN_SOURCE_DIR="$root" KILN_BUILD_DIR="$build" KILN_TEST_CUDA_ARCH="$arch" \
     timeout 400 "$build/tests/$t") >"$logs/gpu-$t.log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  verdict=passed
  [ $rc -eq 77 ] && verdict=skipped && status=1 # on the GPU machine nothing may be skipped
  [ $rc -ne 0 ] && [ $rc -ne 77 ] && verdict="FAILED (exit $rc)" && status=1
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  printf '%-20s %-18s %6s s   (log: %s)\n' "$t" "$verdict" "$secs" "$logs/gpu-$t.log"
  grep -E "skipped|GPU sm_|artifacts checked|device memory:|ERROR|FAILED" "$logs/gpu-$t.log" | head -40
done

echo "== the command line on the GPU: kiln compile --target cuda, kiln run, kiln compare"
cli=$(mktemp -d)
if [ -x "$build/bin/seed_mlp" ] && "$build/bin/seed_mlp" "$cli/mlp.kiln" >/dev/null &&
   "$build/bin/kiln" compile "$cli/mlp.kiln" --target cuda --cuda-arch "$arch" -o "$cli/mlp.kart" >/dev/null &&
   "$build/bin/kiln" run "$cli/mlp.kiln" --target ref --random-inputs 3 --save-inputs "$cli" \
     --output y="$cli/y_ref.npy" >/dev/null &&
   "$build/bin/kiln" run "$cli/mlp.kart" --input x="$cli/x.npy" --output y="$cli/y_gpu.npy" >/dev/null &&
   "$build/bin/kiln" compare "$cli/y_gpu.npy" "$cli/y_ref.npy" --tol 1e-5; then
  "$build/bin/kiln" show "$cli/mlp.kart" | sed -n '/^cuda:/,$p'
  "$build/bin/kiln" bench "$cli/mlp.kart" --iterations 200 2>&1 | tail -3
else
  echo "the lecture MLP through the CLI on the GPU: FAILED"; status=1
fi
rm -rf "$cli"

echo "== benchmarks"
if [ -x "$build/bin/bench_gpu" ]; then
  timeout 300 "$build/bin/bench_gpu" --arch "$arch" --json "$logs/gpu-kiln.json" >"$logs/gpu-bench.log" 2>&1 ||
    echo "bench_gpu: failed ($?)"
  grep -v '^{' "$logs/gpu-bench.log"
else
  echo "bench_gpu: not built"
fi
timeout 240 python3 "$root/bench/gpu_peer.py" >"$logs/gpu-torch.json" 2>"$logs/gpu-torch.log" ||
  { echo "gpu_peer.py: failed ($?)"; tail -5 "$logs/gpu-torch.log"; }
echo "== table"
python3 "$root/bench/gpu_table.py" "$logs/gpu-kiln.json" "$logs/gpu-torch.json" ||
  echo "gpu_table.py: failed"
exit $status
