#!/usr/bin/env bash
# The ARM inner-loop table of the README: builds the runtime for aarch64 and armv7 (release,
# symbols kept), disassembles the int8 kernels, counts multiply-accumulates per iteration of each
# innermost loop, and asks llvm-mca for cycles per iteration on the board CPUs (share of the
# int8 peak: A72 8 MAC/cycle, A76 32; armv7 on the A72's model only).
# Usage: scripts/arm_loops.sh   (needs the cross binutils of gcc-aarch64-linux-gnu /
# gcc-arm-linux-gnueabihf and llvm-mca, Debian package llvm; llvm-19's has a Cortex-A76 model)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
mca=$( (ls /usr/bin/llvm-mca-* 2>/dev/null || true) | sort -t- -k3 -n | tail -1); mca=${mca:-llvm-mca}
echo "llvm-mca: $($mca --version | grep -m1 -i version | sed 's/^ *//')"
for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
  cargo build -q --release --target $target -p resnext-edge --bin resnext-edge
  echo
  needles=("kernels::armv7::" "kernels::generic::")
  [ $target = aarch64-unknown-linux-gnu ] && needles=("kernels::aarch64::" "kernels::neon_direct::" \
    "kernels::neon_dot::" "kernels::neon_dot_direct::" "kernels::generic::")
  python3 scripts/arm_loops.py "target/$target/release/resnext-edge" "${needles[@]}"
done
