"""What the CLI tests (test_cli.py, test_batch_cli.py) share: where the binary, the reference
data and the tiny model are, and the tiny model's goldens."""
import json
import os

BIN = os.path.join(os.environ.get("GPT2_BINARY_DIR", "build"), "gpt2-gen")
SHARED = os.environ.get("GPT2_SHARED_DIR", "../shared")
TINY = os.path.join(os.environ.get("GPT2_TEST_MODELS", "build/test-models"), "tiny-fp32")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


GOLDEN = read_json(os.path.join(SHARED, "golden/tiny-gpt2/reference.json"))
PROCESSORS = read_json(os.path.join(SHARED, "golden/tiny-gpt2/reference_processors.json"))
