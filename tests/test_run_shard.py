#!/usr/bin/env python3
"""run_shard.py's shards partition a suite: every test runs in exactly one shard, whatever the
number of shards (a test that fell between shards would never run in CI)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_shard import shard  # noqa: E402


class Shards(unittest.TestCase):
    def test_the_shards_partition_the_tests(self):
        for count in range(0, 40):
            tests = [f"t{i}" for i in range(count)]
            for n in range(1, 7):
                seen = [t for k in range(1, n + 1) for t in shard(tests, k, n)]
                self.assertEqual(sorted(seen), sorted(tests), (count, n))
                self.assertEqual(len(seen), len(set(seen)), (count, n))


if __name__ == "__main__":
    unittest.main()
