#!/usr/bin/env python3
"""The ARM inner-loop table: for each kernel function of an aarch64 or armv7 build, its innermost
loops as disassembled, the multiply-accumulates per iteration counted from the instructions, and
llvm-mca's cycles per iteration for the board CPUs, as a share of their int8 peak.

Usage: arm_loops.py BINARY FUNCTION_SUBSTRING... (see scripts/arm_loops.sh, which builds the
binaries). Needs binutils for the target (objdump) and llvm-mca. Prints a markdown table.
"""
import re
import shutil
import subprocess
import sys

# int8 multiply-accumulates per cycle at peak (the reference figures).
PEAK = {"cortex-a72": 8, "cortex-a76": 32}

# The scheduling model llvm-mca times each board CPU with. LLVM (up to 19 at least) gives the
# Cortex-A72 and the Cortex-A76 alike the Cortex-A57's model (one multiply pipe, no dot product
# timing of its own); the Neoverse N1 is the A76's server twin (the same core: two 128-bit
# ASIMD pipes V0/V1, two load pipes) and has a model of its own, so the A76 is timed on it.
MODEL = {"cortex-a72": "cortex-a72", "cortex-a76": "neoverse-n1"}

LANES = {"16b": 16, "8b": 8, "8h": 8, "4h": 4, "4s": 4, "2s": 2, "2d": 2}


def macs(arch, mnemonic, operands):
    """Multiply-accumulates one instruction does (0 for everything else)."""
    m = mnemonic.lower()
    if arch == "aarch64":
        dest = re.match(r"v\d+\.(\w+)", operands)
        lanes = LANES.get(dest.group(1), 0) if dest else 0
        if m in ("sdot", "udot", "usdot", "sudot"):
            return lanes * 4
        if re.fullmatch(r"(s|u)(mlal|mlsl|mull)2?|mla|mls|mul", m):
            return lanes
        return 0
    # armv7 NEON: vmlal.s16 q, d, d / vmull.s8 q, d, d / vmla.i32 q, q, q
    base, _, ty = m.partition(".")
    if ty.startswith("f"):
        return 0  # float multiplies (the requantization), not int8 work
    if base in ("vmlal", "vmull", "vmlsl"):
        bits = int(re.sub(r"\D", "", ty) or 8)
        return 64 // bits  # a doubleword source: 8 x i8 or 4 x i16
    if base in ("vmla", "vmul", "vmls"):
        bits = int(re.sub(r"\D", "", ty) or 32)
        reg = operands.split(",")[0].strip()
        return (128 if reg.startswith("q") else 64) // bits
    return 0


def disassemble(objdump, binary, needle):
    out = subprocess.run(
        [objdump, "-d", "-C", "--no-show-raw-insn", binary],
        check=True, capture_output=True, text=True).stdout
    funcs, name, body = {}, None, []
    for line in out.splitlines():
        head = re.match(r"^([0-9a-f]+) <(.*)>:$", line)
        if head:
            if name and needle in name:
                funcs[name] = body
            # Keyed by name and address: closures of one function share a name.
            name, body = f"{head.group(2)}@{head.group(1)}", []
            continue
        ins = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if ins and name:
            body.append((int(ins.group(1), 16), ins.group(2), ins.group(3)))
    if name and needle in name:
        funcs[name] = body
    return funcs


def innermost_loops(body):
    """(start, end) index pairs of loops closed by a backward branch with no other loop and no
    call inside."""
    index = {addr: i for i, (addr, _, _) in enumerate(body)}
    loops = []
    for i, (addr, mn, ops) in enumerate(body):
        if not (mn.startswith("b") or mn.startswith("cb") or mn.startswith("tb")):
            continue
        target = re.search(r"\b([0-9a-f]{4,})\b\s*<", ops)
        if target and int(target.group(1), 16) < addr and int(target.group(1), 16) in index:
            loops.append((index[int(target.group(1), 16)], i))
    # A loop that calls a function is an outer loop (the callee's loops are listed with it).
    calls = {"bl", "blr", "blx"}
    return [(s, e) for s, e in loops
            if not any((s2, e2) != (s, e) and s <= s2 and e2 <= e for s2, e2 in loops)
            and not any(mn in calls for _, mn, _ in body[s:e + 1])]


