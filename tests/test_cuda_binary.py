#!/usr/bin/env python3
"""The CUDA build holds the device code it claims: `cuobjdump --list-elf` and `--list-ptx` on
gpt2-gen list exactly the configured architectures (SASS for each real one, PTX for each
virtual one, the same set in every fat binary), and `gpt2-gen --version` prints that list.

CMake registers it (label cuda_build) only when the CUDA backend is built, and passes
GPT2_CUDA_ARCHITECTURES_BUILT (the CMAKE_CUDA_ARCHITECTURES list with `native` resolved, comma
separated) and GPT2_CUOBJDUMP (the cuobjdump found, or ...-NOTFOUND). Usage by hand:
  GPT2_CUDA_ARCHITECTURES_BUILT=75-real,90 GPT2_CUOBJDUMP=cuobjdump tests/test_cuda_binary.py [BINARY]"""
import collections
import os
import re
import subprocess
import sys
import unittest

BINARY_DIR = os.environ.get("GPT2_BINARY_DIR", "build")
BINARY = os.path.join(BINARY_DIR, "gpt2-gen")
ARCHITECTURES = os.environ.get("GPT2_CUDA_ARCHITECTURES_BUILT", "")
CUOBJDUMP = os.environ.get("GPT2_CUOBJDUMP", "cuobjdump")


def expected_codes(architectures):
    """CMake's list ("75-real,90") -> ({SASS archs}, {PTX archs}) as {"75", "90"}; None for a
    value that is no list (all, all-major)."""
    sass, ptx = set(), set()
    for arch in filter(None, architectures.split(",")):
        m = re.fullmatch(r"([0-9]+a?)(-real|-virtual)?", arch)
        if not m:
            return None
        if m.group(2) != "-virtual":
            sass.add(m.group(1))
        if m.group(2) != "-real":
            ptx.add(m.group(1))
    return sass, ptx


def listed(kind, binary):
    """cuobjdump --list-elf / --list-ptx: how many fat-binary entries each architecture has
    ({"75": 9, ...}, from names such as gpt2-gen.3.sm_75.cubin or gpt2-gen.1.sm_90.ptx)."""
    r = subprocess.run([CUOBJDUMP, f"--list-{kind}", binary], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"cuobjdump --list-{kind} {binary} failed: {r.stderr.strip()}")
    suffix = "cubin" if kind == "elf" else "ptx"
    counts = collections.Counter(re.findall(rf"\.sm_([0-9]+a?)\.{suffix}$", r.stdout, re.M))
    entries = sum(1 for line in r.stdout.splitlines() if re.match(rf"\s*{kind.upper()} file", line))
    if entries != sum(counts.values()):
        raise AssertionError(f"unparsed cuobjdump --list-{kind} output:\n{r.stdout}")
    return counts


def version_codes(binary):
    """The architectures `gpt2-gen --version` names on its CUDA line: ({SASS}, {PTX})."""
    r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"{binary} --version failed: {r.stderr.strip()}")
    line = next((l for l in r.stdout.splitlines() if l.startswith("CUDA:")), None)
    if line is None:
        raise AssertionError(f"no CUDA: line in --version:\n{r.stdout}")
    sass_part, _, ptx_part = line.partition("+ PTX")
    return (set(re.findall(r"\bsm_([0-9]+a?)\b", sass_part)),
            set(re.findall(r"\bcompute_([0-9]+a?)\b", ptx_part))), line


def names(prefix, codes):
    return " ".join(f"{prefix}_{c}" for c in sorted(codes)) or "none"


class CudaBinary(unittest.TestCase):
    def setUp(self):
        self.expected = expected_codes(ARCHITECTURES)
        if self.expected is None:
            self.skipTest(f"CMAKE_CUDA_ARCHITECTURES={ARCHITECTURES}: not a list, nothing exact to check")
        if not self.expected[0] and not self.expected[1]:
            self.fail("GPT2_CUDA_ARCHITECTURES_BUILT is empty (CMake passes it to this test)")
        if CUOBJDUMP.endswith("NOTFOUND"):
            self.fail("cuobjdump not found: tools/setup.sh installs it (PyPI nvidia-cuda-cuobjdump) "
                      "where the CUDA toolkit has none")

    def test_device_code_is_the_configured_architectures(self):
        sass, ptx = self.expected
        elf, ptx_listed = listed("elf", BINARY), listed("ptx", BINARY)
        self.assertEqual(set(elf), sass, f"SASS in {BINARY}: {names('sm', elf)}; configured: {names('sm', sass)}")
        self.assertEqual(set(ptx_listed), ptx,
                         f"PTX in {BINARY}: {names('compute', ptx_listed)}; configured: {names('compute', ptx)}")
        # Every translation unit with device code carries every architecture: one count for all.
        counts = {f"sm_{a} SASS": n for a, n in elf.items()}
        counts.update({f"compute_{a} PTX": n for a, n in ptx_listed.items()})
        self.assertEqual(len(set(counts.values())), 1, f"fat binaries differ in what they hold: {counts}")

    def test_version_prints_the_same_architectures(self):
        (sass, ptx), line = version_codes(BINARY)
        self.assertEqual((sass, ptx), self.expected,
                         f"--version says {line!r}; configured: SASS {names('sm', self.expected[0])}, "
                         f"PTX {names('compute', self.expected[1])}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        BINARY = sys.argv.pop(1)
    unittest.main()
