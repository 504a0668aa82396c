#!/usr/bin/env python3
"""Counts what an ARM program executes under qemu-user: instructions in total, per function of the
program and per guest thread, and (aarch64) cycles estimated by llvm-mca's model of a core.

  qemu_count.py [--cpu cortex-a72] [--arch aarch64|arm] [--sysroot DIR] [--cycles MCPU]
                [--threads] [--top 12] [--blocks N] [--json] -- PROGRAM [ARGS...]

Why: no ARM board is at hand, and qemu's timings say nothing about one. What qemu does give
exactly is what the guest executes. scripts/qemu_count_plugin.c (built once with the host's cc,
cached under target/qemu-count/) records every translated block and how often it ran; this script
attributes blocks to the program's functions (its symbol table: build with symbols) and, with
--cycles, disassembles the hottest blocks (llvm-mc) and asks llvm-mca for each block's cycles in
steady state on MCPU (cortex-a72 for a Raspberry Pi 4; neoverse-n1, the Cortex-A76's server twin,
for a Pi 5); estimated cycles = the sum over blocks of runs x cycles per run, the blocks not
modelled at one instruction per cycle. The model knows the pipes, not the caches or the branch
predictor: compare two programs doing the same work on the same MCPU, never read it as time.
--threads counts per guest thread (a callback per block run: slower, but race-free).
To leave out loading, run twice with different run counts and take the difference (as
scripts/arm_peer.sh does). Needs qemu-user, a C compiler, the cross sysroot (or --sysroot), and
LLVM (llvm-mc, llvm-mca, llvm-nm; version 19 preferred, apt-get install llvm-19) for --cycles.
"""
import argparse
import bisect
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.realpath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_SYSROOT = {"aarch64": "/usr/aarch64-linux-gnu", "arm": "/usr/arm-linux-gnueabihf"}
# Blocks the cycle model times: the hottest ones up to this share of the instructions.
MODELLED_SHARE = 0.995
MAX_MODELLED_BLOCKS = 5000
# Blocks per llvm-mca run.
MCA_BATCH = 400


def build_plugin():
    """The plugin's shared object, built once per version of its source."""
    src = os.path.join(HERE, "qemu_count_plugin.c")
    digest = hashlib.sha256(open(src, "rb").read()).hexdigest()[:16]
    out_dir = os.path.join(ROOT, "target", "qemu-count")
    so = os.path.join(out_dir, f"plugin-{digest}.so")
    if not os.path.exists(so):
        os.makedirs(out_dir, exist_ok=True)
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", so + ".part", src], check=True)
        os.replace(so + ".part", so)
    return so


def llvm(name):
    """An LLVM tool: version 19 (the version the project's figures come from) if installed, else
    the newest versioned one, else the unversioned name."""
    if shutil.which(f"{name}-19"):
        return f"{name}-19"
    versions = []
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if os.path.isdir(d):
            versions += [int(m.group(1)) for f in os.listdir(d) if (m := re.fullmatch(re.escape(name) + r"-(\d+)", f))]
    return f"{name}-{max(versions)}" if versions else name


def function_table(program):
    """(sorted start addresses, names) of the program's functions; empty without symbols."""
    starts, names = [], []
    try:
        out = subprocess.run([llvm("llvm-nm"), "-C", "-n", "--defined-only", program], capture_output=True, text=True)
    except FileNotFoundError:
        print("qemu_count: no llvm-nm (apt-get install llvm-19): no per-function counts", file=sys.stderr)
        return starts, names
    for line in out.stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            starts.append(int(parts[0], 16) & ~1)
            names.append(parts[2])
    return starts, names


def load_bias(program, page_log):
    """Where qemu put the program minus where it is linked (0 for a fixed-address executable):
    qemu's `-d page` log says where its code starts, readelf where its first segment is linked."""
    start = None
    for line in open(page_log, errors="replace"):
        m = re.match(r"start_code\s+0x([0-9a-f]+)", line)
        if m:
            start = int(m.group(1), 16)
    headers = subprocess.run(["readelf", "-lW", program], capture_output=True, text=True).stdout
    linked = [int(m.group(1), 16) for m in re.finditer(r"^\s*LOAD\s+0x[0-9a-f]+\s+0x([0-9a-f]+)", headers, re.M)]
    if start is None or not linked:
        return None
    return start - (min(linked) & ~0xFFF)


