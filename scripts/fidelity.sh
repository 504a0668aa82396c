#!/usr/bin/env bash
# The fidelity table of the README: our quantizer (each method) and onnxruntime's quantize_static
# (each of its methods) on the same float model and the same 32 calibration images of the
# trained example model, evaluated on its 200 held-out images by `resnext-quantize evaluate`
# with `--runtime stock`: every model, ours and onnxruntime's, run by the same engine as ONNX
# defines its operators, so that the table compares quantizers, not runtimes.
# Usage: scripts/fidelity.sh  (prints a markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${RESNEXT_EDGE_PYTHON:-$(scripts/python-venv.sh)}
cargo build -q -p resnext-quantize
Q=target/debug/resnext-quantize
T=tests/fixtures/trained
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$Q export $T/mmcls.pth -o "$tmp/float.onnx" 2>/dev/null
$Q preprocess $T/calib -o "$tmp/calib.npy" 2>/dev/null
row() { # quantizer, method, model
  $Q evaluate --json -q --runtime stock --reference "$tmp/float.onnx" --model "$3" --images $T/eval |
    python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"| $1 | $2 | {r['agreement']*100:.1f} % | {r['sqnr_db']:.1f} dB | {r['sqnr_db_median']:.1f} dB | {r['model_accuracy']*100:.1f} % |\")"
}
echo "| quantizer | layout | method | top-1 agreement | logit SQNR | median per image | top-1 accuracy (float: 88.0 %) |"
echo "|---|---|---|---|---|---|---|"
for m in mse minmax percentile entropy; do
  $Q quantize $T/mmcls.pth --calib $T/calib --method $m -q -o "$tmp/ours_$m.onnx" 2>/dev/null
  row "resnext-quantize | QDQ u8" "$m" "$tmp/ours_$m.onnx"
done
for a in u8 s8; do
  $Q quantize $T/mmcls.pth --calib $T/calib --format qoperator --activations $a -q -o "$tmp/ours_qop_$a.onnx" 2>/dev/null
  row "resnext-quantize | QOperator $a" mse "$tmp/ours_qop_$a.onnx"
done
for m in minmax percentile entropy; do
  "$py" scripts/ort_quantize.py "$tmp/float.onnx" --inputs "$tmp/calib.npy" --method $m -o "$tmp/ort_$m.onnx" >/dev/null 2>&1
  row "onnxruntime quantize_static | QDQ u8" "$m" "$tmp/ort_$m.onnx"
done
"$py" scripts/ort_quantize.py "$tmp/float.onnx" --inputs "$tmp/calib.npy" --format qoperator -o "$tmp/ort_qop.onnx" >/dev/null 2>&1
row "onnxruntime quantize_static | QOperator u8" minmax "$tmp/ort_qop.onnx"

echo
echo "Each technique, against the default (QDQ u8, mse, headroom 1.5, fused residual branch):"
echo
echo "| quantizer | change | method | top-1 agreement | logit SQNR | median per image | top-1 accuracy |"
echo "|---|---|---|---|---|---|---|"
technique() { # label, flags...
  local label=$1; shift
  $Q quantize $T/mmcls.pth --calib $T/calib -q -o "$tmp/t.onnx" "$@" 2>/dev/null
  row "resnext-quantize | $label" mse "$tmp/t.onnx"
}
technique "(default)"
technique "no headroom (--headroom 1)" --headroom 1
technique "headroom 1.25" --headroom 1.25
technique "headroom 2" --headroom 2
technique "residual branch quantized (--quantize-residual-branch)" --quantize-residual-branch
technique "neither (as onnxruntime does)" --headroom 1 --quantize-residual-branch
technique "--bias-correction" --bias-correction
technique "--equalize" --equalize
technique "--keep-float 4" --keep-float 4
