#!/usr/bin/env bash
# test_cli.sh BIN_DIR — end to end through the command line: the lecture's programs print
# what the lecture prints; an MLP built in C, compiled by `kiln compile` and run by
# `deploy` (libkiln_rt only) matches `kiln run --target ref`; ONNX models (the suite's
# libonnx-testdata cases, and ones make_onnx_cases.py writes) import, run and match their
# expected outputs; bad input of each kind gets a non-zero exit, a specific message, and
# leaves no file behind.
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
expect "opt prints after every pass" 0 "IR Dump After fuse" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/mlp.opt.kiln" --print-after-all --verify-each --stats
expect "optimized graph runs the same" 0 "" \
  "$bin/kiln" run "$work/mlp.opt.kiln" --input x="$work/x.npy" --output y="$work/y_opt.npy"
expect "optimized graph output matches" 0 "ok" "$bin/kiln" compare "$work/y_opt.npy" "$work/y_ref.npy" --tol 1e-5
nostray "$work" "no temp files after compile/opt"

# ---- the text form: show --format text parses back; binary -> text -> binary is exact ----
expect "show --format text prints only the text" 0 '^kiln.graph 1.0$' \
  sh -c "'$bin/kiln' show '$work/mlp.kiln' --format text --full-constants > '$work/mlp.ktxt' && head -1 '$work/mlp.ktxt'"
expect "opt reads the text form" 0 "" \
  "$bin/kiln" opt "$work/mlp.ktxt" -o "$work/mlp.rt.kiln" --passes infer-shapes
expect "binary -> text -> binary is byte-exact" 0 "" cmp "$work/mlp.kiln" "$work/mlp.rt.kiln"
expect "run reads the text form" 0 "" \
  "$bin/kiln" run "$work/mlp.ktxt" --input x="$work/x.npy" --output y="$work/y_txt.npy"
expect "text-form run matches" 0 "ok" "$bin/kiln" compare "$work/y_txt.npy" "$work/y_ref.npy" --tol 0
expect "elided text is refused with line:col" 1 "mlp.elided.ktxt:3:[0-9]+: constant elided; print with --full-constants" \
  sh -c "'$bin/kiln' show '$work/mlp.kiln' --format text > '$work/mlp.elided.ktxt'; '$bin/kiln' show '$work/mlp.elided.ktxt'"
expect "show --format dot is valid Graphviz" 0 "<svg" \
  sh -c "command -v dot >/dev/null || { echo '<svg (dot not installed)'; exit 0; }; '$bin/kiln' show '$work/mlp.kiln' --format dot | dot -Tsvg"

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

# ---- kiln opt: pass manager flags (issue 3) ----
expect "opt --print-after-all --stats" 0 "fuse - matmuls fused" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/mlp.o2.kiln" --print-after-all --stats
for p in infer-shapes fold fold-batchnorm simplify cse dce fuse place plan-memory; do
  if grep -q -- "^// -----// IR Dump After $p //----- //$" "$work/out"; then ok "print-after-all shows $p"; else bad "print-after-all shows $p"; fi
done
if grep -Eq "^ +[0-9]+ fold - nodes folded$" "$work/out"; then ok "stats show fold's counters"; else bad "stats show fold's counters"; fi
expect "opt -O0 runs infer-shapes,place" 0 "IR Dump After place" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/mlp.o0.kiln" -O0 --print-after-all
if grep -q "IR Dump After fold" "$work/out"; then bad "-O0 does not fold"; else ok "-O0 does not fold"; fi
expect "opt --timing" 0 "Pass execution timing report" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/mlp.t.kiln" -O1 --timing --verify-each
expect "opt --print-before/--print-after, = forms" 0 "IR Dump Before fuse" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/mlp.pb.kiln" --passes=infer-shapes,fuse --print-before=fuse --print-after fuse --fetch=y
if grep -q "IR Dump After fuse" "$work/out" && ! grep -q "IR Dump After infer-shapes" "$work/out"; then ok "print-after prints only the chosen pass"; else bad "print-after prints only the chosen pass"; fi
expect "opt --print-after-change" 0 "IR Dump After fuse" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/mlp.pc.kiln" --passes infer-shapes,fold,fuse --print-after-change
if grep -q "IR Dump After fold" "$work/out"; then bad "print-after-change skips unchanged passes"; else ok "print-after-change skips unchanged passes"; fi
expect "opt --disable-pass" 0 "" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/mlp.nofuse.kiln" --disable-pass=fuse
if "$bin/kiln" show "$work/mlp.nofuse.kiln" | grep -q fused_matmul; then bad "disabled fuse fuses nothing"; else ok "disabled fuse fuses nothing"; fi
expect "opt --explain-fusion" 0 "Fusion candidates not fused" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/mlp.ex.kiln" --explain-fusion
expect "opt pass options" 0 "[0-9]+ fold - nodes folded" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/mlp.fo.kiln" --passes "infer-shapes,fold{max-bytes=16},place{strict=false}" --stats
expect "opt -O2 runs the same" 0 "" \
  "$bin/kiln" run "$work/mlp.o2.kiln" --input x="$work/x.npy" --output y="$work/y_o2.npy"