def ends_in_branch(code):
    """Whether the last instruction of an aarch64 block (hex, little-endian words) is a branch."""
    word = int.from_bytes(bytes.fromhex(code[-8:]), "little")
    return ((word & 0x7C000000) == 0x14000000  # b, bl
            or (word & 0xFF000010) == 0x54000000  # b.cond
            or (word & 0x7E000000) in (0x34000000, 0x36000000)  # cbz/cbnz, tbz/tbnz
            or (word & 0xFE000000) == 0xD6000000)  # br, blr, ret


def mca_cycles(blocks, mcpu):
    """{block key: cycles per run} from llvm-mca's model of `mcpu`, for blocks {key: code hex}."""
    regions = []
    for key, code in blocks.items():
        text = " ".join(f"0x{code[i:i + 2]}" for i in range(0, len(code), 2))
        dis = subprocess.run([llvm("llvm-mc"), "--disassemble", "-triple=aarch64",
                              "-mattr=+neon,+dotprod,+fullfp16,+rcpc,+lse,+crc"],
                             input=text, capture_output=True, text=True)
        lines = [l.strip() for l in dis.stdout.splitlines() if l.strip() and not l.strip().startswith(".")]
        if dis.returncode == 0 and "invalid" not in dis.stderr and len(lines) == key[1]:
            regions.append((key, lines))
    cycles = {}
    for first in range(0, len(regions), MCA_BATCH):
        batch = regions[first:first + MCA_BATCH]
        text = "".join(f"# LLVM-MCA-BEGIN r{i}\n" + "\n".join(lines) + f"\n# LLVM-MCA-END r{i}\n"
                       for i, (_, lines) in enumerate(batch))
        out = subprocess.run([llvm("llvm-mca"), "-mtriple=aarch64", f"-mcpu={mcpu}", "-iterations=100",
                              "-all-views=false", "-summary-view"], input=text, capture_output=True, text=True)
        for i, total in re.findall(r"Code Region - r(\d+)\s+Iterations:\s+\d+\s+Instructions:\s+\d+\s+"
                                   r"Total Cycles:\s+(\d+)", out.stdout):
            cycles[batch[int(i)][0]] = int(total) / 100
    return cycles


