"""The tools' one way to stop on bad input: one line on stderr, `error: ...`, exit status 1
(the convention gpt2-gen itself follows), and reading a JSON file under it."""
import json
import sys


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def read_json(path, what):
    """The parsed JSON document at `path`; fail()s naming the file and `what` it should hold."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"{path}: cannot read {what} ({e})")
