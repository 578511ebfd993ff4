"""`ownstream mcp`: the MCP server on stdin/stdout, for a desktop assistant that starts it.

It reads the local data directory directly, as `serve` does, as one client token taken from
`OWNSTREAM_TOKEN` or a file (never from the command line, where `ps` and shell history would
show it). The token is checked at start and again on every call, so a revoked grant fails the
next call. Only MCP messages go to stdout; diagnostics go to stderr.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server

from ownstream.errors import AuthenticationError, InvalidArgument
from ownstream.home import Home
from ownstream.logs import configure
from ownstream.mcp.server import build_server, client_bearer
from ownstream.model import Bearer

TOKEN_ENV = "OWNSTREAM_TOKEN"


def read_token(token_file: Path | None) -> str:
    """The client token, from `token_file` if given, else from `OWNSTREAM_TOKEN`."""
    try:
        token = token_file.read_text() if token_file else os.environ.get(TOKEN_ENV, "")
    except OSError as exc:
        raise InvalidArgument(f"cannot read {token_file}: {exc}", param="token_file") from exc
    if not token.strip():
        raise AuthenticationError(
            f"set {TOKEN_ENV} or pass --token-file: a client token, as `ownstream grants "
            "create` prints it"
        )
    return token.strip()


def serve_stdio(home: Home, token: str, log_level: str) -> None:
    """Serve until the assistant closes stdin. A token that cannot read fails here, before
    any MCP message, so the assistant's log shows why; logs go to stderr."""
    authorization = f"Bearer {token}"

    def credential(_request: Any) -> Bearer:
        # the local data directory has no public URL: a token bound to either resource reads
        return client_bearer(home, authorization, None)

    credential(None)
    configure(log_level, "text")
    server = build_server(home, credential)
    home.usage.start()
    try:
        anyio.run(_serve, server)
    finally:
        home.usage.stop()


async def _serve(server: Server[Any]) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
