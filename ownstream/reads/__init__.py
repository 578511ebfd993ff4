"""The PDPP read domain: what a bearer may read, as plain dicts, with no HTTP and no SQL.

Every function takes the `Home`, the `Bearer` and already-separated parameters, scopes the
read with `grants.scope.scope_for` and returns the response body, so the HTTP layer (and any
other front end, such as an MCP server) only parses, calls and renders. Errors are the typed
domain errors of `ownstream.errors`.
"""