expect "opt -O2 output matches" 0 "ok" "$bin/kiln" compare "$work/y_o2.npy" "$work/y_ref.npy" --tol 1e-5
expect "opt --dump-dir" 0 "" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/mlp.dd.kiln" -O2 --dump-dir "$work/dump"
i=0
for p in input infer-shapes fold fold-batchnorm simplify cse dce fuse place plan-memory; do
  for ext in ktxt dot json; do
    f="$work/dump/$(printf %02d $i)-$p.$ext"
    if [ -s "$f" ]; then ok "dump $(basename "$f")"; else bad "dump $(basename "$f") missing"; fi
  done
  if command -v dot >/dev/null 2>&1; then
    if dot -Tsvg "$work/dump/$(printf %02d $i)-$p.dot" -o /dev/null 2>"$work/out"; then ok "dot accepts $p"; else bad "dot rejects $p"; fi
  fi
  if command -v python3 >/dev/null 2>&1; then
    if python3 -m json.tool "$work/dump/$(printf %02d $i)-$p.json" >/dev/null 2>"$work/out"; then ok "JSON of $p parses"; else bad "JSON of $p"; fi
  fi
  i=$((i + 1))
done
if grep -q '"name": "h"' "$work/dump/07-fuse.json" && grep -q '"what": \["op", "inputs", "attrs"\]' "$work/dump/07-fuse.json"; then
  ok "fuse JSON names what it removed and changed"; else bad "fuse JSON names what it removed and changed"; fi
nostray "$work/dump" "no temp files in the dump directory"
expect "opt: --passes with -O1" 2 "contradict" "$bin/kiln" opt "$work/mlp.kiln" -o "$work/c1.kiln" --passes fold -O1
nofile "$work/c1.kiln" "no output after contradictory options"
expect "opt: -O1 with -O2" 2 "contradict" "$bin/kiln" opt "$work/mlp.kiln" -o "$work/c2.kiln" -O1 -O2
expect "opt: -O3" 2 "optimization level" "$bin/kiln" opt "$work/mlp.kiln" -o "$work/c3.kiln" -O3
expect "opt: bad option value" 1 "bad value 'x' for option max-bytes" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/c4.kiln" --passes "fold{max-bytes=x}"
nofile "$work/c4.kiln" "no output after a bad pipeline"
expect "opt: unbalanced braces" 1 "unbalanced braces" "$bin/kiln" opt "$work/mlp.kiln" -o "$work/c5.kiln" --passes "fold{max-bytes=1"
expect "opt: unknown --print-after pass" 1 "unknown pass 'nope' in print-after" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/c6.kiln" --print-after=nope
nofile "$work/c6.kiln" "no output after an unknown pass name"
expect "opt: dump dir without parent" 1 "dump directory" \
  "$bin/kiln" opt "$work/mlp.kiln" -o "$work/c7.kiln" --dump-dir "$work/no/such/dump"
nofile "$work/c7.kiln" "no output after a dump failure"

# ---- placement log: --device declarations, JSON, strict placement ----
cat > "$work/check_place.py" <<'PY'
import json, sys
d = json.load(sys.stdin)
names = [n["name"] for n in d["nodes"]]
assert names and len(set(names)) == len(names), "node names missing or repeated"
for n in d["nodes"]:
    assert n["device"] in d["devices"], n
    assert n["reason"], n
assert all(a["peak_bytes"] >= 0 for a in d["memory"]["arenas"])
print("ok %d nodes on %s" % (len(names), ",".join(sorted({n["device"] for n in d["nodes"]}))))
PY
if command -v python3 >/dev/null; then
  expect "compile --log-placement --format json parses" 0 "^ok [0-9]+ nodes on cpu:0$" sh -c \
    "'$bin/kiln' compile '$work/mlp.kiln' --log-placement --format json | python3 '$work/check_place.py'"
  expect "json placement with a declared GPU" 0 "^ok [0-9]+ nodes on cuda:0$" sh -c \
    "'$bin/kiln' compile '$work/mlp.kiln' --log-placement --format json --device cpu:0 --device cuda:0 | python3 '$work/check_place.py'"
else ok "python3 absent: JSON placement checks skipped"; fi
expect "declared GPU: unpinned ops go to cuda:0" 0 "-> cuda:0 +default device cuda:0: has a kernel" \
  "$bin/kiln" compile "$work/mlp.kiln" --log-placement --device cpu:0 --device /device:GPU:0
expect "log-placement prints arena peaks" 0 "arena cpu:0: peak [0-9]+ bytes" \
  "$bin/kiln" compile "$work/mlp.kiln" --log-placement -o "$work/mlp2.kart"
expect "cpu target refuses nodes placed on a GPU" 1 "placed on 'cuda:0'" \
  "$bin/kiln" compile "$work/mlp.kiln" -o "$work/gpu.kart" --device cpu:0 --device cuda:0
nofile "$work/gpu.kart" "no artifact for a GPU placement"
printf '%s\n' 'kiln.graph 1.0' '%0 "x" = placeholder() {dtype = f32, shape = [2]}' \
  '%1 "a" = exp(%0) @ "/device:GPU:2"' '%2 "b" = neg(%1) @ "cpu:0"' > "$work/pin.ktxt"
expect "soft placement of a pin to an absent GPU" 0 "a +exp +-> cpu:0 +requested 'cuda:2', which the target lacks" \
  "$bin/kiln" compile "$work/pin.ktxt" --log-placement --device cpu:0 --device cuda:0
expect "strict placement names node and device" 1 "node 'a': device 'cuda:2' requested but the target has only cpu:0, cuda:0" \
  "$bin/kiln" compile "$work/pin.ktxt" --log-placement --device cpu:0 --device cuda:0 --strict-placement
expect "bad --device" 2 "'floppy' is not a device name" \
  "$bin/kiln" compile "$work/mlp.kiln" --log-placement --device floppy
expect "--format without --log-placement" 2 "applies to --log-placement" \
  "$bin/kiln" compile "$work/mlp.kiln" -o "$work/f.kart" --format json

# ---- kiln bench: timing fields, JSON, FLOPs from the plan, --cold, bad input ----
expect "bench MODEL prints latency percentiles" 0 "^latency +median [0-9.]+ us, p10 [0-9.]+ us, p90 [0-9.]+ us" \
  "$bin/kiln" bench "$work/mlp.kiln" --iterations 5 --warmup 1
