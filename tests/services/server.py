"""An ownstream app served by uvicorn in a thread of the test process, on a free loopback port:
the real HTTP server a browser test drives (the store stays reachable from the test)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from ownstream.api.app import create_app
from ownstream.home import Home
from tests.services import free_port

START_SECONDS = 20


@contextmanager
def serving(home: Home) -> Iterator[str]:
    """Serve `home` until the block ends; yields the server's URL (also its public URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(create_app(home, url), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_SECONDS
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
