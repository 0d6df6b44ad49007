#!/usr/bin/env bash
# scripts/gpu-check.sh — the checks that need a CUDA GPU (issue 5), in one short run.
# On the lent GPU machine, after `. .gpu/env.sh .gpu/debs` (../shared/GPU.md: the Debian
# libraries Kiln links are not installed there), with the build made here carried as
# build/ (KILN_BUILD_DIR to use another):
#   . .gpu/env.sh .gpu/debs && scripts/gpu-check.sh
# What it does today: prints the GPU, driver and library versions; checks that the
# driver, NVRTC, cuBLASLt and cuDNN resolve; runs the CUDA tests, whose test_on_gpu
# compiles every op's generated kernels for this GPU's architecture and runs them on it
# against the reference interpreter (random inputs, outputs and arena poisoned first, f32
# within 1e-5, NaN never passes). Not yet: the runtime's CUDA executor (cuBLASLt GEMMs,
# whole networks, CUDA graphs) and the benchmark table against PyTorch CUDA: they come
# with the executor (docs/CUDA.md), and this script says so at the end.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=${KILN_BUILD_DIR:-$root/build}
status=0

echo "== machine"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null ||
  echo "nvidia-smi: not found"
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

if [ ! -x "$build/tests/test_cuda_codegen" ]; then
  echo "== no build in $build: building with cmake + ninja here"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    ninja -C "$build" test_nvrtc test_cuda_codegen test_cuda_driver || exit 1
fi

echo "== CUDA tests (test_on_gpu runs the generated kernels on this GPU)"
for t in test_cuda_driver test_nvrtc test_cuda_codegen; do
  start=$(date +%s.%N)
  (cd "$build" && KILN_SOURCE_DIR="$root" KILN_BUILD_DIR="$build" "$build/tests/$t") >"$build/gpu-$t.log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  verdict=passed
  [ $rc -eq 77 ] && verdict=skipped
  [ $rc -ne 0 ] && [ $rc -ne 77 ] && verdict="FAILED (exit $rc)" && status=1
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  printf '%-20s %-18s %6s s   (log: %s)\n' "$t" "$verdict" "$secs" "$build/gpu-$t.log"
  grep -E "this machine:|GPU sm_|no GPU run|ERROR|FAILED" "$build/gpu-$t.log" | head -20
done

echo "== not checked yet (no CUDA executor in libkiln_rt): cuBLASLt GEMMs, the MLP and the"
echo "   seed's networks end to end, CUDA graph replay, and the timings against PyTorch CUDA."
exit $status