expect "bench ARTIFACT prints throughput with batch" 0 "^throughput +[0-9.]+ runs/s, [0-9.]+ samples/s \(batch 64\)" \
  "$bin/kiln" bench "$work/mlp.kart" --iterations 5 --warmup 0
expect "bench counts FLOPs at compile time" 0 "^compute +12934400 FLOP per run, [0-9.]+ GFLOP/s" \
  "$bin/kiln" bench "$work/mlp.kart" --iterations 3
expect "bench prints the arena peak" 0 "^memory +arena peak [1-9][0-9]* bytes" \
  "$bin/kiln" bench "$work/mlp.kart" --iterations 3
expect "bench --threads sets OpenBLAS threads" 0 "OPENBLAS_NUM_THREADS=1 \(set by --threads" \
  "$bin/kiln" bench "$work/mlp.kart" --iterations 3 --threads 1
expect "bench keeps the user's thread setting" 0 "OPENBLAS_NUM_THREADS=1 \(from the environment\)" \
  env OPENBLAS_NUM_THREADS=1 "$bin/kiln" bench "$work/mlp.kart" --iterations 3
expect "bench rotates input sets" 0 "3 input sets of 256000 random bytes" \
  "$bin/kiln" bench "$work/mlp.kart" --iterations 4 --inputs 3
expect "bench on real data" 0 "1 input set of 0 random bytes.*--input files shared" \
  "$bin/kiln" bench "$work/mlp.kart" --iterations 3 --input x="$work/x.npy"
expect "bench --cold: open + first run in fresh processes" 0 "^cold +open [0-9.]+ ms \+ context and first run [0-9.]+ ms = [0-9.]+ ms \(median of 11" \
  "$bin/kiln" bench "$work/mlp.kart" --iterations 2 --cold
expect "bench --cold: libkiln_rt size" 0 "^library +.*libkiln_rt[^ ]*: [0-9]+ bytes" \
  "$bin/kiln" bench "$work/mlp.kart" --iterations 2 --cold
cat > "$work/check_bench.py" <<'PY'
import json, sys
d = json.load(sys.stdin)
l = d["latency_ns"]
assert 0 < l["min"] <= l["p10"] <= l["median"] <= l["p90"], l
assert d["iterations"] == 7 and d["warmup"] == 2 and d["batch"] == 64, d
assert abs(d["samples_per_s"] - 64 * d["runs_per_s"]) <= 1e-6 * d["samples_per_s"] + 64e-3, d  # printed to 3 decimals
assert d["flops"] == 2 * 64 * 1000 * 100 + 64 * 100 + 2 * 64 * 100 * 10, d["flops"]
assert abs(d["gflops_per_s"] - d["flops"] / l["median"]) < 1e-3 * d["gflops_per_s"] + 1e-4, d
assert 0 < d["arena_peak_bytes"] <= d["intermediates_bytes"], d
assert d["weights_bytes"] == 4 * (1000 * 100 + 100 * 10), d
c = d["cold"]
assert 0 < c["open_ns"] and 0 < c["first_run_ns"] and c["runs"] == 11, c
assert d["library"]["unstripped_bytes"] > 0, d["library"]
assert isinstance(d["blas_core"], str), d
s = d["library"]["stripped_bytes"]
assert s is None or 0 < s <= d["library"]["unstripped_bytes"], d["library"]
print("bench json ok")
PY
if command -v python3 >/dev/null; then
  expect "bench --format json parses and adds up" 0 "^bench json ok$" sh -c \
    "'$bin/kiln' bench '$work/mlp.kart' --iterations 7 --warmup 2 --cold --format json | python3 '$work/check_bench.py'"
else ok "python3 absent: bench JSON check skipped"; fi
# OpenMP's wait policy: passive unless the user chose (a big loop pulls in libgomp)
printf '%s\n' 'kiln.graph 1.0' '%0 "x" = placeholder() {dtype = f32, shape = [512,1024]}' '%1 "y" = relu(%0)' > "$work/omp.ktxt"
if "$bin/kiln" compile "$work/omp.ktxt" -o "$work/omp.kart" >/dev/null 2>&1 && grep -q "pragma omp" <("$bin/kiln" show "$work/omp.kart" --source 2>/dev/null || strings "$work/omp.kart"); then
  # libgomp prints 'PASSIVE' for its default too; the spin count tells them apart
  # (default 300000, explicitly passive 0)
  expect "runtime asks libgomp for the passive wait policy (no spinning)" 0 "GOMP_SPINCOUNT = '0'" \
    env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OMP_DISPLAY_ENV=verbose "$bin/kiln" bench "$work/omp.kart" --iterations 2
  expect "runtime keeps the user's wait policy" 0 "OMP_WAIT_POLICY = 'ACTIVE'" \
    env OMP_WAIT_POLICY=active OMP_DISPLAY_ENV=true "$bin/kiln" bench "$work/omp.kart" --iterations 2
  expect "runtime keeps the user's spin count" 0 "GOMP_SPINCOUNT = '12345'" \
    env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=12345 OMP_DISPLAY_ENV=verbose "$bin/kiln" bench "$work/omp.kart" --iterations 2
