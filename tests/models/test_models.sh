#!/usr/bin/env bash
# tests/models/test_models.sh BUILD_DIR WORKDIR MODELS REF_MODELS — ctest's entry for
# test_models: finds a Python that has torch, torchvision and onnxruntime and runs
# run_models.py with it; exits 77 (ctest: skipped) with the reason when there is none.
# The Python: $KILN_MODELS_PYTHON, else BUILD_DIR/.venv-models, else build/.venv-models
# of the source tree (scripts/test.sh makes that one with tests/models/setup.sh).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$1" work="$2" models="$3" ref="${4:-}"
py=""
for c in "${KILN_MODELS_PYTHON:-}" "$build/.venv-models/bin/python" \
         "$here/../../build/.venv-models/bin/python"; do
  if [ -n "$c" ] && [ -x "$c" ]; then py="$c"; break; fi
done
if [ -z "$py" ]; then
  echo "test_models: SKIP: no Python with torch+onnxruntime (set KILN_MODELS_PYTHON, or run" \
       "tests/models/setup.sh $build/.venv-models)"
  exit 77
fi
exec "$py" "$here/run_models.py" --kiln "$build/bin/kiln" --dir "$work" --models "$models" \
  --ref "$ref"
