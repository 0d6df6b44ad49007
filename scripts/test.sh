#!/usr/bin/env bash
# scripts/test.sh — the whole test suite: builds Kiln (installing what is missing), runs
# every test through ctest, then the unit tests again under ASan + UBSan
# (KILN_SANITIZE=0 skips that pass; it leaves out the tests labelled "large", ResNet-18 and
# MobileNetV2), then a 10 s libFuzzer smoke run of each fuzz target
# when clang can link libFuzzer (KILN_FUZZ_SMOKE=0 skips it). Ends with one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."

# Test-only tools: graphviz checks every DOT dump with `dot -Tsvg`; clang builds the
# fuzz targets for the smoke run; libonnx-testdata holds the ONNX node conformance cases
# (tests/onnx); python3-onnx writes the hand-made ONNX files of the CLI test.
export KILN_EXTRA_PKGS="graphviz clang libonnx-testdata python3-onnx"
scripts/build.sh build || { echo "0 passed, 1 failed: build"; exit 1; }
# test_models (real networks against ONNX Runtime): Debian's python3-torch and
# python3-torchvision and a venv with pip's onnxruntime. Never fails here: without them
# those tests skip, saying why.
KILN_MODELS_PYTHON="$(tests/models/setup.sh "$PWD/build/.venv-models")"
export KILN_MODELS_PYTHON
ctest --test-dir build --output-on-failure -j "$(nproc)" 2>&1 | tee build/ctest.log
main_rc=${PIPESTATUS[0]}

san_rc=0
if [ "${KILN_SANITIZE:-1}" != 0 ]; then
  echo "== the same tests under AddressSanitizer + UndefinedBehaviorSanitizer =="
  if scripts/build.sh build-asan -DKILN_SANITIZE=ON; then
    KILN_TEST_SLOW=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --test-dir build-asan --output-on-failure -j "$(nproc)" -LE large 2>&1 | tee build-asan/ctest.log
    san_rc=${PIPESTATUS[0]}
  else
    san_rc=1
  fi
fi

# A short libFuzzer smoke run of every fuzz target (KILN_FUZZ_SMOKE=0 skips it).
fuzz_rc=0
if [ "${KILN_FUZZ_SMOKE:-1}" = 0 ]; then
  echo "== fuzz smoke: skipped (KILN_FUZZ_SMOKE=0) =="
elif ! command -v clang >/dev/null ||
     ! printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' |
       clang -x c -fsanitize=fuzzer,address,undefined -o /dev/null - 2>/dev/null; then
  echo "== fuzz smoke: skipped (clang with libFuzzer is not usable here) =="
else
  echo "== fuzz smoke: every fuzz target for 10 s (scripts/fuzz.sh) =="
  scripts/fuzz.sh 10 || fuzz_rc=1
fi

count() { grep -Eo "[0-9]+ tests failed out of [0-9]+" "$1" | tail -1; }
total=0; failed=0
for log in build/ctest.log build-asan/ctest.log; do
  [ -f "$log" ] || continue
  line=$(count "$log") || true
  [ -n "$line" ] || continue
  f=$(echo "$line" | awk '{print $1}'); t=$(echo "$line" | awk '{print $NF}')
  total=$((total + t)); failed=$((failed + f))
done
[ "$main_rc" = 0 ] && [ "$san_rc" = 0 ] || [ "$failed" -gt 0 ] || failed=1
[ "$fuzz_rc" = 0 ] || { failed=$((failed + 1)); total=$((total + 1)); }
echo "$((total - failed)) passed, $failed failed"
[ "$main_rc" = 0 ] && [ "$san_rc" = 0 ] && [ "$fuzz_rc" = 0 ]
