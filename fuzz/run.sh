#!/usr/bin/env bash
# Builds the fuzz targets (cargo-fuzz, no sanitizer: the stable toolchain suffices) and runs
# each on its corpus for SECONDS, then prints one Markdown row per target: time, executions,
# crashes. A crash stops the script with libFuzzer's report and the input under
# fuzz/artifacts/TARGET/ (turn it into a regression test, named after what it found).
# Usage: fuzz/run.sh [SECONDS] [TARGET...]   (default 30 s, every target)
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and the seed corpora (fuzz/seeds.sh).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(checkpoint onnx_model image mjpeg_split raw_frames)
cargo fuzz build -s none -O >&2
bin=target/x86_64-unknown-linux-gnu/release
echo "| target | seconds | executions | crashes |"
echo "|---|---|---|---|"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  if ! "$bin/$t" "corpus/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 \
      -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz target $t crashed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "| $t | $secs | $execs | 0 |"
  rm -f "$log"
done
