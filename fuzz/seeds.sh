#!/usr/bin/env bash
# Seed corpora for the fuzz targets, made from the project's fixtures:
#   checkpoint   small torch zip / legacy / mmcls / safetensors files (make_checkpoints.py)
#   onnx_model   a micro ResNeXt (one block per stage) as float, QDQ and QOperator ONNX
#   image        the fixture photos shrunk to 48 px (JPEG, progressive JPEG, PNG, grey PNG)
#   mjpeg_split  MJPEG streams of those frames, with garbage and a cut frame
#   raw_frames   a few raw frames
# Usage: fuzz/seeds.sh [CORPUS_DIR]   (default fuzz/corpus). Needs python3, ffmpeg and the
# debug build of resnext-quantize (cargo build -p resnext-quantize), or RESNEXT_EDGE_BIN_DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/fuzz/corpus}
bin=${RESNEXT_EDGE_BIN_DIR:-$root/target/debug}
mkdir -p "$out"/{checkpoint,onnx_model,image,mjpeg_split,raw_frames}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 "$root/fuzz/make_checkpoints.py" "$out/checkpoint"

q() { ffmpeg -loglevel error -y "$@"; }
for img in chelsea.jpg coffee.jpg rocket.jpg coins.png; do
  src=$root/tests/fixtures/images/$img
  base=${img%.*}
  q -i "$src" -vf scale=48:-2 "$out/image/$base.jpg"
  q -i "$src" -vf scale=40:-2 "$out/image/$base.png"
done
q -i "$root/tests/fixtures/images/coffee.jpg" -vf scale=32:-2,format=gray "$out/image/coffee_grey.png"
q -i "$root/tests/fixtures/images/rocket.jpg" -vf scale=32:-2 -pix_fmt yuvj444p "$out/image/rocket_444.jpg"

cat "$out/image/chelsea.jpg" "$out/image/coffee.jpg" > "$out/mjpeg_split/two_frames.mjpeg"
{ printf 'garbage'; cat "$out/image/rocket.jpg"; head -c 300 "$out/image/chelsea.jpg"; cat "$out/image/coffee.jpg"; } \
  > "$out/mjpeg_split/garbage_and_cut.mjpeg"
q -f lavfi -i testsrc=size=32x24:rate=5 -frames:v 3 -f mjpeg "$out/mjpeg_split/testsrc.mjpeg"

q -f lavfi -i testsrc=size=8x6:rate=5 -frames:v 3 -f rawvideo -pix_fmt rgb24 "$work/raw"
{ printf '\x07\x05'; cat "$work/raw"; } > "$out/raw_frames/8x6x3.raw"
{ printf '\x03\x03'; head -c 100 "$work/raw"; } > "$out/raw_frames/4x4_cut.raw"

cat > "$work/micro.json" <<'JSON'
{"layers": [1, 1, 1, 1], "groups": 2, "width_per_group": 2, "base_channels": 4, "stem_channels": 4, "num_classes": 3}
JSON
mkdir -p "$work/calib"
cp "$out/image/"*.jpg "$work/calib/"
"$bin/resnext-quantize" export --random-weights 1 --config "$work/micro.json" -o "$out/onnx_model/micro_float.onnx"
for format in qdq qoperator; do
  "$bin/resnext-quantize" quantize --random-weights 1 --config "$work/micro.json" \
    --calib "$work/calib" --format "$format" -o "$out/onnx_model/micro_$format.onnx"
done
ls -l "$out"/*
