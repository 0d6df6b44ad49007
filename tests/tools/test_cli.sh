#!/usr/bin/env bash
# test_cli.sh BIN_DIR — end to end through the command line: the lecture's programs print
# what the lecture prints; an MLP built in C, compiled by `kiln compile` and run by
# `deploy` (libkiln_rt only) matches `kiln run --target ref`; bad input of each kind gets
# a non-zero exit, a specific message, and leaves no file behind.
set -u
bin="$1"
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-cli.XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0; fail=0

ok()   { pass=$((pass + 1)); echo "ok   - $1"; }
bad()  { fail=$((fail + 1)); echo "FAIL - $1"; [ -f "$work/out" ] && sed 's/^/       /' "$work/out" | head -20; }
# expect NAME STATUS PATTERN CMD... : runs CMD, checks its exit status and, unless PATTERN
# is empty, that its output matches PATTERN
expect() {
  local name="$1" want="$2" pat="$3"; shift 3
  "$@" >"$work/out" 2>&1; local rc=$?
  if [ "$rc" != "$want" ]; then bad "$name (exit $rc, wanted $want)"; return; fi
  if [ -n "$pat" ] && ! grep -Eq -- "$pat" "$work/out"; then bad "$name (no match for /$pat/)"; return; fi
  ok "$name"
}
nofile() { if [ -e "$1" ]; then bad "$2: $1 was left behind"; else ok "$2"; fi; }
nostray() { # no temp files left next to a target
  if ls "$1" 2>/dev/null | grep -q '\.tmp'; then bad "$2: temp file left in $1"; else ok "$2"; fi; }

# ---- the lecture's programs ----
expect "seed_constants prints ts_c" 0 '^ts_c= 2$' "$bin/seed_constants"
expect "seed_constants prints ts_x" 0 '^ts_x= 7$' "$bin/seed_constants"
expect "seed_placeholder prints area" 0 '^area= 48$' "$bin/seed_placeholder" "$work/area.kiln"
expect "seed_device logs placement" 0 'mul.*CPU:0' "$bin/seed_device"
expect "seed_device prints the sum" 0 '^sum= ' "$bin/seed_device"
expect "saved placeholder graph shows" 0 "area" "$bin/kiln" show "$work/area.kiln"
expect "show --format json" 0 '"name": "area"' "$bin/kiln" show "$work/area.kiln" --format json
expect "run placeholder graph on random ints" 0 "area i32" \
  "$bin/kiln" run "$work/area.kiln" --random-inputs 3 --save-inputs "$work"
expect "run placeholder graph on saved inputs" 0 "area i32" \
  "$bin/kiln" run "$work/area.kiln" --input width="$work/width.npy" --input height="$work/height.npy"

# ---- the MLP: C API -> .kiln -> kiln compile -> deploy vs the interpreter ----
expect "seed_mlp saves the graph" 0 "mlp.kiln" "$bin/seed_mlp" "$work/mlp.kiln"
expect "compile with pass log and placement" 0 "cpu:0" \
  "$bin/kiln" compile "$work/mlp.kiln" -o "$work/mlp.kart" --print-pass-log --log-placement
expect "compile fuses matmul + clamp" 0 "fused_matmul" "$bin/kiln" show "$work/mlp.kart"
expect "show artifact names fused nodes" 0 "from nodes:.*h.*h_relu" "$bin/kiln" show "$work/mlp.kart"
expect "show artifact prints the memory plan" 0 "arena peak [0-9]+ bytes" "$bin/kiln" show "$work/mlp.kart"
expect "reference run" 0 "^y f32\[64,10\]" \
  "$bin/kiln" run "$work/mlp.kiln" --target ref --random-inputs 11 --save-inputs "$work" --output y="$work/y_ref.npy" --print
expect "deploy runs the artifact" 0 "^y f32\[64,10\]" \
  "$bin/deploy" "$work/mlp.kart" --input x="$work/x.npy" --output y="$work/y_deploy.npy" --print
expect "deploy == ref within 1e-5" 0 "ok" "$bin/kiln" compare "$work/y_deploy.npy" "$work/y_ref.npy" --tol 1e-5
expect "kiln run ARTIFACT == ref" 0 "" \
  "$bin/kiln" run "$work/mlp.kart" --input x="$work/x.npy" --output y="$work/y_run.npy"
expect "kiln run ARTIFACT output matches" 0 "ok" "$bin/kiln" compare "$work/y_run.npy" "$work/y_ref.npy" --tol 1e-5
expect "kiln run --target cpu" 0 "" \
  "$bin/kiln" run "$work/mlp.kiln" --target cpu --input x="$work/x.npy" --output y="$work/y_cpu.npy"