def llvm_mca():
    """The newest llvm-mca installed: LLVM 17 and later time a Cortex-A76 with its own model
    (Neoverse N1's); LLVM 14's figures for it are the generic ones."""
    for v in range(30, 13, -1):
        if shutil.which(f"llvm-mca-{v}"):
            return f"llvm-mca-{v}"
    return "llvm-mca"


def mca_cycles(triple, cpu, lines):
    asm = ".Lloop:\n" + "\n".join(lines) + "\n"
    # The dot-product loops assemble only with the feature (the A72 lacks it: see main).
    attr = ["-mattr=+dotprod"] if triple.startswith("aarch64") else []
    out = subprocess.run(
        [MCA, f"-mtriple={triple}", f"-mcpu={MODEL[cpu]}", "-iterations=200"] + attr,
        input=asm, capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[0] if out.stderr else "llvm-mca failed"
    total = int(re.search(r"Total Cycles:\s+(\d+)", out.stdout).group(1))
    iters = int(re.search(r"Iterations:\s+(\d+)", out.stdout).group(1))
    return total / iters, None


MCA = llvm_mca()


def main():
    binary, needles = sys.argv[1], sys.argv[2:]
    arch = "aarch64" if "aarch64" in binary else "armv7"
    objdump = "aarch64-linux-gnu-objdump" if arch == "aarch64" else "arm-linux-gnueabihf-objdump"
    triple = "aarch64-linux-gnu" if arch == "aarch64" else "armv7a-linux-gnueabihf"
    # LLVM models no in-order core (A53, A7) nor the A76 in AArch32 state: armv7 code is timed
    # on the A72's model (a Pi 4 on a 32-bit OS).
    # Each loop is timed on the CPU its kernel set runs on: the `sdot` kernels where the CPU
    # has the dot product (A76, timed on the N1's model), the others on the A72 (which the
    # kernel dispatch gives them: a CPU with `dotprod` runs the `sdot` kernels).
    print(f"| {arch} function | loop | instructions | MACs/iter | MAC/instruction | CPU | "
          "cycles/iter | MAC/cycle | % of peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for needle in needles:
        funcs = disassemble(objdump, binary, needle)
        if not funcs:
            print(f"| {needle} | not found in {binary} | | | | | | | |")
            continue
        for name, body in sorted(funcs.items()):
            # module::function (module::Type::method)
            parts = name.split("@")[0].split("::")
            short = "::".join(parts[-3:] if parts[-2][:1].isupper() else parts[-2:])
            for s, e in innermost_loops(body):
                loop = body[s:e + 1]
                n_mac = sum(macs(arch, mn, ops) for _, mn, ops in loop)
                if n_mac == 0:
                    continue
                lines = []
                for _, mn, ops in loop:
                    ops = re.sub(r"\b[0-9a-f]{4,}\s*<.*>", ".Lloop", ops)
                    ops = re.sub(r"\s*//.*$|\s*@.*$", "", ops)
                    lines.append(f"{mn} {ops}".strip())
                dot = any(mn.lower() in ("sdot", "udot") for _, mn, _ in loop)
                cpu = "cortex-a76" if dot else "cortex-a72"
                cyc, err = mca_cycles(triple, cpu, lines)
                if cyc is None:
                    cols = [f"({err})", "", ""]
                else:
                    rate = n_mac / cyc
                    cols = [f"{cyc:.2f}", f"{rate:.2f}", f"{100 * rate / PEAK[cpu]:.0f} %"]
                print(f"| `{short}` | {body[s][0]:#x}-{body[e][0]:#x} | {len(loop)} | {n_mac} | "
                      f"{n_mac / len(loop):.2f} | {cpu} | " + " | ".join(cols) + " |")


if __name__ == "__main__":
    main()
