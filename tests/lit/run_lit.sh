#!/usr/bin/env bash
# run_lit.sh BIN_DIR [FILE.test|DIR]... — Kiln's small lit/FileCheck: each .test file holds
# an input graph in the text form, RUN lines (kiln commands over it) and CHECK lines
# matched in order against what the commands printed. Format: tests/lit/README.md.
# Exit 0 when every test passes (an XFAIL test passes by failing).
set -u
bin="${1:?usage: run_lit.sh BIN_DIR [FILE.test|DIR]...}"
shift
[ $# -gt 0 ] || set -- "$(cd "$(dirname "$0")" && pwd)"
kiln="$bin/kiln"
[ -x "$kiln" ] || { echo "run_lit: $kiln is not an executable" >&2; exit 2; }
scratch=$(mktemp -d "${TMPDIR:-/tmp}/kiln-lit.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

why=""  # the reason the current test failed
fail_with() { why="$1"; return 1; }

# A CHECK pattern as an ERE: literal text, with {{...}} parts taken as regexes.
pattern_to_ere() {
  local p="$1" out="" lit
  while [[ "$p" == *"{{"*"}}"* ]]; do
    lit="${p%%\{\{*}"
    p="${p#*\{\{}"
    out+=$(printf '%s' "$lit" | sed 's/[][\.*^$+?(){}|/]/\\&/g')
    out+="(${p%%\}\}*})"
    p="${p#*\}\}}"
  done
  out+=$(printf '%s' "$p" | sed 's/[][\.*^$+?(){}|/]/\\&/g')
  printf '%s' "$out"
}

trim() { local s="$1"; s="${s#"${s%%[![:space:]]*}"}"; printf '%s' "${s%"${s##*[![:space:]]}"}"; }

# Runs one RUN line; appends what it printed to $out. Substitutes %s (input) and %t
# (a scratch directory of this test).
run_line() {
  local cmd="$1" dir="$2" out="$3" want_fail=0 tool rc
  cmd="${cmd//%s/$dir/input.ktxt}"
  cmd="${cmd//%t/$dir/t}"
  local -a words
  read -r -a words <<<"$cmd"
  if [ "${words[0]:-}" = "not" ]; then want_fail=1; words=("${words[@]:1}"); fi
  tool="${words[0]:-}"
  local -a args=("${words[@]:1}")
  case "$tool" in
  opt)
    rm -f "$dir/out.kiln"
    "$kiln" opt "$dir/input.ktxt" -o "$dir/out.kiln" "${args[@]}" >"$dir/stdout" 2>"$dir/stderr"
    rc=$?
    cat "$dir/stdout" "$dir/stderr" >>"$out"
    if [ $rc = 0 ] && [ $want_fail = 0 ]; then
      echo "// ----- final graph -----" >>"$out"
      "$kiln" show "$dir/out.kiln" --format text --full-constants >>"$out" 2>&1 ||
        fail_with "kiln show of the optimized graph failed" || return 1
    fi ;;
  show | run | compile)
    "$kiln" "$tool" "$dir/input.ktxt" "${args[@]}" >"$dir/stdout" 2>"$dir/stderr"
    rc=$?
    cat "$dir/stdout" "$dir/stderr" >>"$out" ;;
  *) fail_with "RUN: unknown tool '$tool' (opt, show, run or compile, optionally after 'not')"
     return 1 ;;
  esac
  if [ $want_fail = 1 ] && [ $rc = 0 ]; then fail_with "RUN: '$1' succeeded but 'not' expects failure"; return 1; fi
  if [ $want_fail = 0 ] && [ $rc != 0 ]; then fail_with "RUN: '$1' exited with $rc"; return 1; fi
  return 0
}

# Matches the directives in $checks (lines "KIND<TAB>LINENO<TAB>PATTERN") against $out.
match_checks() {
  local out="$1" checks="$2" kind lineno pat re i
  local -a lines nots=()
  mapfile -t lines <"$out"
  local pos=0 last=-1 n=${#lines[@]}
  # CHECK-NOT patterns wait for the next positive match; they must not appear in between.
  check_nots() { # from to
    local nd np nre j
    for nd in "${nots[@]}"; do
      np="${nd#*$'\t'}"; nre=$(pattern_to_ere "$np")
      for ((j = $1; j < $2; j++)); do
        if [[ "${lines[j]}" =~ $nre ]]; then
          fail_with "line ${nd%%$'\t'*}: CHECK-NOT: '$np' found at output line $((j + 1)): ${lines[j]}"
          return 1
        fi
      done
    done
    nots=()
  }
  while IFS=$'\t' read -r kind lineno pat; do
    [ -n "$kind" ] || continue
    re=$(pattern_to_ere "$pat")
    case "$kind" in
    CHECK-NOT) nots+=("$lineno"$'\t'"$pat") ;;
    CHECK)
      for ((i = pos; i < n; i++)); do [[ "${lines[i]}" =~ $re ]] && break; done
      if ((i >= n)); then
        fail_with "line $lineno: CHECK: '$pat' not found after output line $pos"; return 1
      fi
      check_nots "$pos" "$i" || return 1
      pos=$((i + 1)); last=$i ;;
    CHECK-NEXT)
      i=$((last + 1))
      if ((last < 0 || i >= n)) || ! [[ "${lines[i]}" =~ $re ]]; then
        fail_with "line $lineno: CHECK-NEXT: '$pat' is not on the line after the previous match (output line $((i + 1)): ${lines[i]:-<none>})"
        return 1
      fi
      check_nots "$pos" "$i" || return 1
      pos=$((i + 1)); last=$i ;;
    esac
  done <"$checks"
  check_nots "$pos" "$n" || return 1
  return 0
}