else ok "no OpenMP loop in the generated code here: wait-policy checks skipped"; fi
printf '%s\n' 'kiln.graph 1.0' '%0 "x" = placeholder() {dtype = f32, shape = [64,999]}' '%1 "y" = neg(%0)' > "$work/bshape.ktxt"
printf '%s\n' 'kiln.graph 1.0' '%0 "x" = placeholder() {dtype = f64, shape = [64,1000]}' '%1 "y" = neg(%0)' > "$work/btype.ktxt"
mkdir -p "$work/bshape" "$work/btype"
"$bin/kiln" run "$work/bshape.ktxt" --random-inputs 1 --save-inputs "$work/bshape" >/dev/null 2>&1
"$bin/kiln" run "$work/btype.ktxt" --random-inputs 1 --save-inputs "$work/btype" >/dev/null 2>&1
expect "bench refuses an input of the wrong shape" 1 "input 'x': the model expects f32\[64,1000\], .*holds f32\[64,999\]" \
  "$bin/kiln" bench "$work/mlp.kiln" --iterations 2 --input x="$work/bshape/x.npy"
expect "bench refuses an input of the wrong dtype" 1 "input 'x': the model expects f32\[64,1000\], .*holds f64\[64,1000\]" \
  "$bin/kiln" bench "$work/mlp.kart" --iterations 2 --input x="$work/btype/x.npy"
expect "bench refuses an unknown input name" 1 "--input 'nope': the model has no input of that name" \
  "$bin/kiln" bench "$work/mlp.kart" --input nope="$work/x.npy"
expect "bench: unknown model file" 1 "nope.kiln: cannot open" "$bin/kiln" bench "$work/nope.kiln"
expect "bench --iterations 0" 2 "--iterations wants a whole number from 1" "$bin/kiln" bench "$work/mlp.kart" --iterations 0
expect "bench garbage --iterations" 2 "not '12abc'" "$bin/kiln" bench "$work/mlp.kart" --iterations 12abc
expect "bench garbage --warmup" 2 "--warmup wants a whole number" "$bin/kiln" bench "$work/mlp.kart" --warmup -3
expect "bench garbage --threads" 2 "--threads wants a whole number" "$bin/kiln" bench "$work/mlp.kart" --threads two
expect "bench --inputs 0" 2 "--inputs wants a whole number" "$bin/kiln" bench "$work/mlp.kart" --inputs 0
expect "bench bad --format" 2 "--format must be text or json" "$bin/kiln" bench "$work/mlp.kart" --format xml
expect "bench bad --target" 2 "target 'cuda' is not supported" "$bin/kiln" bench "$work/mlp.kart" --target cuda
expect "bench without a model" 2 "which model" "$bin/kiln" bench

# ---- kiln compile --emit-c: standalone C, built with cc alone, matches the interpreter ----
mkdir -p "$work/sa" "$work/saw" "$work/sab"
expect "emit-c writes the C files" 0 "wrote .*/sa/model.c .*/sa/model.h" "$bin/kiln" compile "$work/mlp.kiln" --emit-c "$work/sa"
expect "emit-c writes exactly model.c and model.h" 0 "^model.c model.h $" sh -c "ls '$work/sa' | tr '\n' ' '"
cat > "$work/sa/app.c" <<'APP'
#include <stdio.h>
#include <stdlib.h>
#include "model.h"
int main(int argc, char **argv) { /* app X.npy OUT.raw: the data is the file's tail */
  size_t ib = MODEL_INPUT_0_BYTES, ob = MODEL_OUTPUT_0_BYTES, ab = (MODEL_ARENA_BYTES + 63) / 64 * 64;
  void *x = aligned_alloc(64, (ib + 63) / 64 * 64), *y = aligned_alloc(64, (ob + 63) / 64 * 64);
  void *arena = aligned_alloc(64, ab ? ab : 64);
  FILE *f = argc == 3 ? fopen(argv[1], "rb") : NULL;
  if (!x || !y || !arena || !f || fseek(f, -(long)ib, SEEK_END) || fread(x, 1, ib, f) != ib) return 10;
  fclose(f);
  const void *in[1] = {x};
  void *out[1] = {y};
  int rc = model_run(in, &ib, out, &ob, arena, ab);
  if (rc) { printf("status %d\n", rc); return rc; }
  f = fopen(argv[2], "wb");
  if (!f || fwrite(y, 1, ob, f) != ob || fclose(f)) return 11;
  printf("ok\n");
  return 0;
}
APP
expect "standalone C builds with cc, no Kiln library" 0 "" \
  cc -std=c11 -O2 -Wall -Wextra -Werror -pedantic -I"$work/sa" "$work/sa/app.c" "$work/sa/model.c" -o "$work/sa/app" -lopenblas -lm
expect "standalone app runs" 0 "^ok$" "$work/sa/app" "$work/x.npy" "$work/sa/y.raw"
n=$(( $(stat -c %s "$work/y_ref.npy") - $(stat -c %s "$work/sa/y.raw") ))
{ head -c "$n" "$work/y_ref.npy"; cat "$work/sa/y.raw"; } > "$work/y_sa.npy"
expect "standalone output == ref within 1e-5" 0 "ok" "$bin/kiln" compare "$work/y_sa.npy" "$work/y_ref.npy" --tol 1e-5
expect "emit-c with -o, a weights file and a prefix" 0 "wrote .*saw/net.c .*saw/net.h .*saw/net.weights" \
  "$bin/kiln" compile "$work/mlp.kiln" -o "$work/sa.kart" --emit-c "$work/saw" --weights file --prefix net
expect "... writes exactly net.c, net.h, net.weights" 0 "^net.c net.h net.weights $" sh -c "ls '$work/saw' | tr '\n' ' '"
expect "... and the artifact" 0 "fused_matmul" "$bin/kiln" show "$work/sa.kart"
expect "weights file holds both matrices" 0 "^404000$" stat -c %s "$work/saw/net.weights"
expect "net.c compiles" 0 "" cc -std=c11 -Wall -Wextra -Werror -pedantic -c "$work/saw/net.c" -o "$work/saw.o"
rm -f "$work/saw.o"
expect "emit-c refuses a missing directory" 1 "output directory .*nope.*No such file" \
  "$bin/kiln" compile "$work/mlp.kiln" --emit-c "$work/nope"
