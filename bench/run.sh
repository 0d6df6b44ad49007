#!/usr/bin/env bash
# bench/run.sh — the side-by-side benchmark of issue 6 (not a timed test; ctest and CI never
# run it): Kiln vs a hand-written OpenBLAS program vs ONNX Runtime vs PyTorch eager, 1 and 2
# threads, one run, one table. Sets up what it needs on a fresh Debian machine (idempotent):
# python3-torch from Debian (as root), a venv with pip's onnxruntime/onnx/numpy, a Kiln build.
#
#   bench/run.sh                 full run (a few minutes)
#   bench/run.sh --quick         a tenth of the iterations (a smoke run)
#   bench/run.sh --only chain50  some rows (mlp_b1 mlp_b8 mlp_b32 mlp_b256 lecture chain50
#                                resnet18 mobilenetv2)
# Environment: KILN_BUILD_DIR (default build), BENCH_OUT (default build/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${KILN_BUILD_DIR:-build}"
OUT="${BENCH_OUT:-build/bench}"
VENV=build/bench-venv
SYS_PY=/usr/bin/python3 # Debian's Python: the one that sees Debian's python3-torch
mkdir -p "$OUT"

say() { echo "run.sh: $*" >&2; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# 1. Debian packages: python3-venv for the venv, python3-torch for the PyTorch column.
need=()
installed python3-venv || need+=(python3-venv)
if ! installed python3-torch; then
  if apt-cache policy python3-torch 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    need+=(python3-torch)
  else
    say "python3-torch has no Debian candidate here; trying pip's CPU wheel later"
  fi
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing ${need[*]} (python3-torch is large)"
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
      >/dev/null || say "apt-get install ${need[*]} failed; those columns may say n/a"
  else
    say "not root: cannot install ${need[*]}; those columns may say n/a"
  fi
fi

#    (python3-torchvision for the ResNet-18 / MobileNetV2 rows.)
installed python3-torchvision || [ "$(id -u)" != 0 ] ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    python3-torchvision >/dev/null || say "no python3-torchvision: no ResNet-18/MobileNetV2 rows"

# 2. The venv: pip's onnxruntime and onnx. numpy < 2 because Debian's torch 1.13 was built
#    against NumPy 1.x (with NumPy 2 torch.from_numpy fails: "Numpy is not available").
if [ ! -x "$VENV/bin/python" ]; then
  "$SYS_PY" -m venv --system-site-packages "$VENV"
fi
if ! "$VENV/bin/python" -c 'import onnxruntime, onnx, numpy' 2>/dev/null ||
   [ "$("$VENV/bin/python" -c 'import numpy; print(numpy.__version__.split(".")[0])')" != 1 ]; then
  say "pip install onnxruntime onnx 'numpy<2' into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check onnxruntime onnx 'numpy<2' 2>&1 |
    grep -v "ml-dtypes .* requires numpy>=2\|dependency resolver\|^$" >&2 || true
fi
if ! "$VENV/bin/python" -c 'import torch, numpy; torch.from_numpy(numpy.zeros(1))' 2>/dev/null; then
  say "PyTorch not usable from Debian; trying pip's torch wheel (benchmark only)"
  "$VENV/bin/pip" install -q --disable-pip-version-check torch 'numpy<2' >&2 ||
    say "no PyTorch: its column will say n/a with the reason"
fi

# 3. Kiln (RelWithDebInfo) with bench_hand_tuned.
scripts/build.sh "$BUILD" >/dev/null
KILN="$BUILD/bin/kiln"
HAND="$BUILD/bin/bench_hand_tuned"

# 4. The models: one seeded set of weights -> .npy, Kiln text IR, ONNX; then kiln compile.
"$VENV/bin/python" bench/models/gen_models.py "$OUT/models" >&2
for d in "$OUT"/models/*/; do
  [ -f "$d/model.ktxt" ] || continue
  "$KILN" compile "$d/model.ktxt" -o "$d/model.kart" >/dev/null
done
#    ResNet-18 and MobileNetV2 (batch 1, 3x224x224): exported from torchvision with seeded
#    weights by the tests' exporter (ONNX Runtime's output is the reference), imported
#    with `kiln import`; a failure leaves compile_error.txt and the Kiln column says n/a.
if "$VENV/bin/python" tests/models/export_models.py "$OUT/convnets" \
     --models resnet18,mobilenetv2 --save-torch >&2; then
  for m in resnet18 mobilenetv2; do
    d="$OUT/models/$m" c="$OUT/convnets/$m"
    mkdir -p "$d"
    ln -sf "$(realpath "$c.onnx")" "$d/model.onnx"
    ln -sf "$(realpath "$c.pt")" "$d/model.pt"
    cp "$c.input.npy" "$d/x.npy" && cp "$c.ort.npy" "$d/ref.npy"
    echo "{\"kind\": \"torchvision\", \"arch\": \"${m/mobilenetv2/mobilenet_v2}\"}" >"$d/spec.json"
    rm -f "$d/compile_error.txt" "$d/model.kart"
    { "$KILN" import "$d/model.onnx" -o "$d/model.kiln" &&
      "$KILN" compile "$d/model.kiln" -o "$d/model.kart"; } >/dev/null 2>"$d/compile.log" ||
      { cp "$d/compile.log" "$d/compile_error.txt"; say "$m: Kiln: $(tail -1 "$d/compile.log")"; }
  done
else
  say "exporting ResNet-18/MobileNetV2 failed (torchvision?); rows resnet18, mobilenetv2 left out"
  rm -rf "$OUT/models/resnet18" "$OUT/models/mobilenetv2"
fi

# 5. One run: check outputs agree, time everything, print the table.
"$VENV/bin/python" bench/side_by_side.py --kiln "$KILN" --hand "$HAND" --models "$OUT/models" \
  "$@" | tee "$OUT/last_run.txt"
