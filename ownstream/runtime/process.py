"""Transports: how a connector's JSON lines reach the runtime.

A manifest with `run.command` always runs as a subprocess (any language) whose JSON lines the
runtime parses. A built-in Python connector (`run.python`) runs in-process through the SDK and
hands its message dicts over directly (no JSON round trip), or as a subprocess when
OWNSTREAM_CONNECTOR_TRANSPORT=subprocess; the validator applies the same checks to both.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import IO, Any, Protocol

import orjson

from ownstream.errors import ConnectorNotRunnable
from ownstream.model import ConnectorManifest
from ownstream.registry.manifests import resolve_command
from ownstream.runtime.sdk import drive, load_entry

# The only variables of the server's own environment a connector process inherits. Secrets
# and settings arrive solely through the connection's own env fragment.
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT", "PYTHONPATH")
STDERR_TAIL_LINES = 50


class Transport(Protocol):
    def messages(self) -> Iterator[bytes | Mapping[str, Any]]:
        """JSON lines (a subprocess) or message dicts (in-process), in order."""
        ...

    def close(self) -> None: ...

    def kill(self) -> None:
        """Stop the connector now (safe from another thread); its output then ends."""

    @property
    def exit_code(self) -> int | None: ...

    @property
    def stderr_tail(self) -> str: ...


class InProcessTransport:
    """Message dicts from Python in this process: an SDK generator driven here, or messages
    the runtime makes itself (the lines of an owner's push)."""

    def __init__(self, messages: Iterator[Mapping[str, Any]]) -> None:
        self._messages = messages

    def messages(self) -> Iterator[bytes | Mapping[str, Any]]:
        yield from self._messages

    def close(self) -> None:
        close = getattr(self._messages, "close", None)
        if close is not None:
            close()

    def kill(self) -> None:
        pass  # a generator cannot be interrupted from outside; it ends after DONE anyway

    @property
    def exit_code(self) -> int | None:
        return 0

    @property
    def stderr_tail(self) -> str:
        return ""


class SubprocessTransport:
    def __init__(
        self, command: list[str], start: Mapping[str, Any], env: Mapping[str, str], cwd: str | None
    ) -> None:
        base = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**base, **env},
                cwd=cwd,
            )
        except OSError as exc:
            raise ConnectorNotRunnable(f"cannot start connector {command[0]!r}: {exc}") from exc
        assert self._process.stdin and self._process.stdout and self._process.stderr
        self._drain = threading.Thread(target=self._read_stderr, args=(self._process.stderr,))
        self._drain.daemon = True
        self._drain.start()
        try:
            self._process.stdin.write(orjson.dumps(start) + b"\n")
            self._process.stdin.close()
        except BrokenPipeError:
            pass  # the connector exited at once; its exit code tells why

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._stderr.append(line.decode(errors="replace").rstrip())

    def messages(self) -> Iterator[bytes | Mapping[str, Any]]:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line.strip():
                yield line

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()

    def close(self) -> None:
        self.kill()
        self._process.wait()
        self._drain.join(timeout=5)
        if self._process.stdout is not None:
            self._process.stdout.close()

    @property
    def exit_code(self) -> int | None:
        return self._process.poll()

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)


def open_transport(
    manifest: ConnectorManifest, start: Mapping[str, Any], env: Mapping[str, str]
) -> Transport:
    if manifest.python_entry is not None:
        if os.environ.get("OWNSTREAM_CONNECTOR_TRANSPORT") == "subprocess":
            command = [sys.executable, "-m", "ownstream.runtime.sdk", manifest.python_entry]
            return SubprocessTransport(command, start, env, None)
        return InProcessTransport(drive(load_entry(manifest.python_entry), start, env))
    return SubprocessTransport(resolve_command(manifest), start, env, manifest.base_dir)