nofile "$work/nope" "no directory made"
expect "emit-c refuses a file as directory" 1 "is not a directory" \
  "$bin/kiln" compile "$work/mlp.kiln" --emit-c "$work/mlp.kiln"
expect "emit-c refuses a bad --prefix" 2 "--prefix '1x' is not a C identifier" \
  "$bin/kiln" compile "$work/mlp.kiln" --emit-c "$work/sab" --prefix 1x
expect "emit-c refuses a prefix with a path" 2 "not a C identifier" \
  "$bin/kiln" compile "$work/mlp.kiln" --emit-c "$work/sab" --prefix ../evil
expect "bad --weights" 2 "--weights 'blob' is not c-array or file" \
  "$bin/kiln" compile "$work/mlp.kiln" --emit-c "$work/sab" --weights blob
expect "--prefix without --emit-c" 2 "apply to --emit-c" "$bin/kiln" compile "$work/mlp.kiln" -o "$work/p.kart" --prefix m
nofile "$work/p.kart" "no artifact after a usage error"
mkdir -p "$work/sab/model.h"  # renaming onto a directory fails after model.c is in place
expect "emit-c failing late" 1 "cannot write .*model.h" "$bin/kiln" compile "$work/mlp.kiln" --emit-c "$work/sab"
expect "... leaves nothing behind" 0 "^model.h $" sh -c "ls '$work/sab' | tr '\n' ' '"

# ---- a portable artifact (--cpu generic) computes the same ----
expect "compile --cpu generic" 0 "wrote" "$bin/kiln" compile "$work/mlp.kiln" -o "$work/generic.kart" --cpu generic
expect "generic artifact records its ISA" 0 "march=x86-64" "$bin/kiln" show "$work/generic.kart"
expect "generic artifact needs no CPU feature" 0 "cpu features required: none" "$bin/kiln" show "$work/generic.kart"
expect "host artifact lists its CPU features" 0 "cpu features required: [a-z]" "$bin/kiln" show "$work/mlp.kart"
expect "generic artifact runs" 0 "" "$bin/deploy" "$work/generic.kart" --input x="$work/x.npy" --output y="$work/y_generic.npy"
expect "generic artifact matches ref" 0 "ok" "$bin/kiln" compare "$work/y_generic.npy" "$work/y_ref.npy" --tol 1e-5
expect "usage: unknown --cpu" 2 "--cpu must be host or generic" "$bin/kiln" compile "$work/mlp.kiln" -o "$work/bad.kart" --cpu arm
nofile "$work/bad.kart" "no artifact after a bad --cpu"

