#!/usr/bin/env bash
# Builds the board binary: targets/build.sh BOARD [--glibc] [--cargo-check] [--unit-tests] [--check] [--qemu-cpu CPU]
#   BOARD         one of targets/boards/*.env (rpi3, rpi4, rpi5, jetson-nano, jetson-orin)
#   --glibc       link against the board's glibc dynamically instead of a static binary
#   --cargo-check only check that the runtime compiles for the board (`cargo check`: the Rust
#                 type-checked, the C of libjpeg-turbo cross-compiled), without code generation,
#                 linking or a binary; about a minute instead of many
#   --unit-tests  first run the runtime's unit tests under qemu-user, built as the binary is (same
#                 target, CPU tuning, profile and features: the binary then reuses that build)
#   --check       also run the binary under qemu-user on the example model (needs the model made
#                 by examples/quickstart.sh) and compare with the host build's output
#   --qemu-cpu    the CPU qemu-user emulates for --unit-tests and --check (default: the board's;
#                 `max` has every extension qemu knows, e.g. the dot product)
# The result is target/boards/resnext-edge-BOARD: stripped, statically linked (musl on aarch64,
# glibc on armv7), tuned for the board's CPU, with the GPIO backend and (64-bit boards) V4L2.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
board=$1; shift
glibc=0; check=0; unit_tests=0; cargo_check=0; qemu_cpu=
while [ $# -gt 0 ]; do
  case $1 in
    --glibc) glibc=1 ;;
    --check) check=1 ;;
    --cargo-check) cargo_check=1 ;;
    --unit-tests) unit_tests=1 ;;
    --qemu-cpu) [ $# -ge 2 ] || usage; qemu_cpu=$2; shift ;;
    *) usage ;;
  esac
  shift
done
profile=targets/boards/$board.env
[ -f "$profile" ] || { echo "unknown board '$board'; boards: $(ls targets/boards | sed 's/\.env$//' | tr '\n' ' ')" >&2; exit 2; }
# shellcheck source=/dev/null
. "$profile"
target=$RUST_TARGET
rustflags="-C target-cpu=$TARGET_CPU"
if [ "$glibc" = 1 ]; then
  target=${target/-musl/-gnu}
elif [[ $target == *-gnu* ]]; then
  rustflags="$rustflags -C target-feature=+crt-static"
fi
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
runner=$QEMU
[ -n "$qemu_cpu" ] && runner=$(echo "$runner" | sed -E "s/-cpu [^ ]+/-cpu $qemu_cpu/")
[[ $target == *-gnu* && $glibc == 1 ]] && runner="$runner -L /usr/${target/-unknown-linux-gnu/-linux-gnu}"
if [ "$cargo_check" = 1 ]; then
  echo "checking resnext-edge for $BOARD_NAME: $target, $rustflags, features $FEATURES" >&2
  RUSTFLAGS="$rustflags" cargo check --profile board --target "$target" -p resnext-edge \
    --bin resnext-edge --features "$FEATURES"
  exit 0
fi
if [ "$unit_tests" = 1 ]; then
  echo "unit tests of resnext-edge as built for $BOARD_NAME, under $runner" >&2
  runner_var=CARGO_TARGET_$(echo "$target" | tr a-z- A-Z_)_RUNNER
  env "$runner_var=$runner" RUSTFLAGS="$rustflags" cargo test --profile board --target "$target" \
    -p resnext-edge --lib --features "$FEATURES"
fi
echo "building resnext-edge for $BOARD_NAME: $target, $rustflags, features $FEATURES" >&2
RUSTFLAGS="$rustflags" cargo build --profile board --target "$target" -p resnext-edge \
  --bin resnext-edge --features "$FEATURES"
mkdir -p target/boards
suffix=$([ "$glibc" = 1 ] && echo "-glibc" || true)
out=target/boards/resnext-edge-$board$suffix
cp "target/$target/board/resnext-edge" "$out"
echo "$out: $(stat -c %s "$out") bytes ($(file -b "$out" 2>/dev/null | cut -d, -f1-2 || true))"

if [ "$check" = 1 ]; then
  model=target/example.int8.onnx
  [ -f "$model" ] || { echo "no $model: run examples/quickstart.sh first" >&2; exit 1; }
  host=${RESNEXT_EDGE_BIN_DIR:-target/release}/resnext-edge
  [ -x "$host" ] || cargo build --release -p resnext-edge --bin resnext-edge
  # The native int8 path: the top classes and every logit bit for bit (JSON, shortest
  # round-trip form; timings removed, and the softmax scores, whose exp() is the C library's).
  # Its integer layers and the native head's two float operations per logit are exact on every
  # ISA. Stock tract: top classes and logits to 4 decimals (its float layers differ by ~2e-6
  # between ISAs).
  untimed() { sed -E 's/"(latency_ms|preprocess_ms|score)":[-0-9.e+]+,?//g; s/  \[.*ms\]$//'; }
  for kernels in native stock; do
    args=(classify "$model" examples/data/images --top-k 3 --logits --kernels $kernels)
    [ $kernels = native ] && args+=(--json)
    if diff <("$host" "${args[@]}" | untimed) <($runner "$out" "${args[@]}" 2>/dev/null | untimed); then
      what="classify output"
      [ $kernels = native ] && what="every logit"
      echo "$board under $runner, --kernels $kernels: $what identical to the host's"
    else
      echo "$board under $runner, --kernels $kernels: output differs from the host's" >&2
      exit 1
    fi
  done
fi
