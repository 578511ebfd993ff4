"""The MCP adapter over the PDPP read domain: one server (`server`, with the tools of `tools`)
served on stdio (`ownstream mcp`) and as streamable HTTP at `/mcp` on `ownstream serve`."""
