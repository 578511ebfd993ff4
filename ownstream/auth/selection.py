"""What a client asks for and what the owner grants: RFC 9396 `authorization_details` of type
`https://pdpp.dev/data-access` into a grant request, inline `client_display`, and narrowing.

A requested selection has the shape of an ownstream grant request (`grants create --request`),
so the owner's decision and the request are compared field by field, and the grant itself is
built by `grants.issue.build_grant`.
"""

from __future__ import annotations

from typing import Any

import orjson
from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error

from ownstream.auth import DATA_ACCESS_TYPE
from ownstream.errors import InvalidRequest, OwnstreamError
from ownstream.grants.issue import DEFAULT_PURPOSE, build_grant
from ownstream.records import normalize_time
from ownstream.registry import Catalog
from ownstream.store.base import Store

DETAIL_KEYS = {
    "type", "source", "purpose_code", "purpose_description", "access_mode", "streams",
    "expires_in", "client_claims",
}
STREAM_KEYS = {"name", "fields", "time_range", "connection_ids", "instance_ids", "resources"}
DISPLAY_KEYS = {"name", "uri", "logo_uri", "policy_uri", "tos_uri"}
DECISION_KEYS = {"streams", "expires_in", "access_mode"}


class InvalidAuthorizationDetails(OAuth2Error):  # type: ignore[misc]
    """RFC 9396 §5: the `authorization_details` cannot be granted as asked."""

    error = "invalid_authorization_details"


def _json_param(raw: Any, name: str) -> Any:
    """A structured parameter: JSON text in a form or query, or already a JSON value."""
    if not isinstance(raw, str):
        return raw
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequestError(f"{name} must be JSON") from None


def _ascii(message: str) -> str:
    """RFC 6749 error descriptions are restricted to printable ASCII without quotes."""
    return "".join(c if 0x20 <= ord(c) <= 0x7E and c not in '"\\' else "?" for c in message)


def parse_authorization_details(
    raw: Any, store: Store, catalog: Catalog, client_id: str
) -> tuple[dict[str, Any], list[str]]:
    """One PDPP data-access detail → (grant request, client claims), checked against the
    catalog and the owner's connections exactly as a grant would be at approval."""
    details = _json_param(raw, "authorization_details")
    if not isinstance(details, list) or len(details) != 1 or not isinstance(details[0], dict):
        raise InvalidAuthorizationDetails("send exactly one authorization_details entry")
    detail = details[0]
    if detail.get("type") != DATA_ACCESS_TYPE:
        raise InvalidAuthorizationDetails(f"the type must be {DATA_ACCESS_TYPE}")
    unknown = sorted(set(detail) - DETAIL_KEYS)
    if unknown:
        raise InvalidAuthorizationDetails(f"unsupported member(s): {', '.join(unknown)}")
    source = detail.get("source")
    if source is not None and not (isinstance(source, dict) and isinstance(source.get("id"), str)):
        raise InvalidAuthorizationDetails("source must be an object with an id")
    streams = detail.get("streams")
    if not isinstance(streams, list) or not streams:
        raise InvalidAuthorizationDetails("streams must be a non-empty list")
    selection: dict[str, Any] = {
        "purpose_code": detail.get("purpose_code") or DEFAULT_PURPOSE,
        "access_mode": detail.get("access_mode", "continuous"),
        "streams": [_stream_request(entry) for entry in streams],
    }
    for key in ("purpose_description", "expires_in"):
        if key in detail:
            selection[key] = detail[key]
    claims = (detail.get("client_claims") or {}).get("commitments", [])
    if not isinstance(claims, list) or not all(isinstance(c, str) for c in claims):
        raise InvalidAuthorizationDetails("client_claims.commitments must be a list of strings")
    try:
        build_grant(store, catalog, client_id, selection)
    except OwnstreamError as exc:
        raise InvalidAuthorizationDetails(_ascii(exc.message)) from None
    return selection, claims