expect "--target cpu matches ref" 0 "ok" "$bin/kiln" compare "$work/y_cpu.npy" "$work/y_ref.npy" --tol 1e-5
expect "opt prints after every pass" 0 "graph after fuse" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/mlp.opt.kiln" --print-after-all --verify-each --stats
expect "optimized graph runs the same" 0 "" \
  "$bin/kiln" run "$work/mlp.opt.kiln" --input x="$work/x.npy" --output y="$work/y_opt.npy"
expect "optimized graph output matches" 0 "ok" "$bin/kiln" compare "$work/y_opt.npy" "$work/y_ref.npy" --tol 1e-5
nostray "$work" "no temp files after compile/opt"

# ---- deploy carries only the runtime: no compiler symbol is linked into it ----
if nm "$bin/deploy" 2>/dev/null | grep -Eq ' [TtDdBb] (kir_|kps_|kcg_|kiln_graph_|kiln_session_)'; then
  bad "deploy links compiler code"
else ok "deploy links no compiler code"; fi
expect "deploy links libkiln_rt" 0 "libkiln_rt" ldd "$bin/deploy"

# ---- bad input: each a specific message, a non-zero exit, nothing left behind ----
expect "usage: no command" 2 "usage" "$bin/kiln"
expect "usage: unknown command" 2 "unknown command" "$bin/kiln" frobnicate
expect "usage: unknown option" 2 "unknown option" "$bin/kiln" show "$work/mlp.kiln" --bogus
expect "missing file" 1 "nope.kiln" "$bin/kiln" show "$work/nope.kiln"
expect "directory as model" 1 "kiln:" "$bin/kiln" show "$work"
: > "$work/empty.kiln"
expect "empty file" 1 "empty" "$bin/kiln" show "$work/empty.kiln"
head -c 4096 /dev/urandom > "$work/garbage.kiln"
expect "garbage file" 1 "kiln:" "$bin/kiln" show "$work/garbage.kiln"
head -c 1000 "$work/mlp.kiln" > "$work/trunc.kiln"
expect "truncated graph" 1 "kiln:" "$bin/kiln" show "$work/trunc.kiln"
expect "unknown pass" 1 "unknown pass 'frob'" "$bin/kiln" opt "$work/mlp.kiln" -o "$work/x.kiln" --passes fold,frob
nofile "$work/x.kiln" "no output after a failed opt"
expect "missing feed" 1 "input 'x'.*not given" "$bin/kiln" run "$work/mlp.kiln" --target ref
expect "unknown feed name" 1 "no input of that name" "$bin/kiln" run "$work/mlp.kiln" --input nope="$work/x.npy"
expect "wrong feed shape" 1 "expects f32\[64,1000\]" "$bin/kiln" run "$work/mlp.kiln" --input x="$work/y_ref.npy"
expect "deploy: wrong feed shape" 1 "x" "$bin/deploy" "$work/mlp.kart" --input x="$work/y_ref.npy" --output y="$work/bad.npy"
nofile "$work/bad.npy" "no output after a failed deploy"
expect "compile into a missing directory" 1 "kiln:" "$bin/kiln" compile "$work/mlp.kiln" -o "$work/no/such/dir/m.kart"
expect "compile with a failing C compiler" 1 "compile" "$bin/kiln" compile "$work/mlp.kiln" -o "$work/cc.kart" --cc false
nofile "$work/cc.kart" "no artifact after a compiler failure"
cp "$work/mlp.kart" "$work/flip.kart"
size=$(stat -c %s "$work/flip.kart")
printf '\xff' | dd of="$work/flip.kart" bs=1 seek=$((size - 100)) conv=notrunc 2>/dev/null
expect "corrupt artifact: hash mismatch" 1 "hash mismatch" "$bin/deploy" "$work/flip.kart"
expect "corrupt artifact via kiln run" 1 "hash mismatch" "$bin/kiln" run "$work/flip.kart" --input x="$work/x.npy"
head -c $((size / 2)) "$work/mlp.kart" > "$work/half.kart"
expect "truncated artifact" 1 "half.kart" "$bin/deploy" "$work/half.kart"
printf 'KILNART\0\x02\x00' > "$work/future.kart"; head -c 200 /dev/zero >> "$work/future.kart"
expect "future artifact version" 1 "kiln|future|newer|version|size" "$bin/deploy" "$work/future.kart"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
