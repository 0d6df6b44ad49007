#!/usr/bin/env bash
# scripts/gpu-pack.sh [BUILD_DIR] [OUT_DIR] — copies what scripts/gpu-check.sh runs from a
# build made here (build/, RelWithDebInfo) into a small folder (build-gpu/, ignored by git)
# that fits the lent GPU machine's carry limit (64 MiB; a whole build/ is ~600 MiB):
# libkiln_rt.so, the kiln CLI, the CUDA tests and the GPU benchmark. gpu-check.sh puts its
# lib/ on LD_LIBRARY_PATH, since the binaries' RUNPATH names this machine's build folder.
#   scripts/build.sh && scripts/gpu-pack.sh && run with carry ["build-gpu", ".gpu"]:
#   . .gpu/env.sh .gpu/debs && KILN_BUILD_DIR=build-gpu scripts/gpu-check.sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
out=${2:-$root/build-gpu}
rm -rf "$out"
mkdir -p "$out/lib" "$out/bin" "$out/tests"
cp "$build/lib/libkiln_rt.so" "$out/lib/"
for b in kiln bench_gpu seed_mlp; do
  [ -x "$build/bin/$b" ] && cp "$build/bin/$b" "$out/bin/"
done
for t in test_nvrtc test_cuda_codegen test_cuda_runtime; do
  [ -x "$build/tests/$t" ] && cp "$build/tests/$t" "$out/tests/"
done
du -sh "$out"
