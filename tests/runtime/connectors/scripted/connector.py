"""A scripted test connector: plain stdlib Python, no SDK; a JSON script decides what it says.

The script file (setting `script`, env SCRIPTED_SCRIPT) is a JSON object:

    {"identity": "acct-1",        # answered in identify runs (null: prove nothing)
     "identify": [STEP, ...],     # optional: what an identify run says instead
     "steps": [STEP, ...]}        # what a collection run says

A STEP is a protocol message (an object with "type"), written as one JSON line, or a directive:
    {"raw": TEXT}                 write TEXT as a line, as is (bad JSON, say)
    {"exit": CODE}                stop now with this exit code (a crash)
    {"sleep": SECONDS}
    {"touch": PATH}               create a file (tell a test the run has started)
    {"wait_for": PATH}            block until a file exists (at most 30 s)

With SCRIPTED_LOG set, each START and the environment the connector saw are appended there
as one JSON line, so tests can check what reached this process and what did not.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def play(steps: list[dict[str, Any]]) -> int:
    for step in steps:
        if "type" in step:
            emit(json.dumps(step, separators=(",", ":")))
        elif "raw" in step:
            emit(step["raw"])
        elif "exit" in step:
            return int(step["exit"])
        elif "sleep" in step:
            time.sleep(float(step["sleep"]))
        elif "touch" in step:
            Path(step["touch"]).touch()
        elif "wait_for" in step:
            deadline = time.monotonic() + 30
            while not Path(step["wait_for"]).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        else:
            print(f"unknown step {step!r}", file=sys.stderr)
            return 2
    return 0


def main() -> int:
    start = json.loads(sys.stdin.readline())
    log = os.environ.get("SCRIPTED_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"start": start, "env": dict(os.environ)}) + "\n")
    script_path = os.environ.get("SCRIPTED_SCRIPT")
    if not script_path:
        print("SCRIPTED_SCRIPT is not set", file=sys.stderr)
        return 2
    script = json.loads(Path(script_path).read_text(encoding="utf-8"))
    claim = os.environ.get("SCRIPTED_CLAIM", "account_id")
    if start.get("collection_mode") == "identify":
        steps = script.get("identify")
        if steps is None:
            steps = []
            if script.get("identity") is not None:
                steps.append({"type": "IDENTITY", "claim": claim, "value": script["identity"]})
            steps.append({"type": "DONE", "status": "succeeded", "records_emitted": 0})
        return play(steps)
    return play(script.get("steps", []))


if __name__ == "__main__":
    sys.exit(main())
