#!/usr/bin/env bash
# The stream figures of the README, measured on this machine with ffmpeg as the camera:
#  1. soak: FRAMES (default 5000) 640x480 MJPEG frames through `stream --every-frame` with the
#     example model: RSS after warm-up and at the end, every frame accounted for, decode +
#     preprocess time per 640x480 frame (median, p99);
#  2. latency: resnext50_32x4d int8 (random weights, calibrated on the fixture images) on a
#     real-time 30 fps 640x480 stream for 20 s: capture-to-result p50/p99, frames dropped.
# Usage: scripts/stream_report.sh [FRAMES]   (needs ffmpeg; builds the release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
frames=${1:-5000}
cargo build -q --release -p resnext-edge
cargo build -q -p resnext-quantize
E=target/release/resnext-edge
Q=target/debug/resnext-quantize
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -f target/example.int8.onnx ] || RESNEXT_EDGE_BIN_DIR=target/debug bash examples/quickstart.sh >/dev/null

ff() { ffmpeg -hide_banner -loglevel error -nostdin "$@"; }
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "machine: $cpu, $(nproc) cores"

# 1. Soak.
ff -f lavfi -i "testsrc=size=640x480:rate=30" -frames:v "$frames" -f mjpeg - \
  | $E stream target/example.int8.onnx --source mjpeg:- --every-frame --json --stats-every 2 \
      >"$tmp/soak.jsonl" 2>"$tmp/soak.err"
python3 - "$tmp/soak.jsonl" "$tmp/soak.err" "$frames" <<'PY'
import json, sys
res, summary = [], None
for line in open(sys.argv[1]):
    v = json.loads(line)
    if "summary" in v: summary = v["summary"]
    elif "top" in v: res.append(v)
stats = [json.loads(l)["stats"] for l in open(sys.argv[2]) if l.startswith('{"stats"')]
sent = int(sys.argv[3])
acc = summary["frames_processed"] + summary["frames_dropped"] + summary["frames_corrupt"]
pre = sorted(r["preprocess_ms"] for r in res)
q = lambda v, p: v[min(len(v) - 1, int(p * len(v)))]
print(f"soak: {sent} frames sent, summary {summary}, accounted {acc} ({'ok' if acc == sent == summary['frames_read'] else 'MISMATCH'})")
print(f"  RSS after warm-up (first stats line, {stats[0]['processed']} frames): {stats[0]['rss_mb']:.1f} MB; "
      f"at the end ({stats[-1]['processed']} frames): {stats[-1]['rss_mb']:.1f} MB; "
      f"growth {stats[-1]['rss_mb'] - stats[0]['rss_mb']:+.1f} MB; max {max(s['rss_mb'] for s in stats):.1f} MB")
print(f"  decode + preprocess of a 640x480 MJPEG frame: median {q(pre, .5):.2f} ms, p99 {q(pre, .99):.2f} ms")
PY

# 2. Capture-to-result latency, resnext50_32x4d int8, real-time 30 fps.
$Q quantize --arch resnext50_32x4d --random-weights 0 --calib tests/fixtures/trained/calib -q -o "$tmp/r50.onnx" 2>/dev/null
for t in 1 2; do
  ff -re -f lavfi -i "testsrc=size=640x480:rate=30" -t 20 -f mjpeg - \
    | $E stream "$tmp/r50.onnx" --source mjpeg:- --json --threads $t --stats-every 0 >"$tmp/r50.jsonl"
  python3 - "$tmp/r50.jsonl" "$t" <<'PY'
import json, sys
res = [json.loads(l) for l in open(sys.argv[1])]
s = res[-1]["summary"]; res = [r for r in res if "top" in r][5:]  # first frames are warm-up
lat = sorted(r["latency_ms"] for r in res); inf = sorted(r["inference_ms"] for r in res)
q = lambda v, p: v[min(len(v) - 1, int(p * len(v)))]
print(f"resnext50_32x4d int8, 640x480 @ 30 fps, {sys.argv[2]} thread(s): capture-to-result p50 {q(lat,.5):.1f} ms, "
      f"p99 {q(lat,.99):.1f} ms (inference median {q(inf,.5):.1f} ms); {s['frames_processed']} classified, "
      f"{s['frames_dropped']} dropped, {s['frames_corrupt']} corrupt of {s['frames_read']}")
PY
done
