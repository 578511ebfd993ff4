"""The benchmark connector: stdlib only, spoken to over stdin/stdout like any connector.

It reads START on stdin, proves the account with IDENTITY, then streams one RECORD per line of
a JSON-lines file (each line is a record's `data`, `id` first), a STATE with the newest
`sent_at`, and DONE. An API run (`bench-api`) names its file and account in settings
(BENCH_DATA, BENCH_ACCOUNT); an import (`bench-export`) gets a folder holding `account` and
`records.jsonl` as its artifact. Lines are passed through without re-encoding, so the
connector costs little next to the runtime it feeds.
"""

import json
import os
import sys
import time
from typing import Any

STREAM = "bench_messages"
PROGRESS_EVERY = 10_000


def _now() -> str:
    moment = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
    return f"{stamp}.{int(moment * 1000) % 1000:03d}Z"


def _key(line: bytes) -> bytes:
    """The JSON-encoded `id` of a record line; fast when `id` is first and unescaped."""
    if line.startswith(b'{"id":"'):
        end = line.index(b'"', 7)
        key = line[6 : end + 1]
        if b"\\" not in key:
            return key
    return json.dumps(json.loads(line)["id"]).encode()


def _source(start: dict[str, Any]) -> tuple[str, str]:
    artifact = start.get("artifact")
    if artifact:
        folder = artifact["path"]
        with open(os.path.join(folder, "account"), encoding="utf-8") as handle:
            account = handle.read().strip()
        return account, os.path.join(folder, "records.jsonl")
    return os.environ["BENCH_ACCOUNT"], os.environ.get("BENCH_DATA", "")


def main() -> int:
    start = json.loads(sys.stdin.readline())
    out = open(sys.stdout.fileno(), "wb", buffering=1 << 16, closefd=False)  # noqa: SIM115

    def send(message: dict[str, Any]) -> None:
        out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    account, path = _source(start)
    send({"type": "IDENTITY", "claim": "bench_account", "value": account})
    count = 0
    if start.get("collection_mode") != "identify":
        head = (
            b'{"type":"RECORD","stream":"'
            + STREAM.encode()
            + b'","emitted_at":"'
            + _now().encode()
            + b'","key":'
        )
        last = b""
        with open(path, "rb") as handle:
            for raw in handle:
                line = raw.rstrip(b"\r\n")
                if not line:
                    continue
                out.write(head + _key(line) + b',"data":' + line + b"}\n")
                count += 1
                last = line
                if count % PROGRESS_EVERY == 0:
                    send(
                        {"type": "PROGRESS", "message": "reading", "stream": STREAM, "count": count}
                    )
        if last:
            send(
                {
                    "type": "STATE",
                    "stream": STREAM,
                    "cursor": {"sent_at": json.loads(last)["sent_at"]},
                }
            )
    send({"type": "DONE", "status": "succeeded", "records_emitted": count})
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
