#!/usr/bin/env bash
# conformance_selftest.sh — proves the conformance runner can fail: on copies of a real
# node test it must report a wrong value (with the worst element), a wrong shape, a known
# gap that passes, a timeout, and a missing data directory (exit 77); pass the copy
# untouched; and leave nothing in its TMPDIR. Usage: conformance_selftest.sh path/to/onnx_conformance [DATA_DIR]
set -u
runner=$1
data=${2:-/usr/share/libonnx-testdata/data/node}
if [ ! -d "$data/test_add" ]; then
  echo "skipped: libonnx-testdata not installed (no $data/test_add)"
  exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-conformance-selftest-XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
fails=0

# expect NAME WANT_RC PATTERN -- ARGS...: runs the runner, checks its status and output.
expect() {
  local name=$1 want=$2 pattern=$3
  shift 4
  local out rc
  out=$(TMPDIR="$work/tmp" "$runner" "$@" 2>&1)
  rc=$?
  if [ -n "$(ls -A "$work/tmp")" ]; then
    echo "FAIL $name: the runner left files in its temp directory: $(ls -A "$work/tmp")"
    fails=$((fails + 1))
  elif [ "$rc" != "$want" ] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name: exit $rc (want $want), output lacks /$pattern/:"
    sed 's/^/    /' <<<"$out" | tail -25
    fails=$((fails + 1))
  else
    echo "ok   $name"
  fi
}

mkdir -p "$work/good" "$work/value" "$work/shape" "$work/tmp"
cp -r "$data/test_add" "$work/good/"
cp -r "$data/test_add" "$work/value/"
cp -r "$data/test_add" "$work/shape/"   # with another test's expected output, [3,1,2]
cp "$data/test_reduce_sum_keepdims_example/test_data_set_0/output_0.pb" \
   "$work/shape/test_add/test_data_set_0/output_0.pb"
# Flip the sign bit of the last float of the expected output.
out0="$work/value/test_add/test_data_set_0/output_0.pb"
size=$(stat -c %s "$out0")
last=$(od -An -tu1 -j $((size - 1)) -N1 "$out0" | tr -d ' ')
printf "$(printf '\\%03o' $((last ^ 128)))" |
  dd of="$out0" bs=1 seek=$((size - 1)) conv=notrunc status=none
echo "test_add some reason" > "$work/gap.txt"

expect "untouched copy passes" 0 "gate:.*|  ok" -- --data "$work/good" --known-gaps none
expect "wrong value fails" 1 "test_add +Add +fail +output 'sum' f32\[3,4,5\]: 1 of 60 elements differ; worst at \[59\] \(2,3,4\)" \
  -- --data "$work/value" --known-gaps none
expect "wrong shape fails" 1 "fail +output 'sum': expected f32\[3,1,2\], got f32\[3,4,5\]" \
  -- --data "$work/shape" --known-gaps none
expect "a known gap that passes fails the gate" 1 "passes now: remove it from known_gaps.txt" \
  -- --data "$work/good" --known-gaps "$work/gap.txt"
expect "timeout" 1 "test_add +Add +timeout +timeout after" \
  -- --data "$work/good" --known-gaps none --timeout 0.001
expect "missing data skips" 77 "skipped: libonnx-testdata not installed" -- --data "$work/none"
expect "usage error" 2 "unknown option --bogus" -- --bogus
[ "$fails" = 0 ] && echo "selftest: all passed" || echo "selftest: $fails failed"
[ "$fails" = 0 ]
