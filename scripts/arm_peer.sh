#!/usr/bin/env bash
# ResNeXt-50 on the Raspberry Pi cores against the peer a Pi owner would pick: resnext-edge,
# onnxruntime's own aarch64 build and stock tract, int8, one thread, per inference, counted under
# qemu-user (scripts/qemu_count.py) and timed by llvm-mca's model of each core: Cortex-A72 (Pi 4)
# and Neoverse N1 for the Cortex-A76 (Pi 5; the same core, and LLVM's A76 model is the A57's).
# Prints a markdown table, then where our cycles go, per function.
#
# Usage: scripts/arm_peer.sh [--cores a72,a76] [--no-stock] [--threads N] [--json FILE]
#   --cores     which cores (default both)
#   --no-stock  leave out stock tract (its float convolutions take minutes under qemu)
#   --threads   also count ours with N threads, per guest thread (the work split of a board's
#               cores; per-thread counts are exact, the cycle model is not run on them)
#   --json      also write every count to FILE
#
# The models, in target/arm-peer/: resnext50_32x4d with `--random-weights 0`; ours = our
# quantizer's default (QDQ, calibrated on tests/fixtures/trained/calib); onnxruntime's = its
# `quantize_static` QDQ u8, per-channel int8 weights (scripts/ort_quantize.py) of the same float
# weights on the same images. Per inference = (3 runs - 1 run) / 2, so that loading drops out;
# model load = the 1-run count minus one inference. Ours runs the board builds (targets/boards:
# rpi4 tuned for the A72, rpi5 for the A76) with symbols kept, onnxruntime 1.32 runs in Debian's
# arm64 Python (scripts/arm64_onnxruntime.sh), each with its own /proc/cpuinfo of the core.
# Needs: the cross compilers, qemu-user, llvm-19 (llvm-mca), the Python venv of the tests
# (scripts/python-venv.sh), apt for the arm64 Python. A first run builds tract for aarch64 twice
# (about 10 minutes on 2 cores); later runs take about 10 minutes of counting with stock tract.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
cores=a72,a76; stock=1; threads=; json=
while [ $# -gt 0 ]; do
  case $1 in
    --cores) [ $# -ge 2 ] || usage; cores=$2; shift ;;
    --no-stock) stock=0 ;;
    --threads) [ $# -ge 2 ] || usage; threads=$2; shift ;;
    --json) [ $# -ge 2 ] || usage; json=$2; shift ;;
    *) usage ;;
  esac
  shift
done
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
out=target/arm-peer
mkdir -p "$out"
py=${RESNEXT_EDGE_PYTHON:-$(scripts/python-venv.sh)}
say() { echo "arm_peer: $*" >&2; }

# The models (made once; delete target/arm-peer to make them again).
if [ ! -f "$out/ort.onnx" ]; then
  say "models: resnext50_32x4d, random weights 0: ours, float, onnxruntime's"
  cargo build -q -p resnext-quantize
  q=target/debug/resnext-quantize
  $q quantize --arch resnext50_32x4d --random-weights 0 --calib tests/fixtures/trained/calib -q \
    -o "$out/ours.onnx"
  $q export --arch resnext50_32x4d --random-weights 0 -o "$out/float.onnx" 2>/dev/null
  $q preprocess tests/fixtures/trained/calib -o "$out/calib.npy" 2>/dev/null
  "$py" scripts/ort_quantize.py "$out/float.onnx" --inputs "$out/calib.npy" -o "$out/ort.onnx.part" \
    >/dev/null 2>&1
  mv "$out/ort.onnx.part" "$out/ort.onnx"
fi

# Our board binary for a core, symbols kept: the rpi4 build shares the default target folder
# with targets/build.sh rpi4 (same flags); the rpi5 build has a folder of its own, so that the
# two tunings do not rebuild each other.
ours_binary() { # core -> path
  local cpu dir=target
  case $1 in a72) cpu=cortex-a72 ;; a76) cpu=cortex-a76; dir=$out/build-a76 ;; esac
  say "building resnext-edge for the $1 (board profile, -C target-cpu=$cpu, symbols kept)"
  CARGO_PROFILE_BOARD_STRIP=false RUSTFLAGS="-C target-cpu=$cpu" cargo build -q --profile board \
    --target aarch64-unknown-linux-musl --target-dir "$dir" -p resnext-edge --bin resnext-edge \
    --features gpio,v4l2
  echo "$dir/aarch64-unknown-linux-musl/board/resnext-edge"
}

arm64=$(bash scripts/arm64_onnxruntime.sh "$out/arm64-onnxruntime")
count() { # name core qemu-cpu mcpu runs command... -> $out/counts/name-runs.json
  local name=$1 core=$2 cpu=$3 mcpu=$4 runs=$5; shift 5
  local extra=()
  case $name in ort*) extra=(--sysroot "$arm64/$core") ;; esac
  mkdir -p "$out/counts"
  say "counting $name on the $core, $runs run(s)"
  PYTHONPATH=$arm64/site python3 scripts/qemu_count.py --cpu "$cpu" --cycles "$mcpu" --json \
    "${extra[@]}" -- "$@" >"$out/counts/$name-$core-$runs.json" 2>"$out/counts/$name-$core-$runs.log" || {
    say "$name failed on the $core: see $out/counts/$name-$core-$runs.log"
    tail -5 "$out/counts/$name-$core-$runs.log" >&2
    exit 1
  }
}

for core in ${cores//,/ }; do
  case $core in
    a72) cpu=cortex-a72; mcpu=cortex-a72 ;;
    a76) cpu=cortex-a76; mcpu=neoverse-n1 ;;
    *) echo "unknown core $core (a72, a76)" >&2; exit 2 ;;
  esac
  bin=$(ours_binary "$core")
  for runs in 1 3; do
    count ours "$core" $cpu $mcpu $runs "$bin" bench "$out/ours.onnx" --runs $runs --warmup 0 \
      --threads 1 --kernels native
    count ort "$core" $cpu $mcpu $runs "$arm64/root/usr/bin/python3.11" scripts/ort_bench.py \
      "$out/ort.onnx" --threads 1 --runs $runs --warmup 0
    if [ $stock = 1 ] && [ $core = a72 ]; then
      count stock "$core" $cpu $mcpu $runs "$bin" bench "$out/ours.onnx" --runs $runs --warmup 0 \
        --kernels stock
    fi
  done
  if [ -n "$threads" ]; then
    for runs in 1 3; do
      say "counting ours on the $core with $threads threads, per thread, $runs run(s)"
      python3 scripts/qemu_count.py --cpu $cpu --threads --json -- "$bin" bench "$out/ours.onnx" \
        --runs $runs --warmup 0 --threads "$threads" --kernels native \
        >"$out/counts/threads$threads-$core-$runs.json" 2>/dev/null
    done
  fi
done
python3 scripts/arm_peer_table.py "$out/counts" --cores "$cores" ${threads:+--threads "$threads"} \
  ${json:+--json "$json"}
