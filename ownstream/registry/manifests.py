"""Connector manifests: load, validate, resolve each stream to a shared or inline definition."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ownstream.errors import InvalidDefinition, InvalidManifest, UnknownStream
from ownstream.model import (
    ACQUISITION_METHODS,
    ConnectorManifest,
    OAuthProvider,
    RefreshPolicy,
    SetupField,
    StreamDefinition,
)
from ownstream.registry.definitions import check_compatible, parse_definition

CONNECTOR_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
CLAIM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# The secrets an OAuth authorization fills in: a manifest with `oauth` declares them
OAUTH_SECRETS = ("access_token", "refresh_token", "client_id")

SharedLookup = Callable[[str], StreamDefinition | None]


def parse_manifest(
    raw: Any, shared: SharedLookup, *, base_dir: str | None = None, builtin: bool = False
) -> ConnectorManifest:
    """Validate a manifest document; every error names the field that is wrong."""
    if not isinstance(raw, dict):
        raise InvalidManifest("a connector manifest must be a JSON object")
    key = raw.get("connector_key")
    if not isinstance(key, str) or "://" in key or not CONNECTOR_KEY.match(key):
        raise InvalidManifest(
            f"connector_key {key!r} must be a canonical key such as 'spotify' "
            "(lowercase letters, digits, '.', '_', '-'); put a URL in manifest_uri",
            param="connector_key",
        )

    def fail(message: str, param: str) -> InvalidManifest:
        return InvalidManifest(f"connector {key!r}: {message}", param=param)

    for attr in ("version", "display_name", "source"):
        if not isinstance(raw.get(attr), str) or not raw[attr]:
            raise fail(f"{attr} must be a non-empty string", attr)
    method = raw.get("acquisition_method")
    if method not in ACQUISITION_METHODS:
        raise fail(
            f"acquisition_method must be one of {', '.join(ACQUISITION_METHODS)}",
            "acquisition_method",
        )
    manifest_uri = raw.get("manifest_uri")
    if manifest_uri is not None and not isinstance(manifest_uri, str):
        raise fail("manifest_uri must be a string", "manifest_uri")

    setup = raw.get("setup", {})
    if not isinstance(setup, dict):
        raise fail("setup must be an object", "setup")
    secrets = _setup_fields(setup.get("secrets", []), "setup.secrets", fail)
    settings = _setup_fields(setup.get("settings", []), "setup.settings", fail)

    policy_raw = raw.get("refresh_policy") or raw.get("capabilities", {}).get("refresh_policy", {})
    refresh_policy = _refresh_policy(policy_raw, fail)

    identity = raw.get("identity")
    claim = None
    if identity is not None:
        claim = identity.get("claim") if isinstance(identity, dict) else None
        if not isinstance(claim, str) or not CLAIM_NAME.match(claim):
            raise fail("identity.claim must be a snake_case name", "identity.claim")

    oauth = _oauth(raw["oauth"], secrets, fail) if raw.get("oauth") is not None else None

    run = raw.get("run", {})
    command: tuple[str, ...] | None = None
    python_entry = None
    if not isinstance(run, dict):
        raise fail("run must be an object", "run")
    if "command" in run:
        cmd = run["command"]
        if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) for c in cmd):
            raise fail("run.command must be a non-empty list of strings", "run.command")
        command = tuple(cmd)
    elif "python" in run:
        python_entry = run["python"]
        if not isinstance(python_entry, str) or ":" not in python_entry:
            raise fail("run.python must be 'module:function'", "run.python")
    else:
        raise fail("run needs a command (or, for built-ins, a python entry)", "run")

    streams_raw = raw.get("streams")
    if not isinstance(streams_raw, list) or not streams_raw:
        raise fail("streams must be a non-empty list", "streams")
    streams: list[StreamDefinition] = []
    for index, entry in enumerate(streams_raw):
        streams.append(_stream(entry, index, key, shared, fail))
    names = [s.name for s in streams]
    if len(set(names)) != len(names):
        raise fail("a stream is listed twice", "streams")

    return ConnectorManifest(
        connector_key=key,
        version=raw["version"],
        display_name=raw["display_name"],
        source=raw["source"],
        acquisition_method=method,
        streams=tuple(streams),
        secrets=secrets,
        settings=settings,
        refresh_policy=refresh_policy,
        identity_claim=claim,
        oauth=oauth,
        command=command,
        python_entry=python_entry,
        base_dir=base_dir,
        manifest_uri=manifest_uri,
        builtin=builtin,
        raw=raw,
    )


def _stream(
    entry: Any, index: int, key: str, shared: SharedLookup, fail: Callable[[str, str], Exception]
) -> StreamDefinition:
    param = f"streams[{index}]"
    if not isinstance(entry, dict):
        raise fail("each stream must be an object", param)
    if "definition" in entry:
        name = entry["definition"]
        definition = shared(name) if isinstance(name, str) else None
        if definition is None:
            raise UnknownStream(
                f"connector {key!r}: {param} references the unknown shared definition {name!r}",
                param=param,
            )
        wanted = entry.get("version")
        if wanted is not None and wanted != definition.version:
            raise fail(
                f"{param} wants {name!r} version {wanted} but version "
                f"{definition.version} is registered",
                param,
            )
        return definition
    try:
        inline = parse_definition(entry, shared=False)
    except InvalidDefinition as exc:
        raise fail(f"{param}: {exc.message}", param) from exc
    existing = shared(inline.name)
    if existing is not None:
        check_compatible(existing, inline, key)
        return existing
    return inline


def _setup_fields(
    raw: Any, param: str, fail: Callable[[str, str], Exception]
) -> tuple[SetupField, ...]:
    if not isinstance(raw, list):
        raise fail(f"{param} must be a list", param)
    fields = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise fail(f"each entry of {param} needs a name", param)
        env = item.get("env")
        if not isinstance(env, str) or not ENV_NAME.match(env):
            raise fail(f"{param} {item['name']!r}: env must be an UPPER_CASE variable", param)
        default = item.get("default")
        fields.append(
            SetupField(
                item["name"],
                env,
                None if default is None else str(default),
                bool(item.get("required", True)),
            )
        )
    return tuple(fields)


def secure_endpoint(url: Any) -> bool:
    """An https URL, or http on this machine (a local provider or test double)."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def _oauth(
    raw: Any, secrets: tuple[SetupField, ...], fail: Callable[[str, str], Exception]
) -> OAuthProvider:
    if not isinstance(raw, dict):
        raise fail("oauth must be an object", "oauth")
    for name in ("authorization_url", "token_url"):
        if not secure_endpoint(raw.get(name)):
            message = f"oauth.{name} must be an https URL (http only on loopback)"
            raise fail(message, f"oauth.{name}")
    scopes = raw.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
        raise fail("oauth.scopes must be a list of scope names", "oauth.scopes")
    if raw.get("pkce", "S256") != "S256":
        raise fail("oauth.pkce must be S256 (the plain method is not supported)", "oauth.pkce")
    flags = {}
    for name in ("rotates_refresh_tokens", "client_secret_required"):
        flags[name] = raw.get(name, False)
        if not isinstance(flags[name], bool):
            raise fail(f"oauth.{name} must be true or false", f"oauth.{name}")
    client_id = raw.get("client_id")
    if client_id is not None and (not isinstance(client_id, str) or not client_id):
        raise fail("oauth.client_id must be a non-empty string", "oauth.client_id")
    declared = {s.name for s in secrets}
    needed = OAUTH_SECRETS + (("client_secret",) if flags["client_secret_required"] else ())
    missing = [name for name in needed if name not in declared]
    if missing:
        raise fail(
            f"oauth stores the secrets {', '.join(needed)}; declare {', '.join(missing)} in "
            "setup.secrets",
            "oauth",
        )
    return OAuthProvider(
        authorization_url=raw["authorization_url"],
        token_url=raw["token_url"],
        scopes=tuple(scopes),
        rotates_refresh_tokens=flags["rotates_refresh_tokens"],
        client_id=client_id,
        client_secret_required=flags["client_secret_required"],
    )


def _refresh_policy(raw: Any, fail: Callable[[str, str], Exception]) -> RefreshPolicy:
    if not isinstance(raw, dict):
        raise fail("refresh_policy must be an object", "refresh_policy")
    mode = raw.get("recommended_mode", "manual")
    if mode not in ("automatic", "manual", "paused"):
        raise fail("recommended_mode must be automatic, manual or paused", "refresh_policy")
    return RefreshPolicy(
        recommended_mode=mode,
        recommended_interval_seconds=raw.get("recommended_interval_seconds"),
        maximum_staleness_seconds=raw.get("maximum_staleness_seconds"),
        background_safe=bool(raw.get("background_safe", False)),
    )


def resolve_command(manifest: ConnectorManifest) -> list[str]:
    """The subprocess command, with paths relative to the manifest's folder made absolute."""
    if manifest.command is None:
        raise InvalidManifest(f"connector {manifest.connector_key!r} has no run.command")
    base = Path(manifest.base_dir or ".")
    resolved = []
    for part in manifest.command:
        candidate = base / part
        relative = part.startswith("./") or part.startswith("../")
        resolved.append(str(candidate.resolve()) if relative or candidate.exists() else part)
    return resolved
