#!/usr/bin/env bash
# Calibration and evaluation at scale, measured and checked: time and peak memory of
# `resnext-quantize quantize` (random weights of a preset) for a growing number of calibration
# images on 1 and 2 threads, and `evaluate` of the example model on 1,000 images on 1 and 2
# threads. The image sets are made from the bundled photos (scripts/scale_sets.py: crops, flips,
# colour jitter). Fails if
#   * the models of 1 and 2 threads differ (byte for byte),
#   * peak memory with the most images is more than 10 % above that with the fewest (same threads),
#   * 2 threads are not 1.7x faster than 1 at the largest count, or for evaluate (when the
#     machine has 2 cores or more).
# Usage: scripts/calib_scale.sh [--arch NAME] [--counts "32 256 1000"] [--eval-count N]
#        (prints a markdown table; release build; RESNEXT_EDGE_PYTHON: a python with Pillow)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=resnext50_32x4d
counts="32 256 1000"
eval_count=1000
while [ $# -gt 0 ]; do
  case $1 in
    --arch) arch=$2; shift ;;
    --counts) counts=$2; shift ;;
    --eval-count) eval_count=$2; shift ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
  esac
  shift
done
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
py=${RESNEXT_EDGE_PYTHON:-$(scripts/python-venv.sh)}
cargo build -q --release -p resnext-quantize
Q=target/release/resnext-quantize
T=tests/fixtures/trained
max=$(echo "$counts" | tr ' ' '\n' | sort -n | tail -1)
min=$(echo "$counts" | tr ' ' '\n' | sort -n | head -1)
sets=target/scale-sets
if [ ! -f "$sets/done-$max-$eval_count" ]; then
  rm -rf "$sets"
  "$py" scripts/scale_sets.py --calib "$sets/calib" --calib-count "$max" --eval "$sets/eval" --eval-count "$eval_count"
  touch "$sets/done-$max-$eval_count"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cores=$(nproc)
fail=0
calc() { awk "BEGIN { print ($1) }"; }
measure() { # output file, command...: prints "seconds kilobytes"
  local out=$1; shift
  /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" > "$out" 2> "$tmp/stderr" ||
    { cat "$tmp/stderr" >&2; return 1; }
  cat "$tmp/time"
}
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $cores cores"
echo
echo "| $arch, calibration images | 1 thread: time | 1 thread: peak memory | 2 threads: time | 2 threads: peak memory | speed-up |"
echo "|---|---|---|---|---|---|"
declare -A secs mem
for n in $counts; do
  for j in 1 2; do
    read -r s m < <(measure /dev/null $Q quantize --arch "$arch" --random-weights 0 \
      --calib "$sets/calib" --calib-count "$n" --jobs $j -q -o "$tmp/m$j.onnx")
    secs[$n,$j]=$s; mem[$n,$j]=$m
  done
  if ! cmp -s "$tmp/m1.onnx" "$tmp/m2.onnx"; then
    echo "FAIL: $n images: the models of 1 and 2 threads differ" >&2; fail=1
  fi
  printf '| %s | %.1f s | %d MB | %.1f s | %d MB | %.2fx |\n' "$n" "${secs[$n,1]}" $((mem[$n,1] / 1024)) \
    "${secs[$n,2]}" $((mem[$n,2] / 1024)) "$(calc "${secs[$n,1]} / ${secs[$n,2]}")"
done
for j in 1 2; do
  if [ "$(calc "${mem[$max,$j]} > 1.10 * ${mem[$min,$j]}")" = 1 ]; then
    echo "FAIL: $j thread(s): peak memory ${mem[$max,$j]} KB with $max images, ${mem[$min,$j]} KB with $min" >&2; fail=1
  fi
done
if [ "$cores" -ge 2 ] && [ "$(calc "${secs[$max,1]} < 1.7 * ${secs[$max,2]}")" = 1 ]; then
  echo "FAIL: calibration on $max images: 2 threads only $(calc "${secs[$max,1]} / ${secs[$max,2]}")x faster" >&2; fail=1
fi

$Q export $T/mmcls.pth -o "$tmp/float.onnx" 2>/dev/null
$Q quantize $T/mmcls.pth --calib $T/calib -q -o "$tmp/int8.onnx" 2>/dev/null
echo
echo "| evaluate, example model, $eval_count images | time | images/s | peak memory |"
echo "|---|---|---|---|"
declare -A ev
for j in 1 2; do
  read -r s m < <(measure "$tmp/e$j.json" $Q evaluate --json -q --jobs $j --reference "$tmp/float.onnx" \
    --model "$tmp/int8.onnx" --images "$sets/eval")
  ev[$j]=$s
  printf '| %d thread(s) | %.1f s | %.0f | %d MB |\n' $j "$s" \
    "$(python3 -c "import json; print(json.load(open('$tmp/e$j.json'))['images_per_s'])")" $((m / 1024))
done
python3 - "$tmp/e1.json" "$tmp/e2.json" <<'EOF' || fail=1
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
for r in (a, b):
    r.pop("images_per_s"); r.pop("jobs")
if a != b:
    sys.exit("FAIL: the evaluate reports of 1 and 2 threads differ")
EOF
if [ "$cores" -ge 2 ] && [ "$(calc "${ev[1]} < 1.7 * ${ev[2]}")" = 1 ]; then
  echo "FAIL: evaluate: 2 threads only $(calc "${ev[1]} / ${ev[2]}")x faster" >&2; fail=1
fi
exit $fail