def count(args):
    """Runs the program under qemu with the plugin; returns the result as a dict."""
    sysroot = args.sysroot or DEFAULT_SYSROOT[args.arch]
    program = args.command[0]
    with tempfile.TemporaryDirectory() as tmp:
        counts, page_log = os.path.join(tmp, "counts"), os.path.join(tmp, "pages")
        options = f"{build_plugin()},out={counts}" + (",threads=1" if args.threads else "")
        qemu = [f"qemu-{args.arch}", "-cpu", args.cpu, "-L", sysroot, "-plugin", options,
                "-d", "page", "-D", page_log] + args.command
        # The program's own output goes to stderr: stdout is this script's (--json).
        exit_code = subprocess.call(qemu, stdout=sys.stderr)
        if not os.path.exists(counts):
            sys.exit(f"qemu_count: qemu wrote no counts (exit code {exit_code}): {' '.join(qemu)}")
        bias = load_bias(program, page_log)
        blocks, threads, thread_blocks, total = [], {}, [], 0
        for line in open(counts):
            f = line.split()
            if f[0] == "block":
                blocks.append((int(f[1], 16), int(f[2]), int(f[3]), f[4] if len(f) > 4 else ""))
                if len(f) > 5:
                    for item in f[5].split(","):
                        t, runs = item.split(":")
                        thread_blocks.append((int(t), blocks[-1][0], blocks[-1][1], int(runs)))
            elif f[0] == "thread":
                threads[int(f[1])] = int(f[2])
            elif f[0] == "total":
                total = int(f[1])
    starts, names = function_table(program)
    outside = f"(outside {os.path.basename(program)})"
    text_end = text_range(program)[1]

    def function_of(vaddr):
        if bias is None or not starts:
            return outside
        linked = vaddr - bias
        i = bisect.bisect_right(starts, linked) - 1
        return names[i] if i >= 0 and linked < text_end else outside

    per_function = Counter()
    runs_of = Counter()  # (code, insns) -> runs, over every block with that code
    for vaddr, insns, runs, code in blocks:
        per_function[readable(function_of(vaddr))] += insns * runs
        runs_of[(code, insns)] += runs
    result = {"program": " ".join(args.command), "cpu": args.cpu, "exit_code": exit_code, "instructions": total}
    cycles_of_function = None
    if args.cycles:
        hot, covered = [], 0
        for key, runs in sorted(runs_of.items(), key=lambda kv: -kv[0][1] * kv[1]):
            if covered >= MODELLED_SHARE * total or len(hot) >= MAX_MODELLED_BLOCKS:
                break
            hot.append(key)
            covered += key[1] * runs
        # qemu ends a block where the code does not branch: at a page boundary, and where a
        # block of many vector instructions fills its buffer of generated operations. Straight
        # code split so (a loop whose body crosses a page, its entry falling through into it, a
        # long tile end) runs as two blocks, which llvm-mca would model apart, each without the
        # other's overlap (and a short tail as a loop of its own dependency chain). Where every
        # run of a block follows one of the blocks that end at its start without a branch,
        # each of those is modelled joined with it and counts the pair's cycles, the second
        # block none of its own (decided per address, only where llvm-mca modelled every pair,
        # and not for a block that is itself the second of a pair: pairs, not chains).
        ending = defaultdict(list)
        for vaddr, insns, runs, code in blocks:
            if code and not ends_in_branch(code):
                ending[vaddr + 4 * insns].append((vaddr, insns, runs, code))
        hot_set, merges = set(hot), []
        for vaddr, insns, runs, code in blocks:
            preds = ending.get(vaddr, [])
            if not code or not preds or sum(p[2] for p in preds) != runs:
                continue
            if any((p[3], p[1]) in hot_set for p in preds):
                merges.append((vaddr, insns, code, preds))
        seconds = {m[0] for m in merges}
        merges = [m for m in merges if not any(p[0] in seconds for p in m[3])]
        regions = {key: key[0] for key in hot}
        for _, insns, code, preds in merges:
            regions.update({(p[3] + code, p[1] + insns): p[3] + code for p in preds})
        per_run = mca_cycles(regions, args.cycles)
        at_address = {}  # vaddr -> cycles per run, where a merge decides them
        for vaddr, insns, code, preds in merges:
            joined = [per_run.get((p[3] + code, p[1] + insns)) for p in preds]
            if all(c is not None for c in joined):
                at_address.update({p[0]: c for p, c in zip(preds, joined)})
                at_address[vaddr] = 0.0

        def cycles_per_run(vaddr, insns, code):
            return at_address.get(vaddr, per_run.get((code, insns)))

        # Blocks not modelled count one cycle per instruction.
        cycles_of_function = Counter()
        modelled = 0
        for vaddr, insns, runs, code in blocks:
            c = cycles_per_run(vaddr, insns, code)
            cycles_of_function[readable(function_of(vaddr))] += (insns if c is None else c) * runs
            modelled += 0 if c is None else insns * runs
        result.update(mcpu=args.cycles, cycles=int(sum(cycles_of_function.values())),
                      modelled_share=round(modelled / max(total, 1), 4))
    functions = []
    for fn, n in per_function.most_common():
        row = {"function": fn, "instructions": n}
        if cycles_of_function is not None:
            row["cycles"] = int(cycles_of_function[fn])
        functions.append(row)
    result["functions"] = functions
    if args.blocks:
        # The hottest blocks by cycles (instructions without --cycles), at their linked address.
        rows = []
        for vaddr, insns, runs, code in blocks:
            c = cycles_per_run(vaddr, insns, code) if args.cycles else None
            rows.append({"address": hex(vaddr - bias) if bias is not None else hex(vaddr),
                         "function": readable(function_of(vaddr)), "instructions": insns, "runs": runs,
                         "cycles_per_run": c, "cycles": int((insns if c is None else c) * runs)})
        result["blocks"] = sorted(rows, key=lambda r: -r["cycles"])[:args.blocks]
    if args.threads:
        by_thread = defaultdict(Counter)
        for t, vaddr, insns, runs in thread_blocks:
            by_thread[t][readable(function_of(vaddr))] += insns * runs
        result["threads"] = [{"thread": t, "instructions": n, "functions": dict(by_thread[t].most_common())}
                             for t, n in sorted(threads.items())]
    return result


