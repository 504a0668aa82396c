#!/usr/bin/env bash
# Runs the tests of the kernel crate (resnext-kernels: every SIMD twin against its generic
# definition, the convolution engine, the worker threads) for a board, under qemu-user:
#   targets/kernel-tests.sh BOARD [--qemu-cpu CPU]
#   BOARD       one of targets/boards/*.env (rpi3, rpi4, rpi5, jetson-nano, jetson-orin)
#   --qemu-cpu  the CPU qemu emulates (default: the board's; `max` has every extension qemu
#               knows, e.g. the dot product, so that the sdot kernels run too)
# Built as the board binary is (board profile, the board's CPU tuning), for the glibc twin of
# the board's target (the kernels hold no libc-specific code). The crate has no tract in it, so
# this compiles in seconds where the whole runtime for ARM takes many minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
board=$1; shift
qemu_cpu=
while [ $# -gt 0 ]; do
  case $1 in
    --qemu-cpu) [ $# -ge 2 ] || usage; qemu_cpu=$2; shift ;;
    *) usage ;;
  esac
  shift
done
profile=targets/boards/$board.env
[ -f "$profile" ] || { echo "unknown board '$board'; boards: $(ls targets/boards | sed 's/\.env$//' | tr '\n' ' ')" >&2; exit 2; }
# shellcheck source=/dev/null
. "$profile"
target=${RUST_TARGET/-musl/-gnu}
case $target in
  aarch64-*) sysroot=/usr/aarch64-linux-gnu ;;
  armv7-*) sysroot=/usr/arm-linux-gnueabihf ;;
  *) echo "no qemu sysroot known for $target" >&2; exit 2 ;;
esac
runner="$QEMU -L $sysroot"
[ -n "$qemu_cpu" ] && runner=$(echo "$runner" | sed -E "s/-cpu [^ ]+/-cpu $qemu_cpu/")
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
echo "kernel tests as built for $BOARD_NAME ($target, -C target-cpu=$TARGET_CPU), under $runner" >&2
runner_var=CARGO_TARGET_$(echo "$target" | tr a-z- A-Z_)_RUNNER
env "$runner_var=$runner" RUSTFLAGS="-C target-cpu=$TARGET_CPU" \
  cargo test --profile board --target "$target" -p resnext-kernels --lib
