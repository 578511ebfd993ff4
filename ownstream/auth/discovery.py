"""The server's public URL and its discovery documents (RFC 9728 and RFC 8414)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ownstream.auth import DATA_ACCESS_TYPE, DEVICE_GRANT_TYPE, SCOPE
from ownstream.errors import InvalidArgument
from ownstream.reads.records import SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT

RESOURCE_METADATA_PATH = "/.well-known/oauth-protected-resource"
AUTHORIZATION_SERVER_METADATA_PATH = "/.well-known/oauth-authorization-server"
MCP_PATH = "/mcp"


def normalize_public_url(url: str) -> str:
    """`scheme://host[:port][/path]` without query, fragment, credentials or trailing slash.

    Clients compare `resource` byte for byte (the PDPP CLI aborts on a mismatch), so the one
    spelling is fixed here."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"{url!r} is not an http(s) URL", param="public_url")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidArgument(
            "the public URL takes no credentials, query or fragment", param="public_url"
        )
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    default_port = {"http": 80, "https": 443}[parts.scheme]
    if parts.port is not None and parts.port != default_port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def url_for_bind(host: str, port: int) -> str:
    """The default public URL for a bind address (a wildcard bind is reached on loopback)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return normalize_public_url(f"http://{f'[{host}]' if ':' in host else host}:{port}")


@dataclass(frozen=True)
class Endpoints:
    """Every URL the server advertises, derived from its public base URL."""

    base: str

    @property
    def resource_metadata(self) -> str:
        return self.base + RESOURCE_METADATA_PATH

    @property
    def resources(self) -> tuple[str, str]:
        """The RFC 8707 resources a token may be bound to: the REST surface and MCP."""
        return self.base, self.mcp

    @property
    def mcp(self) -> str:
        """The hosted MCP endpoint, which is also its own protected resource."""
        return self.base + MCP_PATH

    @property
    def mcp_resource_metadata(self) -> str:
        """RFC 9728 §3.1: the metadata of the resource `…/mcp` lives at the well-known path
        with the resource's path appended."""
        return self.base + RESOURCE_METADATA_PATH + MCP_PATH

    def url(self, path: str) -> str:
        return self.base + path


AUTHORIZE = "/oauth/authorize"
TOKEN = "/oauth/token"
REGISTER = "/oauth/register"
PAR = "/oauth/par"
DEVICE_AUTHORIZATION = "/oauth/device_authorization"
DEVICE_VERIFICATION = "/oauth/device"
INTROSPECT = "/oauth/introspect"
REVOKE = "/oauth/revoke"
AGENT_CONNECT = "/oauth/agent-connect"
AGENT_POLL = "/oauth/agent-connect/poll"


def capabilities() -> dict[str, Any]:
    """Server-level capabilities: the retrieval extensions this server implements."""
    return {
        "lexical_retrieval": {
            "supported": True,
            "endpoint": "/v1/search",
            "cross_stream": True,
            "snippets": True,
            "default_limit": SEARCH_DEFAULT_LIMIT,
            "max_limit": SEARCH_MAX_LIMIT,
        }
    }


def mcp_discovery(endpoints: Endpoints) -> dict[str, Any]:
    """Where an assistant finds the MCP adapter: an adapter over the `/v1` reads, client
    tokens only."""
    return {
        "endpoint": endpoints.mcp,
        "transport": "streamable_http",
        "resource_metadata": endpoints.mcp_resource_metadata,
        "no_owner_token": True,
        "setup_intent": "grant_scoped_read",
    }


def _resource(
    endpoints: Endpoints, resource: str, name: str, token_kinds: list[str]
) -> dict[str, Any]:
    """The RFC 9728 fields of one of this server's protected resources."""
    return {
        "resource": resource,
        "resource_name": name,
        "authorization_servers": [endpoints.base],
        "bearer_methods_supported": ["header"],
        "scopes_supported": [SCOPE],
        "pdpp_core_query_base": endpoints.url("/v1"),
        "pdpp_token_kinds_supported": token_kinds,
    }


def protected_resource_metadata(endpoints: Endpoints) -> dict[str, Any]:
    return {
        **_resource(endpoints, endpoints.base, "ownstream", ["owner", "client"]),
        "pdpp_self_export_supported": True,
        "pdpp_agent_discovery": {
            "agent_connect_endpoint": endpoints.url(AGENT_CONNECT),
            "cli": {"no_owner_token": True},
            "mcp": mcp_discovery(endpoints),
        },
        "capabilities": capabilities(),
    }


def mcp_resource_metadata(endpoints: Endpoints) -> dict[str, Any]:
    """RFC 9728 metadata of the MCP endpoint: the resource an MCP client names (RFC 8707) in
    the authorization code flow; only client tokens are accepted there."""
    return {
        **_resource(endpoints, endpoints.mcp, "ownstream MCP", ["client"]),
        "pdpp_agent_discovery": {"mcp": mcp_discovery(endpoints)},
    }


def authorization_server_metadata(endpoints: Endpoints) -> dict[str, Any]:
    return {
        "issuer": endpoints.base,
        "authorization_endpoint": endpoints.url(AUTHORIZE),
        "token_endpoint": endpoints.url(TOKEN),
        "registration_endpoint": endpoints.url(REGISTER),
        "pushed_authorization_request_endpoint": endpoints.url(PAR),
        "require_pushed_authorization_requests": False,
        "device_authorization_endpoint": endpoints.url(DEVICE_AUTHORIZATION),
        "introspection_endpoint": endpoints.url(INTROSPECT),
        "revocation_endpoint": endpoints.url(REVOKE),
        "agent_connect_endpoint": endpoints.url(AGENT_CONNECT),
        "scopes_supported": [SCOPE],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT_TYPE],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "bearer"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
        "authorization_details_types_supported": [DATA_ACCESS_TYPE],
        "pdpp_authorization_details_types_supported": [DATA_ACCESS_TYPE],
        "pdpp_registration_modes_supported": ["dynamic"],
    }
