"""An owner_artifact test connector (stdlib only): imports a journal export, one JSON per line.

Line 1 is the header {"format": "journal-export/1", "user": ID?, "exported_at": ISO?}; a file
without it is foreign and is refused. Every further line is a journal entry, except:
    {"_op": "delete", "entry_id": ...}   the export says the entry is gone
    {"_skip": MESSAGE}                   a part of the export this parser does not model
    {"_crash": CODE}                     exit with CODE at once (a parser crash mid-stream)
A line that is not JSON makes the import fail with an error naming the line. The file is read
line by line, never whole. The optional setting JOURNAL_TZ is echoed in the first PROGRESS.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

FORMAT = "journal-export/1"


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def fail(emitted: int, code: str, message: str) -> int:
    emit(
        {
            "type": "DONE",
            "status": "failed",
            "records_emitted": emitted,
            "error": {
                "code": code,
                "message": message,
                "retryable": False,
                "recovery_hint": {"action": "provide_valid_artifact"},
            },
        }
    )
    return 1


def main() -> int:
    start = json.loads(sys.stdin.readline())
    artifact = start.get("artifact") or {}
    name = artifact.get("name", "?")
    emitted = 0
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tz = os.environ.get("JOURNAL_TZ", "unset")
    emit({"type": "PROGRESS", "message": f"reading {name} (tz {tz})"})
    with open(artifact["path"], encoding="utf-8") as handle:
        try:
            header = json.loads(handle.readline() or "null")
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            return fail(0, "foreign_artifact", f"{name} is not a journal export (no header)")
        if header.get("user"):
            emit({"type": "IDENTITY", "claim": "journal_user", "value": header["user"]})
        emitted_at = header.get("exported_at") or now
        for number, line in enumerate(handle, start=2):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                return fail(emitted, "corrupt_artifact", f"line {number} of {name} is not JSON")
            if "_crash" in entry:
                return int(entry["_crash"])
            if "_skip" in entry:
                emit(
                    {
                        "type": "SKIP_RESULT",
                        "stream": None,
                        "reason": "file_not_modelled",
                        "message": entry["_skip"],
                        "recovery_hint": {"action": "not_retriable"},
                    }
                )
                continue
            message = {
                "type": "RECORD",
                "stream": "journal_entries",
                "key": entry.get("entry_id"),
                "data": {k: v for k, v in entry.items() if not k.startswith("_")},
                "emitted_at": emitted_at,
            }
            if entry.get("_op") == "delete":
                message["op"] = "delete"
            emit(message)
            emitted += 1
    emit({"type": "DONE", "status": "succeeded", "records_emitted": emitted})
    return 0


if __name__ == "__main__":
    sys.exit(main())
