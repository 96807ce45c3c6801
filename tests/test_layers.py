#!/usr/bin/env python3
"""tools/check_layers.py: the source tree passes it, and it fails, naming file and line, on an
include that goes up a layer, sideways to a peer, or to no file at all (each planted in a copy
of src/ and kernels/)."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.path.abspath(os.environ.get("GPT2_SOURCE_DIR", "."))
CHECK = os.path.join(SOURCE, "tools", "check_layers.py")


def run_check(repo):
    return subprocess.run([sys.executable, CHECK, "--repo", repo], capture_output=True, text=True)


class Layers(unittest.TestCase):
    def test_the_tree_keeps_the_layers(self):
        r = run_check(SOURCE)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def planted(self, path, line):
        """check_layers on a copy of the tree with `line` appended to `path`."""
        with tempfile.TemporaryDirectory() as tmp:
            for d in ("src", "kernels"):
                shutil.copytree(os.path.join(SOURCE, d), os.path.join(tmp, d))
            target = os.path.join(tmp, path)
            with open(target, encoding="utf-8") as f:
                n = sum(1 for _ in f) + 1
            with open(target, "a", encoding="utf-8") as f:
                f.write(line + "\n")
            return run_check(tmp), f"{path}:{n}"

    def assert_refused(self, path, line, why):
        r, where = self.planted(path, line)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(where, r.stdout)
        self.assertIn(why, r.stdout)

    def test_an_upward_include_fails(self):
        self.assert_refused("src/engine/generator.cpp", '#include "app/cli.h"', "a higher layer")
        self.assert_refused("src/model/config.h", '#include "engine/kv_ring.h"', "a higher layer")
        self.assert_refused("kernels/gemv.cu", '#include "cuda/cuda_variants.h"', "a higher layer")

    def test_a_peer_include_fails(self):
        self.assert_refused("src/cpu/membw.h", '#include "cuda/backend_cuda.h"', "a peer")
        self.assert_refused("src/text/tokenizer.h", '#include "model/dtype.h"', "a peer")

    def test_an_unknown_include_fails(self):
        self.assert_refused("src/base/half.h", '#include "half_two.h"', "no file of src/")

    def test_downward_and_same_folder_includes_pass(self):
        for path, line in (("src/app/cli.h", '#include "cpu/membw.h"'),
                           ("src/cuda/cuda_variants.h", '#include "kernels.h"'),
                           ("src/engine/sampler.h", '#include "engine/kv_ring.h"')):
            r, _ = self.planted(path, line)
            self.assertEqual(r.returncode, 0, path + ": " + r.stdout)


if __name__ == "__main__":
    unittest.main()