# Runs one .test file; 0 on pass.
run_test() {
  local file="$1" dir="$2" line lineno=0 body kind
  local -a runs=()
  mkdir -p "$dir/t"
  : >"$dir/input.ktxt"; : >"$dir/checks"; : >"$dir/output"
  while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    local t; t=$(trim "$line")
    if [[ "$t" != "#"* ]]; then printf '%s\n' "$line" >>"$dir/input.ktxt"; continue; fi
    body=$(trim "${t#\#}")
    case "$body" in
    RUN:*) runs+=("$(trim "${body#RUN:}")") ;;
    CHECK:* | CHECK-NEXT:* | CHECK-NOT:*)
      kind="${body%%:*}"
      printf '%s\t%s\t%s\n' "$kind" "$lineno" "$(trim "${body#*:}")" >>"$dir/checks" ;;
    XFAIL*) ;;
    *)
      if [[ "$body" =~ ^CHECK(-[A-Z]+)?: ]]; then
        fail_with "line $lineno: unknown directive '${body%%:*}'"; return 1
      fi ;;
    esac
  done <"$file"
  [ ${#runs[@]} -gt 0 ] || { fail_with "no RUN line"; return 1; }
  [ -s "$dir/checks" ] || { fail_with "no CHECK line"; return 1; }
  local r
  for r in "${runs[@]}"; do run_line "$r" "$dir" "$dir/output" || return 1; done
  match_checks "$dir/output" "$dir/checks"
}

files=()
for a in "$@"; do
  if [ -d "$a" ]; then while IFS= read -r f; do files+=("$f"); done < <(find "$a" -name '*.test' -type f | LC_ALL=C sort)
  else files+=("$a"); fi
done
pass=0; failed=0; k=0
for f in "${files[@]}"; do
  k=$((k + 1)); dir="$scratch/$k"; mkdir -p "$dir"; why=""
  # "# XFAIL: TEXT": expected to fail, with TEXT in the reason
  xf=0; xwhy=$(sed -n 's/^[[:space:]]*#[[:space:]]*XFAIL:\{0,1\}[[:space:]]*//p' "$f" | head -1)
  grep -Eq '^[[:space:]]*#[[:space:]]*XFAIL' "$f" && xf=1
  if run_test "$f" "$dir"; then ok=1; else ok=0; fi
  if [ $xf = 1 ] && [ $ok = 0 ] && [[ "$why" == *"$xwhy"* ]]; then
    pass=$((pass + 1)); echo "XFAIL: $f ($why)"
  elif [ $xf = 1 ] && [ $ok = 0 ]; then
    failed=$((failed + 1)); echo "FAIL: $f (failed, but not with '$xwhy': $why)"
  elif [ $xf = 1 ]; then
    failed=$((failed + 1)); echo "FAIL: $f (marked XFAIL but passed)"
  elif [ $ok = 1 ]; then
    pass=$((pass + 1)); echo "PASS: $f"
  else
    failed=$((failed + 1)); echo "FAIL: $f"; echo "  $why"
    echo "  --- output ---"; sed 's/^/  | /' "$dir/output" | head -60
  fi
done
echo "lit: $pass passed, $failed failed (${#files[@]} tests)"
[ $failed = 0 ] && [ ${#files[@]} -gt 0 ]
