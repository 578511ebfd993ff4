"""Issuing grants from a PDPP-style selection request. Grants are immutable once issued."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ownstream.clock import iso, parse_iso, random_id, utc_now
from ownstream.errors import InvalidRequest, UnknownField
from ownstream.grants.tokens import new_token
from ownstream.model import Grant, StreamGrant
from ownstream.records import normalize_time
from ownstream.registry import Catalog
from ownstream.store.base import Store

ACCESS_MODES = ("single_use", "continuous")
MAX_CLIENT_ID_CHARS = 200
DEFAULT_PURPOSE = "https://ownstream.dev/purposes/personal_use"

MAX_EXPIRES_IN = 100 * 366 * 86_400  # a century: any later expiry is no expiry at all


def connections_with_stream(store: Store, catalog: Catalog, stream: str) -> list[str]:
    """The owner's current, non-revoked connections that have this stream (a path emits it)."""
    emitters = set(catalog.emitters(stream))
    return [
        c.connection_id
        for c in store.connections()
        if c.status != "revoked" and any(p.connector_key in emitters for p in c.paths)
    ]


def _stream_grant(store: Store, catalog: Catalog, entry: Any, index: int) -> StreamGrant:
    param = f"streams[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise InvalidRequest(f"{param} needs a stream name", param=param)
    definition = catalog.definition(entry["name"])
    fields = entry.get("fields")
    if fields is None:
        fields = list(definition.fields)
    if not isinstance(fields, list) or not fields:
        raise InvalidRequest(f"{param}.fields must be a non-empty list", param=f"{param}.fields")
    unknown = [f for f in fields if f not in definition.fields]
    if unknown:
        raise UnknownField(
            f"{definition.name} has no field(s) {', '.join(map(str, unknown))}",
            param=f"{param}.fields",
        )
    requested = entry.get("connection_ids")
    available = connections_with_stream(store, catalog, definition.name)
    if requested is None:
        connection_ids = available
    else:
        if not isinstance(requested, list) or not requested:
            raise InvalidRequest(f"{param}.connection_ids must be a non-empty list", param=param)
        missing = [c for c in requested if c not in available]
        if missing:
            raise InvalidRequest(
                f"connection(s) {', '.join(map(str, missing))} do not have stream "
                f"{definition.name} (or are revoked)",
                param=f"{param}.connection_ids",
            )
        connection_ids = list(dict.fromkeys(requested))
    if not connection_ids:
        raise InvalidRequest(
            f"no connection has stream {definition.name}; connect a source first", param=param
        )
    since = until = time_field = None
    time_range = entry.get("time_range")
    if time_range is not None:
        if definition.consent_time_field is None:
            raise InvalidRequest(
                f"{definition.name} declares no consent_time_field, so time_range cannot apply",
                param=f"{param}.time_range",
            )
        if not isinstance(time_range, dict):
            raise InvalidRequest(
                "time_range must be an object with since and/or until",
                param=f"{param}.time_range",
            )
        time_field = definition.consent_time_field
        since = normalize_time(time_range.get("since")) if time_range.get("since") else None
        until = normalize_time(time_range.get("until")) if time_range.get("until") else None
        if (time_range.get("since") and since is None) or (
            time_range.get("until") and until is None
        ):
            raise InvalidRequest(
                "time_range bounds must be ISO 8601 times", param=f"{param}.time_range"
            )
    resources = entry.get("resources")
    if resources is not None and (
        not isinstance(resources, list) or not all(isinstance(r, str) for r in resources)
    ):
        raise InvalidRequest(f"{param}.resources must be a list of record keys", param=param)
    return StreamGrant(
        name=definition.name,
        instance_ids=tuple(connection_ids),
        fields=tuple(dict.fromkeys(fields)),
        time_field=time_field,
        since=since,
        until=until,
        resources=tuple(resources) if resources is not None else None,
    )


def build_grant(store: Store, catalog: Catalog, client_id: str, request: Any) -> Grant:
    """Validate a selection and resolve it into an explicit grant, without saving it."""
    if not isinstance(request, dict):
        raise InvalidRequest("a grant request must be a JSON object")
    if not client_id:
        raise InvalidRequest("client_id is required", param="client_id")
    if len(client_id) > MAX_CLIENT_ID_CHARS:
        raise InvalidRequest(
            f"client_id is longer than {MAX_CLIENT_ID_CHARS} characters", param="client_id"
        )
    access_mode = request.get("access_mode", "continuous")
    if access_mode not in ACCESS_MODES:
        raise InvalidRequest(f"access_mode must be one of {ACCESS_MODES}", param="access_mode")
    streams_raw = request.get("streams")
    if not isinstance(streams_raw, list) or not streams_raw:
        raise InvalidRequest("streams must be a non-empty list", param="streams")
    names = [s.get("name") for s in streams_raw if isinstance(s, dict)]
    if len(set(names)) != len(names):
        raise InvalidRequest("a stream is requested twice", param="streams")
    expires_in = request.get("expires_in")
    if expires_in is not None and (
        not isinstance(expires_in, int) or not 0 < expires_in <= MAX_EXPIRES_IN
    ):
        raise InvalidRequest(
            f"expires_in must be a number of seconds from 1 to {MAX_EXPIRES_IN}",
            param="expires_in",
        )
    now = utc_now()
    return Grant(
        grant_id=random_id("grt"),
        client_id=client_id,
        client_display=request.get("client_display"),
        purpose_code=str(request.get("purpose_code") or DEFAULT_PURPOSE),
        purpose_description=request.get("purpose_description"),
        access_mode=access_mode,
        issued_at=iso(now),
        expires_at=iso(now + timedelta(seconds=expires_in)) if expires_in else None,
        streams=tuple(
            _stream_grant(store, catalog, entry, i) for i, entry in enumerate(streams_raw)
        ),
    )


def issue_grant(
    store: Store, catalog: Catalog, client_id: str, request: Any
) -> tuple[Grant, str]:
    """Validate a selection, resolve it into an explicit grant, and mint its client token."""
    grant = build_grant(store, catalog, client_id, request)
    secret, token = new_token(
        "client", grant_id=grant.grant_id, ttl_seconds=request.get("expires_in"),
        now=parse_iso(grant.issued_at),
    )
    store.save_grant(grant, token)
    return grant, secret
