#!/usr/bin/env bash
# The speed table of the README: resnext50_32x4d int8 from our quantizer (random weights,
# calibrated on the fixture images), batch 1, `resnext-edge bench` with the native kernels and
# with stock tract, against onnxruntime on the best of three layouts of the same network (our QDQ,
# our QDQ with the residual branch quantized as onnxruntime prefers, our QOperator), at 1 and 2
# threads, all in one run on this machine, in alternating rounds (each side keeps its best round's
# median, so that a slow spell of a shared host does not fall on one side only).
# Usage: scripts/speed.sh [RUNS] [ROUNDS]   (prints a markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
rounds=${2:-3}
# shellcheck source=scripts/resnext50_models.sh
source scripts/resnext50_models.sh
resnext50_models qdq qdq_ort qop
med() { python3 -c "import json,sys; print(f\"{json.load(sys.stdin)['median_ms']:.1f}\")"; }
lo() { python3 -c "import sys; print(min(float(x) for x in sys.argv[1:]))" "$@"; }
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "resnext50_32x4d int8, batch 1, median of $runs runs, best of $rounds alternating rounds; $cpu, $(nproc) cores; kernels: $($E bench "$tmp/qdq.onnx" --runs 1 --warmup 0 --json | python3 -c "import json,sys; print(json.load(sys.stdin)['kernels'])")"
echo
echo "| threads | resnext-edge native | stock tract | onnxruntime (best layout) | native / onnxruntime | native / stock |"
echo "|---|---|---|---|---|---|"
# Stock tract runs one thread whatever --threads says: one figure, its best round of 5 runs.
stocks=""
for _ in $(seq "$rounds"); do
  stocks="$stocks $($E bench "$tmp/qdq.onnx" --kernels stock --runs 5 --json | med)"
done
stock=$(lo $stocks)
for t in 1 2; do
  # The machine's speed drifts (a shared host): each round times both runtimes back to back,
  # and each keeps its best round.
  natives=""
  orts=""
  for _ in $(seq "$rounds"); do
    natives="$natives $($E bench "$tmp/qdq.onnx" --threads $t --runs "$runs" --json | med)"
    for m in qdq qdq_ort qop; do
      orts="$orts $("$py" scripts/ort_bench.py "$tmp/$m.onnx" --threads $t --runs "$runs" | med)"
    done
  done
  native=$(lo $natives)
  best=$(lo $orts)
  python3 -c "n,s,o=$native,$stock,$best; print(f'| {$t} | {n:.1f} ms | {s:.1f} ms | {o:.1f} ms | {n/o:.2f}x | {n/s:.2f}x |')"
done