def text_range(program):
    """(start, end) of the program's executable sections as linked; (0, inf) if unknown."""
    out = subprocess.run(["readelf", "-SW", program], capture_output=True, text=True).stdout
    spans = []
    for m in re.finditer(r"\]\s+\S+\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s+(\S*X\S*)", out):
        addr, size = int(m.group(1), 16), int(m.group(2), 16)
        spans.append((addr, addr + size))
    if not spans:
        return 0, float("inf")
    return min(s for s, _ in spans), max(e for _, e in spans)


def readable(symbol):
    """A Rust symbol as llvm-nm leaves it (legacy mangling, `$LT$`-escaped), without its hash."""
    symbol = re.sub(r"::h[0-9a-f]{16}", "", symbol)
    symbol = re.sub(r" \(\.llvm\.\d+\)$", "", symbol)
    for escaped, char in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$u7b$", "{"), ("$u7d$", "}"),
                          ("$u5b$", "["), ("$u5d$", "]"), ("$u3b$", ";"), ("$C$", ","), ("$RF$", "&"),
                          ("$BP$", "*"), ("$u27$", "'"), ("..", "::")):
        symbol = symbol.replace(escaped, char)
    return symbol.replace("::_<", "::<").lstrip("_")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", default="cortex-a72", help="qemu's -cpu (default cortex-a72)")
    ap.add_argument("--arch", default="aarch64", choices=sorted(DEFAULT_SYSROOT))
    ap.add_argument("--sysroot", help="qemu's -L (default: the cross compiler's sysroot)")
    ap.add_argument("--cycles", metavar="MCPU", help="estimate cycles with llvm-mca -mcpu=MCPU (aarch64)")
    ap.add_argument("--threads", action="store_true", help="count per guest thread")
    ap.add_argument("--top", type=int, default=12, help="functions listed (text output)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout, every function")
    ap.add_argument("--blocks", type=int, default=0, metavar="N",
                    help="also list the N hottest blocks (linked address, runs, cycles per run; "
                         "straight code qemu split in two shows its cycles on its first block, 0 "
                         "on the second)")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        ap.error("no program given (after --)")
    if args.cycles and args.arch != "aarch64":
        ap.error("--cycles models aarch64 cores only")
    result = count(args)
    if args.json:
        print(json.dumps(result))
    else:
        line = f"{result['instructions']:,} instructions (qemu-{args.arch} -cpu {args.cpu})"
        if "cycles" in result:
            line += (f", {result['cycles']:,} cycles (llvm-mca -mcpu={args.cycles}, "
                     f"{100 * result['modelled_share']:.1f} % of the instructions modelled)")
        print(line)
        for row in result["functions"][:args.top]:
            cycles = f"{row['cycles']:>15,} cycles " if "cycles" in row else ""
            print(f"{row['instructions']:>15,} instructions {cycles} {row['function']}")
        for row in result.get("blocks", []):
            per_run = "" if row["cycles_per_run"] is None else f"{row['cycles_per_run']:>8.2f} cycles/run"
            print(f"block {row['address']}: {row['instructions']:>4} instructions x {row['runs']:>12,} runs "
                  f"{per_run} = {row['cycles']:>14,} cycles  {row['function']}")
        for row in result.get("threads", []):
            print(f"thread {row['thread']}: {row['instructions']:,} instructions")
    sys.exit(result["exit_code"])


if __name__ == "__main__":
    main()
