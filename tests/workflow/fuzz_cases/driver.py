"""Run ``mcpp spawn --dry-run`` on many inputs in one interpreter; one JSON line per input.

Usage: ``python driver.py CASES.jsonl``: each line of CASES is ``{"file": PATH, "params":
[K=V, ...]}``. Each output line is ``{"file", "code", "stderr", "crash"}`` where ``crash`` is the
traceback of an exception that escaped the command line (there must be none) and ``code`` its
exit code. Used by tests/test_bounded.py under a memory limit and a timeout.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback

from mcpp.cli.main import main


def run_one(file: str, params: list[str]) -> dict[str, object]:
    err, out = io.StringIO(), io.StringIO()
    crash = None
    code: object = None
    argv = ["spawn", "--dry-run", file, *(f"--param={p}" for p in params)]
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
        except BaseException:
            crash = traceback.format_exc()
    return {"file": file, "code": code, "stderr": err.getvalue(), "crash": crash}


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8", errors="surrogateescape") as cases:
        for line in cases:
            case = json.loads(line)
            result = run_one(case["file"], case["params"])
            print(json.dumps(result, ensure_ascii=True), flush=True)
