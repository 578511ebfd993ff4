"""Servers the benchmarks start and stop: a free loopback port, a process that is up when a
probe path answers, and `ownstream serve` on a home."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ownstream.dev.processes import stop_process

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ownstream_script() -> str:
    script = shutil.which("ownstream", path=str(Path(sys.executable).parent))
    if script is None:
        raise RuntimeError("no `ownstream` script beside this interpreter (pip install -e .)")
    return script


@contextlib.contextmanager
def server(command: list[str], port: int, probe: str) -> Iterator[str]:
    """A server process on a loopback port, up when `probe` answers, stopped after."""
    import httpx

    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + probe, timeout=2.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{command[0]} did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        stop_process(process, grace=15)


def ownstream_server(home: Path) -> contextlib.AbstractContextManager[str]:
    """`ownstream serve` (with its worker) on `home`, on a free loopback port."""
    port = free_port()
    command = [ownstream_script(), "--home", str(home), "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning"]
    return server(command, port, "/v1/schema")
