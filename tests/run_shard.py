#!/usr/bin/env python3
"""Runs shard K of N of a Python unittest file: its test methods in their loader's order, every
N-th from the K-th (K in 1..N). CTest runs the shards as separate tests, so a long CLI suite
spreads over the cores instead of holding one of them to the end of the run.

Usage: run_shard.py FILE K N"""
import importlib.util
import os
import sys
import unittest


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


def shard(tests, k, n):
    """Shard k (1..n) of `tests`: every n-th from the k-th. The n shards partition `tests`."""
    return tests[k - 1::n]


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: run_shard.py FILE K N")
    path, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if not 1 <= k <= n:
        sys.exit(f"run_shard.py: shard {k} of {n} does not exist: K must be in 1..N")
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = list(flatten(unittest.defaultTestLoader.loadTestsFromModule(module)))
    mine = shard(tests, k, n)
    if not mine:
        sys.exit(f"run_shard.py: shard {k} of {n} of {path} has no tests: use fewer shards")
    print(f"shard {k}/{n}: {len(mine)} of {len(tests)} tests")
    result = unittest.TextTestRunner(verbosity=2).run(unittest.TestSuite(mine))
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
