#!/usr/bin/env python3
"""The tables of scripts/arm_peer.sh from its counts (qemu_count.py --json, one file per program,
core and run count): per inference = (3 runs - 1 run) / 2, model load = 1 run - one inference.

  arm_peer_table.py COUNTS_DIR [--cores a72,a76] [--threads N] [--macs M] [--json FILE]
"""
import argparse
import json
import os
from collections import Counter

CORES = {"a72": ("Cortex-A72 (Pi 4)", "cortex-a72", 8), "a76": ("Cortex-A76 (Pi 5), neoverse-n1 model", "neoverse-n1", 32)}
PROGRAMS = [("ours", "resnext-edge"), ("ort", "onnxruntime 1.32"), ("stock", "stock tract (QDQ in float)")]
# resnext50_32x4d's multiply-accumulates (mmcv's count, `resnext-quantize arch`).
RESNEXT50_MACS = 4_273_080_296
TOP = 8
# Functions of the worker pool's wait loops.
IDLE = "resnext_kernels::workers::"


def load(directory, name, core, runs):
    path = os.path.join(directory, f"{name}-{core}-{runs}.json")
    return json.load(open(path)) if os.path.exists(path) else None


def per_inference(one, three, key):
    return (three[key] - one[key]) / 2


def functions(one, three, key):
    """Per-inference count of `key` per function (the difference of the two runs)."""
    a, b = Counter(), Counter()
    for f in one["functions"]:
        a[f["function"]] += f.get(key, 0)
    for f in three["functions"]:
        b[f["function"]] += f.get(key, 0)
    return {fn: (b[fn] - a[fn]) / 2 for fn in set(a) | set(b)}


def millions(x):
    return f"{x / 1e6:,.1f} M"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("counts")
    ap.add_argument("--cores", default="a72,a76")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--macs", type=int, default=RESNEXT50_MACS)
    ap.add_argument("--json")
    a = ap.parse_args()
    report = {"macs": a.macs, "cores": {}}
    rows = []
    for core in a.cores.split(","):
        label, mcpu, peak = CORES[core]
        entry = report["cores"][core] = {"mcpu": mcpu, "programs": {}}
        cyc, ins = {}, {}
        for name, _ in PROGRAMS:
            one, three = load(a.counts, name, core, 1), load(a.counts, name, core, 3)
            if not one or not three:
                continue
            cyc[name] = per_inference(one, three, "cycles")
            ins[name] = per_inference(one, three, "instructions")
            entry["programs"][name] = {"cycles": cyc[name], "instructions": ins[name],
                                       "load_instructions": one["instructions"] - ins[name]}
        ratio = f" (**ours {cyc['ours'] / cyc['ort']:.2f}x**)" if "ours" in cyc and "ort" in cyc else ""
        cells = lambda d, extra: [millions(d[n]) + (extra if n == "ort" else "") if n in d else "" for n, _ in PROGRAMS]
        rows.append([f"{label}, cycles"] + cells(cyc, ratio) + [f"~{millions(a.macs / peak)} ({peak} MAC/cycle)"])
        rows.append([f"{label}, instructions"] + cells(ins, "") + [""])
        load_row = {n: p["load_instructions"] for n, p in entry["programs"].items()}
        rows.append([f"{label}, model load, instructions"] + cells(load_row, "") + [""])
    print("| core (llvm-mca model), per inference | " + " | ".join(t for _, t in PROGRAMS) + " | floor at the MAC peak |")
    print("|---|" + "---|" * (len(PROGRAMS) + 1))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    for core in a.cores.split(","):
        one, three = load(a.counts, "ours", core, 1), load(a.counts, "ours", core, 3)
        if not one or not three:
            continue
        c, i = functions(one, three, "cycles"), functions(one, three, "instructions")
        total = per_inference(one, three, "cycles")
        print(f"\nresnext-edge on the {CORES[core][0]}, per inference, by function (llvm-mca -mcpu={CORES[core][1]}):\n")
        print("| function | cycles | share | instructions |")
        print("|---|---|---|---|")
        top = sorted(c, key=lambda fn: -c[fn])[:TOP]
        for fn in top:
            print(f"| `{fn}` | {millions(c[fn])} | {100 * c[fn] / total:.1f} % | {millions(i[fn])} |")
        rest = total - sum(c[fn] for fn in top)
        print(f"| the rest | {millions(rest)} | {100 * rest / total:.1f} % | |")
        report["cores"][core]["functions"] = [{"function": fn, "cycles": c[fn], "instructions": i[fn]} for fn in top]
        if a.threads:
            t1, t3 = load(a.counts, f"threads{a.threads}", core, 1), load(a.counts, f"threads{a.threads}", core, 3)
            if t1 and t3:
                single = per_inference(one, three, "instructions")
                def waiting(t):
                    # The pool's wait loops (a worker spinning for its next task, the caller for
                    # the last one): their count is qemu's scheduling of 4 guest threads on the
                    # host's cores, not work.
                    return sum(n for fn, n in t["functions"].items() if fn.startswith(IDLE))

                before = {t["thread"]: (t["instructions"], waiting(t)) for t in t1["threads"]}
                after = {t["thread"]: (t["instructions"], waiting(t)) for t in t3["threads"]}
                split = {}
                for t, (n3, w3) in after.items():
                    n1, w1 = before.get(t, (0, 0))
                    split[t] = {"instructions": (n3 - n1) / 2, "waiting": (w3 - w1) / 2}
                    split[t]["work"] = split[t]["instructions"] - split[t]["waiting"]
                busy = {t: v for t, v in split.items() if v["work"] > 0.01 * single}
                print(f"\n{a.threads} threads on the {CORES[core][0]}, instructions per inference per thread "
                      f"(single thread: {millions(single)}):\n")
                print("| thread | work | share of the single-thread count | waiting for work (spin) |")
                print("|---|---|---|---|")
                for t, v in sorted(busy.items()):
                    print(f"| {t} | {millions(v['work'])} | {100 * v['work'] / single:.1f} % | {millions(v['waiting'])} |")
                worst = max(v["work"] for v in busy.values())
                print(f"\nbusiest thread: {100 * worst / single:.1f} % of the single-thread instructions "
                      f"(even split: {100 / a.threads:.1f} %); work of all threads: "
                      f"{100 * sum(v['work'] for v in busy.values()) / single:.1f} %")
                report["cores"][core]["threads"] = {"count": a.threads, "per_thread": split,
                                                    "busiest_share": worst / single}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
