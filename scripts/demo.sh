#!/usr/bin/env bash
# scripts/demo.sh — Kiln's main job on the built-in demo model: builds the lecture's
# two-layer network in C, saves it, compiles it to a CPU artifact (printing the per-pass
# log and the placement of every node), runs it through the standalone runtime, and
# checks it against the reference interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh build >/dev/null
bin=build/bin
out=$(mktemp -d "${TMPDIR:-/tmp}/kiln-demo.XXXXXX")
trap 'rm -rf "$out"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "the lecture's TF1 programs, in C"
$bin/seed_constants
$bin/seed_placeholder
$bin/seed_device | tail -n 8

step "build the two-layer network y = clamp(x @ w1, min=0) @ w2 (N=64, 1000-100-10) and save it"
$bin/seed_mlp "$out/mlp.kiln"

step "kiln show mlp.kiln"
$bin/kiln show "$out/mlp.kiln" | head -n 20

step "kiln compile: passes, placement, C code, one artifact"
$bin/kiln compile "$out/mlp.kiln" -o "$out/mlp.kart" --print-pass-log --log-placement

step "kiln show mlp.kart"
$bin/kiln show "$out/mlp.kart"

step "reference interpreter (kiln run --target ref) on seeded random input x"
$bin/kiln run "$out/mlp.kiln" --target ref --random-inputs 7 --save-inputs "$out" \
  --output y="$out/y_ref.npy" --print

step "the artifact through libkiln_rt alone (build/bin/deploy)"
$bin/deploy "$out/mlp.kart" --input x="$out/x.npy" --output y="$out/y.npy" --print

step "compiled vs reference"
$bin/kiln compare "$out/y.npy" "$out/y_ref.npy" --tol 1e-5