def _stream_request(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise InvalidAuthorizationDetails("each stream must be an object")
    unknown = sorted(set(entry) - STREAM_KEYS)
    if unknown:
        raise InvalidAuthorizationDetails(f"unsupported stream member(s): {', '.join(unknown)}")
    connection_ids = entry.get("connection_ids")
    instance_ids = entry.get("instance_ids")
    if connection_ids is not None and instance_ids is not None and connection_ids != instance_ids:
        raise InvalidAuthorizationDetails("connection_ids and instance_ids differ")
    request = {k: v for k, v in entry.items() if k != "instance_ids"}
    if instance_ids is not None:
        request["connection_ids"] = instance_ids
    return request


def parse_client_display(raw: Any) -> dict[str, str] | None:
    """Inline client metadata (spec-core §6); shown as the client's own, unverified claim."""
    if raw is None or raw == "":
        return None
    display = _json_param(raw, "client_display")
    if not isinstance(display, dict) or not isinstance(display.get("name"), str):
        raise InvalidRequestError("client_display must be an object with a name")
    unknown = sorted(set(display) - DISPLAY_KEYS)
    if unknown:
        raise InvalidRequestError(f"unsupported client_display member(s): {', '.join(unknown)}")
    if not all(isinstance(value, str) for value in display.values()):
        raise InvalidRequestError("client_display members must be strings")
    return dict(display)


# -- the owner's decision ----------------------------------------------------------------------
def narrow(requested: dict[str, Any] | None, decision: Any) -> dict[str, Any]:
    """The grant request to issue: the client's request as asked, or narrowed by the owner.

    With no requested streams (a scope-only request) the owner's decision is the selection.
    Otherwise it may drop streams, fields, connections or resources, shorten the time range or
    expiry, and turn `continuous` into `single_use`, but never widen anything."""
    if decision is None:
        if requested is None:
            raise InvalidRequest("this request names no streams; choose them", param="streams")
        return requested
    if not isinstance(decision, dict):
        raise InvalidRequest("a decision must be a JSON object")
    unknown = sorted(set(decision) - DECISION_KEYS)
    if unknown:
        raise InvalidRequest(
            f"a decision may set only {', '.join(sorted(DECISION_KEYS))}", param=unknown[0]
        )
    if requested is None:
        return {"purpose_code": DEFAULT_PURPOSE, "access_mode": "continuous", **decision}
    narrowed = {key: value for key, value in requested.items() if key != "streams"}
    if "access_mode" in decision:
        if requested.get("access_mode") == "single_use" and decision["access_mode"] != "single_use":
            raise InvalidRequest("the client asked for single_use access", param="access_mode")
        narrowed["access_mode"] = decision["access_mode"]
    if "expires_in" in decision:
        limit = requested.get("expires_in")
        value = decision["expires_in"]
        if limit is not None and (not isinstance(value, int) or value > limit):
            raise InvalidRequest(f"expires_in may be at most {limit}", param="expires_in")
        narrowed["expires_in"] = value
    chosen = decision.get("streams")
    if chosen is None:
        narrowed["streams"] = requested["streams"]
        return narrowed
    if not isinstance(chosen, list) or not chosen:
        raise InvalidRequest("streams must be a non-empty list", param="streams")
    asked = {entry["name"]: entry for entry in requested["streams"]}
    narrowed["streams"] = [_narrow_stream(asked, entry, i) for i, entry in enumerate(chosen)]
    return narrowed


def _narrow_stream(asked: dict[str, dict[str, Any]], entry: Any, index: int) -> dict[str, Any]:
    param = f"streams[{index}]"
    if not isinstance(entry, dict) or entry.get("name") not in asked:
        raise InvalidRequest(f"{param} is not a stream the client asked for", param=param)
    base = asked[entry["name"]]
    result = dict(base)
    for key in ("fields", "connection_ids", "resources"):
        if key not in entry:
            continue
        value = entry[key]
        if not isinstance(value, list) or not value:
            raise InvalidRequest(f"{param}.{key} must be a non-empty list", param=f"{param}.{key}")
        if key in base and not set(value) <= set(base[key]):
            raise InvalidRequest(
                f"{param}.{key} goes beyond what the client asked for", param=f"{param}.{key}"
            )
        result[key] = value
    if "time_range" in entry:
        asked_range = base.get("time_range") or {}
        result["time_range"] = _narrow_time(asked_range, entry["time_range"], param)
    return result


def _narrow_time(asked: dict[str, Any], chosen: Any, param: str) -> dict[str, Any]:
    if not isinstance(chosen, dict):
        raise InvalidRequest(f"{param}.time_range must be an object", param=f"{param}.time_range")
    bounds = {}
    for key, later_is_narrower in (("since", True), ("until", False)):
        limit = normalize_time(asked[key]) if asked.get(key) else None
        value = normalize_time(chosen[key]) if chosen.get(key) else limit
        if chosen.get(key) and value is None:
            raise InvalidRequest(f"{param}.time_range.{key} must be an ISO 8601 time", param=param)
        if limit is not None and value is not None and (value < limit if later_is_narrower
                                                        else value > limit):
            raise InvalidRequest(f"{param}.time_range.{key} widens the request", param=param)
        if value is not None:
            bounds[key] = value
    return bounds
