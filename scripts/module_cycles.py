#!/usr/bin/env python3
"""Finds modules of the project that import each other, directly or in a loop.

    python3 scripts/module_cycles.py     # exit 0: none; exit 1: each loop printed

A module's imports are the paths it names from its own crate (`crate::`, `super::`, `self::`,
and its child modules by name), resolved to the file that defines them; `pub(crate)` and
`pub(super)` are visibility, not imports, and a test module (`#[cfg(test)] mod tests { .. }`)
is left out. A parent that only declares its children (`mod x;`) and re-exports them does not
import them back, so a layout where shared types live in a leaf module passes.
"""
import os
import re
import sys

CRATES = ["src", "kernels/src", "quantize/src"]
PATH = re.compile(r"\b((?:crate|super|self)(?:::\w+)*)(::\{[^}]*\})?")
CHILD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)


def modules(root):
    """Module path (tuple) -> file, for one crate (lib.rs and main.rs are both the root)."""
    found = {}
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".rs"):
                parts = os.path.relpath(os.path.join(d, f), root)[:-3].split("/")
                if parts[-1] in ("mod", "lib", "main"):
                    parts = parts[:-1]
                found.setdefault(tuple(parts), []).append(os.path.join(d, f))
    return found


def imports(mod, src, known):
    def resolve(segs):
        if segs[0] == "crate":
            base, segs = [], segs[1:]
        elif segs[0] == "super":
            base = list(mod)
            while segs and segs[0] == "super":
                base, segs = base[:-1], segs[1:]
        else:  # self
            base, segs = list(mod), segs[1:]
        full = base + segs
        for n in range(len(full), -1, -1):
            if tuple(full[:n]) in known:
                return tuple(full[:n])
        return None

    cut = src.find("#[cfg(test)]\nmod tests {")
    if cut >= 0:
        src = src[:cut]
    src = re.sub(r"//.*", "", src)
    out = set()
    for m in PATH.finditer(src):
        before = src[max(0, m.start() - 4) : m.start()]
        if before == "pub(" or before.endswith("in "):
            continue
        segs = m.group(1).split("::")
        if m.group(2):
            for item in m.group(2)[3:-1].split(","):
                item = item.strip()
                if item:
                    out.add(resolve(segs + item.split("::")[:1]))
        else:
            out.add(resolve(segs))
    for child in CHILD.findall(src):
        for m in re.finditer(r"(?<![\w:])" + child + r"::(\w+|\{)", src):
            extra = [] if m.group(1) == "{" else [m.group(1)]
            out.add(resolve(["self", child] + extra))
    out.discard(None)
    out.discard(mod)
    return out


def loops(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, result, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                result.append(comp)

    for v in edges:
        if v not in index:
            visit(v)
    return result


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    bad = 0
    for root in CRATES:
        known = modules(root)
        edges = {
            mod: set().union(*(imports(mod, open(f).read(), known) for f in files))
            for mod, files in known.items()
        }
        name = lambda m: "::".join(m) or "(crate root)"
        for comp in loops(edges):
            bad += 1
            print(f"{root}: modules that import each other:")
            for m in sorted(comp):
                back = sorted(name(t) for t in edges[m] if t in comp)
                print(f"  {name(m)} imports {', '.join(back)}")
    if bad:
        sys.exit(1)
    print("no module imports one that imports it back")


if __name__ == "__main__":
    main()