# ---- ONNX (issue 4): kiln import, .onnx wherever a MODEL is taken, .pb tensors ----
onnxdata=/usr/share/libonnx-testdata/data/node
expect "usage lists kiln import" 0 "import +MODEL.onnx -o OUT.kiln" "$bin/kiln" --help
# onnx_case TEST INPUT...: import the suite's model, run it (ref and cpu, the .onnx and the
# imported .kiln) on test_data_set_0's .pb inputs and compare with output_0.pb.
onnx_case() {
  local t="$1" d="$onnxdata/$1" k=0 ins=() n target; shift
  for n in "$@"; do ins+=(--input "$n=$d/test_data_set_0/input_$k.pb"); k=$((k + 1)); done
  local want="$# inputs"; [ "$#" = 1 ] && want="1 input"
  expect "import $t" 0 "^imported .*model.onnx: [0-9]+ nodes, $want, 1 output; wrote .*$t.kiln$" \
    "$bin/kiln" import "$d/model.onnx" -o "$work/$t.kiln"
  for target in ref cpu; do
    expect "run $t .onnx --target $target on .pb inputs" 0 "" \
      "$bin/kiln" run "$d/model.onnx" --target $target "${ins[@]}" --output y="$work/$t.$target.npy"
    expect "... $t $target matches output_0.pb" 0 "ok$" \
      "$bin/kiln" compare "$work/$t.$target.npy" "$d/test_data_set_0/output_0.pb" --tol 1e-5
  done
  expect "run imported $t.kiln" 0 "" "$bin/kiln" run "$work/$t.kiln" "${ins[@]}" --output y="$work/$t.kiln.npy"
  expect "... imported $t matches output_0.pb" 0 "ok$" \
    "$bin/kiln" compare "$work/$t.kiln.npy" "$d/test_data_set_0/output_0.pb" --tol 1e-5
}
if [ -d "$onnxdata" ]; then
  onnx_case test_relu x
  onnx_case test_gemm_all_attributes a b c
  onnx_case test_conv_with_strides_padding x W
  onnx_case test_maxpool_2d_pads x
  onnx_case test_softmax_axis_1 x
  nostray "$work" "no temp files after imports"
  relu="$onnxdata/test_relu/model.onnx" conv="$onnxdata/test_conv_with_strides_padding"
  expect "show x.onnx: opset and operators" 0 "[Oo]pset.*14" "$bin/kiln" show "$relu"
  expect "show x.onnx: the input's shape" 0 "x.*3, ?4, ?5" "$bin/kiln" show "$relu"
  expect "show x.onnx: operator counts" 0 "Relu.*1" "$bin/kiln" show "$relu" --format text
  expect "show x.onnx --format json parses" 0 "Relu" \
    sh -c "'$bin/kiln' show '$relu' --format json | python3 -m json.tool"
  expect "show --imported: the Kiln graph" 0 '"y" = relu\(%0\)' "$bin/kiln" show "$relu" --imported
  expect "show --imported --format json" 0 '"op": "relu"' "$bin/kiln" show "$relu" --imported --format json
  expect "show x.onnx --format dot is the imported graph" 0 "^digraph kiln" "$bin/kiln" show "$relu" --format dot
  expect "show --full-constants needs --imported" 2 "add --imported" "$bin/kiln" show "$relu" --full-constants
  expect "show --imported on a .kiln graph" 2 "--imported applies to ONNX" "$bin/kiln" show "$work/mlp.kiln" --imported
  expect "import --log prints the importer's notes" 0 "opset.*14" "$bin/kiln" import "$relu" -o "$work/relu.log.kiln" --log
  if grep -q "^imported " "$work/out"; then ok "... and the summary"; else bad "... and the summary"; fi
  expect "opt x.onnx -O2" 0 "" "$bin/kiln" opt "$conv/model.onnx" -o "$work/conv.opt.kiln" -O2 --verify-each
  expect "... optimized ONNX graph runs" 0 "" "$bin/kiln" run "$work/conv.opt.kiln" \
    --input x="$conv/test_data_set_0/input_0.pb" --input W="$conv/test_data_set_0/input_1.pb" --output y="$work/conv.opt.npy"
  expect "... and matches output_0.pb" 0 "ok$" "$bin/kiln" compare "$work/conv.opt.npy" "$conv/test_data_set_0/output_0.pb" --tol 1e-5
  expect "compile x.onnx" 0 "wrote .*conv.kart" "$bin/kiln" compile "$conv/model.onnx" -o "$work/conv.kart"
  expect "... the artifact runs on .pb inputs" 0 "" "$bin/kiln" run "$work/conv.kart" \
    --input x="$conv/test_data_set_0/input_0.pb" --input W="$conv/test_data_set_0/input_1.pb" --output y="$work/conv.kart.npy"
  expect "... and matches output_0.pb" 0 "ok$" "$bin/kiln" compare "$work/conv.kart.npy" "$conv/test_data_set_0/output_0.pb" --tol 1e-5
  expect "bench x.onnx on a .pb input" 0 "^latency +median [0-9.]+ us" \
    "$bin/kiln" bench "$relu" --iterations 3 --warmup 1 --input x="$onnxdata/test_relu/test_data_set_0/input_0.pb"
  # bad input at the command line
  expect "run x.onnx: a .pb of the wrong shape" 1 "input 'x': the model expects f32\[3,4,5\], .*holds f32\[1,1,7,5\]" \
    "$bin/kiln" run "$relu" --input x="$conv/test_data_set_0/input_0.pb"
  head -c 300 /dev/urandom > "$work/garbage.pb"
  expect "run x.onnx: a garbage .pb" 1 "garbage.pb" "$bin/kiln" run "$relu" --input x="$work/garbage.pb"
  expect "compare: a garbage .pb" 1 "garbage.pb" "$bin/kiln" compare "$work/test_relu.ref.npy" "$work/garbage.pb"
  head -c 4096 /dev/urandom > "$work/garbage.onnx"
  expect "import a garbage .onnx" 1 "garbage.onnx" "$bin/kiln" import "$work/garbage.onnx" -o "$work/g.kiln"
  nofile "$work/g.kiln" "no output after importing garbage"
  expect "show a garbage .onnx" 1 "garbage.onnx" "$bin/kiln" show "$work/garbage.onnx"
  expect "run a garbage .onnx" 1 "garbage.onnx" "$bin/kiln" run "$work/garbage.onnx" --random-inputs 1
  size=$(stat -c %s "$conv/model.onnx")
  head -c $((size / 2)) "$conv/model.onnx" > "$work/trunc.onnx"
  expect "import a truncated .onnx" 1 "trunc.onnx" "$bin/kiln" import "$work/trunc.onnx" -o "$work/t.kiln"
  nofile "$work/t.kiln" "no output after importing a truncated file"
  expect "show a truncated .onnx" 1 "trunc.onnx" "$bin/kiln" show "$work/trunc.onnx"
  : > "$work/empty.onnx"
  expect "import an empty .onnx" 1 "empty.onnx" "$bin/kiln" import "$work/empty.onnx" -o "$work/e.kiln"
  nofile "$work/e.kiln" "no output after importing an empty file"
  expect "import -o into a missing directory" 1 "kiln:" "$bin/kiln" import "$relu" -o "$work/no/such/dir/r.kiln"
  nofile "$work/no" "nothing made for -o into a missing directory"
  cp "$work/mlp.kiln" "$work/keep.kiln"
  expect "import failing over an existing file" 1 "garbage.onnx" "$bin/kiln" import "$work/garbage.onnx" -o "$work/keep.kiln"
  expect "... leaves that file as it was" 0 "" cmp "$work/mlp.kiln" "$work/keep.kiln"
  expect "import -o x.onnx" 2 "not ONNX" "$bin/kiln" import "$relu" -o "$work/r.onnx"
  nofile "$work/r.onnx" "no output after a usage error"
  expect "import without -o" 2 "needs MODEL.onnx and -o" "$bin/kiln" import "$relu"
  expect "import: unknown option" 2 "unknown option '--frob'" "$bin/kiln" import "$relu" -o "$work/r.kiln" --frob
  expect "--input-shape: bad dims" 2 "dims are whole numbers" "$bin/kiln" import "$relu" -o "$work/r.kiln" --input-shape x=3,,5
  expect "--input-shape: negative dim" 2 "dims are whole numbers" "$bin/kiln" run "$relu" --input-shape x=-3
  expect "--input-shape: no name" 2 "wants NAME=d0,d1" "$bin/kiln" compile "$relu" -o "$work/r.kart" --input-shape =3
  expect "--input-shape: rank over 8" 2 "more than 8 dims" "$bin/kiln" opt "$relu" -o "$work/r.kiln" --input-shape x=1,1,1,1,1,1,1,1,1
  expect "--input-shape: twice" 2 "x given twice" "$bin/kiln" bench "$relu" --input-shape x=3 --input-shape=x=4
  expect "--input-shape: no such input" 1 "'nope': the model has no (graph )?input of that name" \
    "$bin/kiln" import "$relu" -o "$work/r.kiln" --input-shape nope=3,4,5
  nofile "$work/r.kiln" "no output after bad --input-shape"
  expect "--input-shape on a .kiln graph" 1 "apply to ONNX models; this is a Kiln graph" \
    "$bin/kiln" run "$work/mlp.kiln" --input-shape x=1 --random-inputs 1
  expect "--input-shape on an artifact" 1 "apply to ONNX models; this is an artifact" \
    "$bin/kiln" run "$work/mlp.kart" --input-shape x=1 --random-inputs 1
