#!/usr/bin/env python3
"""Checks that #include "..." in src/ and kernels/ goes one way: down the layers below.

A file may include a file of its own folder or of any folder in a lower layer; never a higher
layer, and never a peer in the same layer (the CPU and CUDA backends do not know each other;
nor do the model and the tokenizer). An include that names no file of the tree fails too, so a
new folder cannot slip past the rule by being unknown. Exits 1 with `file:line: message` for
each violation. Usage: tools/check_layers.py [--repo DIR]
"""
import argparse
import pathlib
import re
import sys

# The layers, highest first: the one statement of the include rule (README "Architecture").
# A folder is src/NAME, except `kernels`, the top-level CUDA kernel folder.
LAYERS = [
    ["app"],             # the command line, the run, --benchmark, --explain; picks a backend
    ["cpu", "cuda"],     # the two backends: each implements engine/'s Backend
    ["kernels"],         # the CUDA kernels and their launchers (kernels/)
    ["engine"],          # the Backend interface, the generation loop, K/V ring, sampling rules
    ["model", "text"],   # weights and config; tokenizer and stop strings
    ["base"],            # errors, file reads, half floats, build facts
]
RANK = {folder: rank for rank, layer in enumerate(LAYERS) for folder in layer}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def folder_of(path, repo):
    rel = path.relative_to(repo)
    if rel.parts[0] == "kernels":
        return "kernels"
    return rel.parts[1] if len(rel.parts) > 2 else None  # src/NAME/file


def resolve(name, including, repo):
    """The file an include names: its own folder first, then src/ and kernels/ (CMake's
    include path), a generated header by its template (src/base/build_info.h.in)."""
    for base in (including.parent, repo / "src", repo / "kernels"):
        for candidate in (base / name, base / (name + ".in")):
            if candidate.is_file():
                return candidate.resolve()
    return None


def violations(repo):
    sources = [p for d in ("src", "kernels") for p in sorted((repo / d).rglob("*"))
               if p.suffix in (".h", ".cpp", ".cu", ".cuh", ".inc", ".in")]
    for path in sources:
        here = folder_of(path, repo)
        if here is None:
            yield f"{path.relative_to(repo)}:1: a file directly in src/; move it into its layer's folder"
            continue
        if here not in RANK:
            yield f"{path.relative_to(repo)}:1: folder '{here}' is in no layer of tools/check_layers.py"
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            where = f"{path.relative_to(repo)}:{lineno}"
            target = resolve(m.group(1), path, repo)
            if target is None:
                yield f'{where}: "{m.group(1)}" is no file of src/ or kernels/ (name it from src/, e.g. "model/config.h")'
                continue
            there = folder_of(target, repo.resolve())
            if there == here:
                continue
            if there not in RANK:
                yield f'{where}: "{m.group(1)}" is in folder \'{there}\', which is in no layer'
            elif RANK[there] < RANK[here]:
                yield f'{where}: {here}/ includes "{m.group(1)}" from {there}/, a higher layer'
            elif RANK[there] == RANK[here]:
                yield f'{where}: {here}/ includes "{m.group(1)}" from {there}/, a peer in the same layer'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=pathlib.Path(__file__).resolve().parent.parent, type=pathlib.Path)
    repo = parser.parse_args().repo.resolve()
    found = list(violations(repo))
    for v in found:
        print(v)
    if found:
        print(f"check_layers: {len(found)} include(s) against the layers (app > cpu|cuda > kernels > "
              "engine > model|text > base); move the code down or the include up", file=sys.stderr)
        return 1
    print("check_layers: every include goes down the layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
