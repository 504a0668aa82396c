#!/usr/bin/env bash
# Where the time goes, per layer kind: `resnext-edge bench --profile` (native kernels) and
# onnxruntime's own profiler (scripts/ort_bench.py --profile) on resnext50_32x4d int8 from our
# quantizer (random weights), batch 1, on THREADS threads (default 1). resnext-edge runs our QDQ
# file, onnxruntime the QOperator one (its fastest layout here). Per-node timing adds overhead to
# both; the totals of scripts/speed.sh are the ones to compare.
# Usage: scripts/profile.sh [THREADS] [RUNS]   (prints a markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-1}
runs=${2:-20}
# shellcheck source=scripts/resnext50_models.sh
source scripts/resnext50_models.sh
resnext50_models qdq qop
$E bench "$tmp/qdq.onnx" --threads "$threads" --runs "$runs" --profile --json > "$tmp/ours.json"
"$py" scripts/ort_bench.py "$tmp/qop.onnx" --threads "$threads" --runs "$runs" --profile > "$tmp/ort.json"
python3 - "$tmp/ours.json" "$tmp/ort.json" "$threads" <<'PY'
import json, sys
ours, ort = (json.load(open(p)) for p in sys.argv[1:3])
def group(kind):
    # One row per convolution kind; the residual add is fused into our pointwise convolutions,
    # a QLinearAdd of its own in onnxruntime's graph.
    k = kind.replace(" + residual", "")
    return k if any(w in k for w in ("pointwise", "grouped", "7x7")) else "everything else"
rows = {}
for side, prof in (("ours", ours["profile"]), ("ort", ort["profile"])):
    for p in prof:
        r = rows.setdefault(group(p["kind"]), {"ours": 0.0, "ort": 0.0})
        r[side] += p["ms_per_run"]
print(f"resnext50_32x4d int8, {sys.argv[3]} thread(s), ms per run with per-node timing "
      f"(totals: resnext-edge {ours['median_ms']:.1f} ms, onnxruntime {ort['median_ms']:.1f} ms)")
print()
print("| layer kind | resnext-edge native | onnxruntime | ratio |")
print("|---|---|---|---|")
order = sorted(rows, key=lambda k: (k == "everything else", -rows[k]["ort"]))
for k in order:
    r = rows[k]
    ratio = f"{r['ours'] / r['ort']:.2f}x" if r["ort"] > 0 else "-"
    print(f"| {k} | {r['ours']:.2f} ms | {r['ort']:.2f} ms | {ratio} |")
t = {s: sum(r[s] for r in rows.values()) for s in ("ours", "ort")}
print(f"| all layers | {t['ours']:.2f} ms | {t['ort']:.2f} ms | {t['ours'] / t['ort']:.2f}x |")
PY
