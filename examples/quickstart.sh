#!/usr/bin/env bash
# The main job on the bundled example: quantize the example checkpoint (a small ResNeXt trained to
# tell ten photos apart, mmclassification format) to an int8 ONNX model, calibrated on
# examples/data/calib, then classify the sample photos with it. One line per photo, top-3 classes.
# Usage: examples/quickstart.sh [OUT.onnx]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/example.int8.onnx}
mkdir -p "$(dirname "$out")"
# RESNEXT_EDGE_BIN_DIR: run binaries already built there (CI reuses the test build's) instead of
# building with cargo.
if [ -n "${RESNEXT_EDGE_BIN_DIR:-}" ]; then
  quantize=("$RESNEXT_EDGE_BIN_DIR/resnext-quantize")
  edge=("$RESNEXT_EDGE_BIN_DIR/resnext-edge")
else
  quantize=(cargo run -q -p resnext-quantize --)
  edge=(cargo run -q -p resnext-edge --)
fi
"${quantize[@]}" quantize examples/data/resnext_tiny_trained.pth --calib examples/data/calib -o "$out"
"${edge[@]}" classify "$out" examples/data/images --top-k 3
