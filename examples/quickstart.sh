#!/usr/bin/env bash
# The main job on the bundled example: quantize the example checkpoint (a small ResNeXt trained to
# tell ten photos apart, mmclassification format) to an int8 ONNX model, calibrated on
# examples/data/calib, then classify the sample photos with it. One line per photo, top-3 classes.
# Usage: examples/quickstart.sh [OUT.onnx]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/example.int8.onnx}
mkdir -p "$(dirname "$out")"
# Both binaries come from one cargo invocation, so that their dependencies (tract above all)
# are resolved and compiled once: two `cargo run -p` would resolve features per package and
# compile tract twice. RESNEXT_EDGE_BIN_DIR: run binaries already built there instead (CI
# reuses the test build's).
bin=${RESNEXT_EDGE_BIN_DIR:-}
if [ -z "$bin" ]; then
  cargo build -p resnext-quantize -p resnext-edge --bins
  bin=${CARGO_TARGET_DIR:-target}/debug
fi
quantize=("$bin/resnext-quantize")
edge=("$bin/resnext-edge")
"${quantize[@]}" quantize examples/data/resnext_tiny_trained.pth --calib examples/data/calib -o "$out"
"${edge[@]}" classify "$out" examples/data/images --top-k 3
