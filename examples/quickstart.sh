#!/usr/bin/env bash
# The main job on the bundled example: turn the example checkpoint (a small ResNeXt trained to
# tell ten photos apart, mmclassification format) into an ONNX model, then classify the sample
# photos with it. Output: one line per photo with its top-3 classes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/example.onnx}
mkdir -p "$(dirname "$out")"
cargo run -q -p resnext-quantize -- export examples/data/resnext_tiny_trained.pth -o "$out"
cargo run -q -p resnext-edge -- classify "$out" examples/data/images --top-k 3
