#!/usr/bin/env bash
# tests/models/setup.sh VENV — installs what test_models needs, idempotently and quickly
# when already done: Debian's CPU builds of python3-torch and python3-torchvision (as
# root; they live in the system Python /usr/bin/python3), python3-venv, and a venv made
# with `/usr/bin/python3 -m venv --system-site-packages VENV` holding pip's onnxruntime.
# Never fails the caller: it prints what is missing and exits 0; the tests then skip
# (exit 77) with that reason. Prints VENV/bin/python on stdout when it is usable.
set -uo pipefail
venv="${1:?usage: setup.sh VENV}"
SYS_PY=/usr/bin/python3 # Debian's Python: the one that sees python3-torch
say() { echo "models/setup.sh: $*" >&2; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

need=()
for p in python3-venv python3-torch python3-torchvision; do installed "$p" || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${need[*]} (python3-torch is large, once)"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
      >/dev/null 2>&1 || say "apt-get install ${need[*]} failed; test_models will skip"
  else
    say "missing Debian packages ${need[*]} (not root: apt-get install them); test_models will skip"
  fi
fi

works() { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c \
  'import numpy, onnxruntime, torch, torchvision; torch.from_numpy(numpy.zeros(1))' 2>/dev/null; }
if ! works; then
  if [ ! -x "$venv/bin/python" ]; then
    "$SYS_PY" -m venv --system-site-packages "$venv" 2>/dev/null ||
      { say "could not make the venv $venv (python3-venv?); test_models will skip"; exit 0; }
  fi
  if ! "$venv/bin/python" -c 'import onnxruntime' 2>/dev/null; then
    say "pip install onnxruntime into $venv"
    # numpy<2: Debian's torch 1.13 is built against NumPy 1.x (Debian's numpy is kept
    # when it satisfies onnxruntime; this only stops pip from upgrading it to 2.x).
    "$venv/bin/pip" install -q --disable-pip-version-check onnxruntime 'numpy<2' >&2 ||
      say "pip install onnxruntime failed (offline?); test_models will skip"
  fi
fi
if works; then
  echo "$venv/bin/python"
else
  say "$venv cannot import numpy, onnxruntime, torch and torchvision; test_models will skip"
fi
exit 0
