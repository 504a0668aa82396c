#!/usr/bin/env bash
# Peak memory of one classification, resnext-edge against onnxruntime, on the three layouts of
# resnext50_32x4d int8 that scripts/speed.sh times (our QDQ, QDQ with the residual branch
# quantized, QOperator): the maximum resident set size of the whole process (GNU time), loading
# the model and classifying one fixture image. onnxruntime runs in Python, through
# scripts/ort_bench.py (one session, one run); the interpreter and numpy count in its figure.
# Needs GNU time (/usr/bin/time, Debian package `time`).
# Usage: scripts/memory.sh   (prints a markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/resnext50_models.sh
source scripts/resnext50_models.sh
resnext50_models qdq qdq_ort qop
img=tests/fixtures/images/astronaut.png
peak() { /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null | tail -1; }
echo "| model layout | resnext-edge classify | onnxruntime (Python) | ratio |"
echo "|---|---|---|---|"
for m in qdq qdq_ort qop; do
  ours=$(peak $E classify "$tmp/$m.onnx" "$img")
  ort=$(peak "$py" scripts/ort_bench.py "$tmp/$m.onnx" --runs 1 --warmup 0)
  python3 -c "a,b=$ours,$ort; print(f'| {\"$m\"} | {a/1024:.0f} MB | {b/1024:.0f} MB | {a/b:.2f}x |')"
done
