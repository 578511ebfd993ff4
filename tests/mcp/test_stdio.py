"""`ownstream mcp` as a desktop assistant starts it: the token comes from the environment or a
file, a token that cannot read stops it before any MCP message, and stdout carries nothing
but MCP."""

from __future__ import annotations

from pathlib import Path

from mcp import Client
from typer.testing import CliRunner

from ownstream.cli.main import app
from ownstream.owner import AccessOperations

from .conftest import McpWorld, run, stdio_parameters


def test_a_token_that_cannot_read_stops_it_with_the_reason(
    mcp_world: McpWorld, tmp_path: Path
) -> None:
    """Refused before any MCP message, with the reason on stderr and nothing on stdout."""
    home = str(mcp_world.home_path)
    revoked_grant, revoked = mcp_world.grant()
    AccessOperations(mcp_world.world.home).revoke_grant(revoked_grant)
    for token, options, code in [
        ("", [], "OWNSTREAM_TOKEN"),
        ("", ["--token-file", str(tmp_path / "missing")], "invalid_argument"),
        ("osc_not-a-token", [], "authentication_error"),
        (mcp_world.world.owner_token, [], "insufficient_scope"),
        (revoked, [], "grant_revoked"),
    ]:
        done = CliRunner().invoke(
            app, ["--home", home, "mcp", *options], env={"OWNSTREAM_TOKEN": token}
        )
        assert done.exit_code == 1, done.output
        assert code in done.stderr
        assert done.stdout == ""  # stdout is for MCP messages only


def test_the_token_can_come_from_a_file(mcp_world: McpWorld, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(mcp_world.token + "\n")
    token_file.chmod(0o600)
    parameters = stdio_parameters(mcp_world.home_path, "", "--token-file", str(token_file))
    assert parameters.env is not None and parameters.env["OWNSTREAM_TOKEN"] == ""

    async def scenario() -> None:
        async with Client(parameters) as client:
            result = await client.call_tool("list_streams", {})
            assert not result.is_error, result.content

    run(scenario)


def test_there_is_no_token_argument() -> None:
    """A token on the command line would show in `ps` and shell history."""
    assert CliRunner().invoke(app, ["mcp", "--token", "osc_x"]).exit_code == 2
