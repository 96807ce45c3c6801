#!/usr/bin/env python3
"""Print the longest functions in src/ and kernels/ (default: the 10 longest).

Uses Universal Ctags (`apt-get install universal-ctags`) for each function's
first and last line, so the count includes the signature and the braces.
Usage: tools/longest_functions.py [N] [--repo DIR]
"""
import argparse
import pathlib
import shutil
import subprocess
import sys

SOURCE_DIRS = ("src", "kernels")
SUFFIXES = (".cpp", ".h", ".cu", ".cuh")


def functions(repo):
    files = sorted(str(p.relative_to(repo)) for d in SOURCE_DIRS
                   for p in (repo / d).rglob("*") if p.suffix in SUFFIXES)
    out = subprocess.run(
        ["ctags", "-x", "--_xformat=%n\t%e\t%F\t%{scope}\t%N",
         "--fields=+ne", "--language-force=C++",
         "--kinds-C++=f", "-D__launch_bounds__(x)=", "-D__global__=",
         "-D__device__=", "-D__host__=", "-D__forceinline__=", *files],
        cwd=repo, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        start, end, path, scope, name = line.split("\t")
        if not end.isdigit():
            continue
        # Drop the names ctags makes up for anonymous namespaces.
        parts = [p for p in scope.split("::")
                 if p and p != "-" and not p.startswith("__anon")]
        qualified = "::".join(parts + [name])
        yield int(end) - int(start) + 1, f"{path}:{start}", qualified


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=10)
    parser.add_argument("--repo", default=pathlib.Path(__file__).resolve().parent.parent,
                        type=pathlib.Path)
    args = parser.parse_args()
    if shutil.which("ctags") is None:
        sys.exit("error: ctags not found; install Universal Ctags (apt-get install universal-ctags)")
    rows = sorted(functions(args.repo), key=lambda r: (-r[0], r[1]))[:args.count]
    for lines, where, name in rows:
        print(f"{lines:5d}  {name}  {where}")


if __name__ == "__main__":
    main()
