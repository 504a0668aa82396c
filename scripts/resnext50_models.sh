# Sourced by speed.sh, profile.sh and memory.sh (from the repository's root): builds the runtime
# (release) and the quantizer, then `resnext50_models LAYOUT...` writes our quantizer's
# resnext50_32x4d int8 (random weights, calibrated on the fixture images) as $tmp/LAYOUT.onnx for
# each LAYOUT of qdq, qdq_ort (QDQ with the residual branch quantized, as onnxruntime prefers)
# and qop (QOperator). Sets E (resnext-edge), py (a Python with onnxruntime) and tmp (removed on
# exit).
py=${RESNEXT_EDGE_PYTHON:-$(scripts/python-venv.sh)}
cargo build -q --release -p resnext-edge
cargo build -q -p resnext-quantize
E=target/release/resnext-edge
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
resnext50_models() {
  local layout
  for layout in "$@"; do
    local extra=()
    case $layout in
      qdq) ;;
      qdq_ort) extra=(--quantize-residual-branch) ;;
      qop) extra=(--format qoperator) ;;
      *) echo "unknown layout $layout" >&2; return 2 ;;
    esac
    target/debug/resnext-quantize quantize --arch resnext50_32x4d --random-weights 0 \
      --calib tests/fixtures/trained/calib -q -o "$tmp/$layout.onnx" "${extra[@]}" 2>/dev/null
  done
}
