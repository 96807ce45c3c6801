#!/usr/bin/env python3
"""Turns a kernels/*.cu file into C++ that cuda-emu compiles with the host compiler.

Two CUDA constructs are not C++ and cannot be macros:
  kernel<T><<<grid, block, smem, stream>>>(args)  ->  ::emu::Launch(grid, block, smem, stream).run(kernel<T>, args)
  extern __shared__ T name[];                    ->  T* const name = static_cast<T*>(::emu::dynamic_shared_memory());
Everything else is left alone; replacements stay on their line, so compiler and sanitizer
messages point at the original file (a #line directive names it).

Usage: rewrite_cu.py <input.cu> <output.cpp>
"""
import re
import sys

LAUNCH = re.compile(r"([A-Za-z_]\w*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\(\s*(\)?)")
EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w:]+)\s+(\w+)\s*\[\s*\]\s*;")


def rewrite(text: str) -> str:
    def launch(m: re.Match) -> str:
        kernel, config, no_args = m.group(1), m.group(2), m.group(3)
        return f"::emu::Launch({config}).run({kernel}" + (")" if no_args else ", ")

    out, n = LAUNCH.subn(launch, text)
    out = EXTERN_SHARED.sub(
        lambda m: f"{m.group(1)}* const {m.group(2)} = static_cast<{m.group(1)}*>(::emu::dynamic_shared_memory());",
        out)
    if "<<<" in out or re.search(r"extern\s+__shared__", out):
        raise SystemExit("rewrite_cu.py: a launch or extern __shared__ declaration it does not understand is left")
    return out


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    body = f'#line 1 "{src}"\n' + rewrite(text)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(body)


if __name__ == "__main__":
    main()
