#!/usr/bin/env bash
# Creates (once) the Python environment with onnxruntime that the tests use as the peer runtime,
# and prints the path of its interpreter. Usage: scripts/python-venv.sh [VENV_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$here/.venv}
if ! "$venv/bin/python" -c "import onnxruntime, onnx, numpy, PIL" >/dev/null 2>&1; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check onnxruntime onnx numpy pillow >&2
fi
echo "$venv/bin/python"