else ok "$onnxdata absent (Debian libonnx-testdata): ONNX test-suite checks skipped"; fi

# ---- the element types beyond f32/f64/i32/i64/bool ----
printf '%s\n' 'kiln.graph 1.0' '%0 "a" = placeholder() {dtype = u8, shape = [4]}' \
  '%1 "b" = placeholder() {dtype = u8, shape = [4]}' '%2 "s" = add(%0, %1)' \
  '%3 "h" = placeholder() {dtype = f16, shape = [3]}' '%4 "t" = tanh(%3)' \
  '%5 "c" = cast(%3) {dtype = i8}' > "$work/nt.ktxt"
mkdir -p "$work/nt"
expect "run u8/f16 inputs: random, printed with their dtypes" 0 "^t f16\[3\] = \[" \
  "$bin/kiln" run "$work/nt.ktxt" --random-inputs 5 --save-inputs "$work/nt" --print \
  --output s="$work/nt/s_ref.npy" --output t="$work/nt/t_ref.npy" --output c="$work/nt/c_ref.npy"
cp "$work/out" "$work/nt/printed"
expect "... u8 sum printed as unsigned" 0 "^s u8\[4\] = \[[0-9]+, [0-9]+, [0-9]+, [0-9]+\]" cat "$work/nt/printed"
expect "... saved inputs reload" 0 "^s u8\[4\]" \
  "$bin/kiln" run "$work/nt.ktxt" --input a="$work/nt/a.npy" --input b="$work/nt/b.npy" --input h="$work/nt/h.npy" --print
expect "... --target cpu runs them" 0 "" "$bin/kiln" run "$work/nt.ktxt" --target cpu --input a="$work/nt/a.npy" \
  --input b="$work/nt/b.npy" --input h="$work/nt/h.npy" \
  --output s="$work/nt/s_cpu.npy" --output t="$work/nt/t_cpu.npy" --output c="$work/nt/c_cpu.npy"
for o in s t c; do
  expect "... cpu $o == ref exactly" 0 "ok$" "$bin/kiln" compare "$work/nt/${o}_cpu.npy" "$work/nt/${o}_ref.npy" --tol 0
done
pynp=""
for py in python3 /usr/bin/python3; do
  if "$py" -c 'import numpy' >/dev/null 2>&1; then pynp="$py"; break; fi
done
if [ -n "$pynp" ]; then
  expect "... numpy reads u1, f2 and i1" 0 "^uint8 float16 int8$" "$pynp" -c \
    "import numpy as n; print(*[n.load('$work/nt/' + f + '_ref.npy').dtype for f in 'stc'])"
else ok "numpy absent: .npy dtype check skipped"; fi
printf '%s\n' 'kiln.graph 1.0' '%0 "x" = placeholder() {dtype = bf16, shape = [3]}' '%1 "y" = neg(%0)' > "$work/bf.ktxt"
expect "run a bf16 input: printed" 0 "^y bf16\[3\] = \[" "$bin/kiln" run "$work/bf.ktxt" --random-inputs 2 --print
mkdir -p "$work/bf"
expect "... saving bf16 as .npy is refused (NumPy has no bfloat16)" 1 "bf16" \
  "$bin/kiln" run "$work/bf.ktxt" --random-inputs 2 --save-inputs "$work/bf"

# models made on the spot with python3-onnx: symbolic dims, an unsupported operator,
# external data, an unknown opset
pyonnx=""
for py in python3 /usr/bin/python3; do
  if "$py" -c 'import onnx, numpy' >/dev/null 2>&1; then pyonnx="$py"; break; fi
