#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] — builds the libFuzzer targets of tests/fuzz with clang,
# ASan and UBSan into build-fuzz/, and runs each for SECONDS (default 60) over a copy of
# its committed corpus (tests/fuzz/corpus/<target>/ is never written). Prints a summary
# line per target; exits non-zero if any target crashed, naming the crash input.
#   scripts/fuzz.sh --regen   rewrites tests/fuzz/corpus with make_corpus (reproducers
#                             named repro-* are kept).
set -uo pipefail
cd "$(dirname "$0")/.."

targets="graph_load text_parse artifact npy codegen_names onnx"
declare -A max_len=([graph_load]=65536 [text_parse]=65536 [artifact]=65536 [npy]=8192 [codegen_names]=8192 [onnx]=65536)

if [ "${1:-}" = "--regen" ]; then
  scripts/build.sh build >/dev/null || exit 1
  tmp=$(mktemp -d)
  build/tests/fuzz/make_corpus "$tmp/corpus" || { rm -rf "$tmp"; exit 1; }
  for t in $targets; do
    [ -d "$tmp/corpus/$t" ] || continue # seeds kept by hand (text_parse: lit graphs; onnx: models)
    find tests/fuzz/corpus/$t -maxdepth 1 -type f ! -name 'repro-*' -delete 2>/dev/null
    mkdir -p tests/fuzz/corpus/$t && cp "$tmp/corpus/$t"/* tests/fuzz/corpus/$t/
  done
  rm -rf "$tmp"
  du -sh tests/fuzz/corpus
  exit 0
fi

secs="${1:-60}"
# A fixed seed makes a run repeatable (CI's smoke run uses it); KILN_FUZZ_SEED=0 lets
# libFuzzer pick one, for longer campaigns.
seed="${KILN_FUZZ_SEED:-1}"
command -v clang >/dev/null || { echo "fuzz.sh: clang is not installed" >&2; exit 2; }
CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DKILN_SANITIZE=ON -DKILN_FUZZ=ON \
  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null || exit 1
cmake --build build-fuzz -j "$(nproc)" --target $(printf 'fuzz_%s ' $targets) || exit 1

work=build-fuzz/fuzz-work
rm -rf "$work"
mkdir -p "$work"
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0
for t in $targets; do
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp tests/fuzz/corpus/$t/* "$work/$t/corpus/"
  log="$work/$t/log"
  build-fuzz/tests/fuzz/fuzz_$t "$work/$t/corpus" -max_total_time="$secs" -max_len="${max_len[$t]}" \
    -seed="$seed" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" \
    >"$log" 2>&1
  rc=$?
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo 0)
  eps=$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo 0)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
  crash=$(ls "$work/$t/artifacts/" 2>/dev/null | head -1)
  if [ "$rc" != 0 ] || [ -n "$crash" ]; then
    failed=1
    echo "fuzz_$t: CRASH (exit $rc) after $execs runs; input: $work/$t/artifacts/$crash; log: $log"
    grep -E 'ERROR|property failed|SUMMARY' "$log" | head -5 | sed 's/^/    /'
  else
    echo "fuzz_$t: ok, $execs runs in ${secs}s ($eps/s), coverage $cov"
  fi
done
[ "$failed" = 0 ] && echo "fuzz.sh: no crashes" || echo "fuzz.sh: crashes found (copy each input to tests/fuzz/corpus/<target>/repro-<what> with its fix)"
exit "$failed"