done
src=$(cd "$(dirname "$0")" && pwd)
if [ -n "$pyonnx" ] && mkdir -p "$work/ox" && "$pyonnx" "$src/make_onnx_cases.py" "$work/ox" >/dev/null; then
  ox="$work/ox"
  expect "show names a symbolic dim" 0 "N" "$bin/kiln" show "$ox/sym.onnx"
  expect "import: symbolic dim without --input-shape" 1 "x.*N.*\(unsupported\)" \
    "$bin/kiln" import "$ox/sym.onnx" -o "$work/sym.kiln"
  nofile "$work/sym.kiln" "no output for a symbolic dim"
  expect "run: symbolic dim without --input-shape" 1 "x.*N.*\(unsupported\)" \
    "$bin/kiln" run "$ox/sym.onnx" --input x="$ox/sym_x.npy"
  expect "import --input-shape x=3,4" 0 "^imported .*: [0-9]+ nodes, 1 input, 1 output" \
    "$bin/kiln" import "$ox/sym.onnx" -o "$work/sym.kiln" --input-shape x=3,4
  expect "... the input has that shape" 0 "x f32\[3,4\]" "$bin/kiln" show "$work/sym.kiln"
  for target in ref cpu; do
    expect "run --input-shape --target $target" 0 "" \
      "$bin/kiln" run "$ox/sym.onnx" --input-shape x=3,4 --target $target --input x="$ox/sym_x.npy" --output y="$work/sym.$target.npy"
    expect "... $target matches numpy" 0 "ok$" "$bin/kiln" compare "$work/sym.$target.npy" "$ox/sym_y.npy" --tol 0
  done
  expect "run --input-shape other than the file's" 1 "expects f32\[5,4\]" \
    "$bin/kiln" run "$ox/sym.onnx" --input-shape x=5,4 --input x="$ox/sym_x.npy"
  expect "import: an unsupported operator names node and op" 1 "hm.*Hardmax|Hardmax.*hm" \
    "$bin/kiln" import "$ox/unsupported.onnx" -o "$work/uns.kiln"
  nofile "$work/uns.kiln" "no output for an unsupported operator"
  expect "compile: an unsupported operator" 1 "Hardmax" "$bin/kiln" compile "$ox/unsupported.onnx" -o "$work/uns.kart"
  nofile "$work/uns.kart" "no artifact for an unsupported operator"
  expect "show lists the unsupported operator" 0 "Hardmax" "$bin/kiln" show "$ox/unsupported.onnx"
  expect "show --format json with an unsupported operator parses" 0 "Hardmax" \
    sh -c "'$bin/kiln' show '$ox/unsupported.onnx' --format json | python3 -m json.tool"
  expect "import: an unknown opset" 1 "99" "$bin/kiln" import "$ox/badopset.onnx" -o "$work/bo.kiln"
  nofile "$work/bo.kiln" "no output for an unknown opset"
  expect "import: external data refused by default" 1 "external" \
    "$bin/kiln" import "$ox/external.onnx" -o "$work/ext.kiln"
  nofile "$work/ext.kiln" "no output for refused external data"
  expect "import --allow-external-data" 0 "^imported " \
    "$bin/kiln" import "$ox/external.onnx" -o "$work/ext.kiln" --allow-external-data
  expect "run --allow-external-data --target cpu" 0 "" "$bin/kiln" run "$ox/external.onnx" --allow-external-data \
    --target cpu --input x="$ox/ext_x.npy" --output y="$work/ext.npy"
  expect "... matches numpy" 0 "ok$" "$bin/kiln" compare "$work/ext.npy" "$ox/ext_y.npy" --tol 1e-6
  # an initializer that is also an input: its value unless the caller gives one
  "$bin/kiln" compile "$ox/default.onnx" -o "$work/def.kart" >/dev/null 2>&1
  for m in "$ox/default.onnx --target ref" "$ox/default.onnx --target cpu" "$work/def.kart"; do
    expect "default input used when not given: $m" 0 "ok$" sh -c "'$bin/kiln' run $m --input x='$ox/def_x.npy' \
      --output y='$work/def.npy' && '$bin/kiln' compare '$work/def.npy' '$ox/def_y_default.npy' --tol 0"
    expect "default input overridden when given: $m" 0 "ok$" sh -c "'$bin/kiln' run $m --input x='$ox/def_x.npy' \
      --input w='$ox/def_w.npy' --output y='$work/def.npy' && '$bin/kiln' compare '$work/def.npy' '$ox/def_y_given.npy' --tol 0"
  done
  expect "external data outside the model's directory" 1 "\.\./external.bin" \
    "$bin/kiln" import "$ox/sub/escape.onnx" -o "$work/esc.kiln" --allow-external-data
  nofile "$work/esc.kiln" "no output for external data outside the model's directory"
  nostray "$work" "no temp files after failed imports"
else ok "python3 with onnx and numpy absent: generated-ONNX checks skipped"; fi

# --target cuda: NVRTC compiles without a GPU; running it needs one (KILN_RT_ERR_DEVICE here)
if "$bin/kiln" compile "$work/mlp.kiln" --target cuda -o "$work/mlp-cuda.kart" >"$work/out" 2>&1; then
  ok "compile --target cuda"
  expect "show a CUDA artifact: images" 0 "image sm_90 +cubin" "$bin/kiln" show "$work/mlp-cuda.kart"
  expect "show a CUDA artifact: cuBLASLt steps" 0 "cuBLASLt f32 GEMM 64x100x1000" "$bin/kiln" show "$work/mlp-cuda.kart"
  expect "show a CUDA artifact: no CPU code, no cpu features" 0 "cpu features required: none" \
    "$bin/kiln" show "$work/mlp-cuda.kart"
  expect "--log-placement --target cuda puts the matmuls on cuda:0" 0 "y +matmul +-> cuda:0" \
    "$bin/kiln" compile "$work/mlp.kiln" --target cuda --log-placement
  if ! "$bin/kiln" run "$work/mlp-cuda.kart" --random-inputs 1 >/dev/null 2>&1; then
    expect "a CUDA artifact without a GPU: device error" 1 "no CUDA driver|device" \
      "$bin/kiln" run "$work/mlp-cuda.kart" --random-inputs 1
  fi
else
  grep -q "NVRTC\|nvrtc" "$work/out" && ok "compile --target cuda: NVRTC absent, skipped" || bad "compile --target cuda"
fi
expect "--cuda-arch needs --target cuda" 2 "cuda-arch applies to --target cuda" \
  "$bin/kiln" compile "$work/mlp.kiln" --cuda-arch sm_90 -o "$work/x.kart"
expect "--emit-c is CPU only" 2 "emit-c" "$bin/kiln" compile "$work/mlp.kiln" --target cuda --emit-c "$work"
expect "a bad --cuda-arch" 1 "sm_9x" "$bin/kiln" compile "$work/mlp.kiln" --target cuda --cuda-arch sm_9x -o "$work/x.kart"
nofile "$work/x.kart" "no artifact for a bad --cuda-arch"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
