"""Pure rules about records, shared by the runtime and every store backend.

Keys, sortable cursor values, consent times, the multi-path merge policy and the change diff
live here so a second backend applies exactly the same semantics.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from ownstream.clock import iso, parse_iso
from ownstream.model import RecordRule, StreamDefinition

_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def key_part(value: Any) -> str | None:
    """The string form of one primary-key value, or None when it cannot be a key part."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def canonical_key(definition: StreamDefinition, data: dict[str, Any]) -> str | None:
    """The canonical record key of `data`: the value itself, or minified JSON for compound keys."""
    if len(definition.primary_key) == 1:  # the usual key: one field, its value itself
        return key_part(data.get(definition.primary_key[0]))
    parts = [key_part(data.get(field)) for field in definition.primary_key]
    if any(part is None for part in parts):
        return None
    if len(parts) == 1:
        return parts[0]
    return orjson.dumps(parts).decode()


def message_key(key: Any) -> str | None:
    """Canonicalize the `key` of a RECORD message (a string, or a list in primary-key order)."""
    if isinstance(key, str):
        return key
    if isinstance(key, list) and key:
        parts = [key_part(part) for part in key]
        if any(part is None for part in parts):
            return None
        return parts[0] if len(parts) == 1 else orjson.dumps(parts).decode()
    return None


def sortable(value: Any) -> str:
    """A text that sorts like `value`: ISO times and strings as they are, numbers padded.

    Records without a cursor value get '', which pages place after every other value.
    """
    if type(value) is str:
        return value  # the usual cursor, an ISO time
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, (int, float)):
        if value < 0:
            # '-' sorts before every digit; complementing the digits of |value| puts the most
            # negative first (plain '-10' > '-2.5' as text would sort them backwards)
            return "-" + f"{-float(value):024.6f}".translate(_COMPLEMENT)
        return f"{float(value):024.6f}"
    return str(value)


_COMPLEMENT = str.maketrans("0123456789", "9876543210")


def consent_time(definition: StreamDefinition, data: dict[str, Any]) -> str | None:
    """The record's consent time as normalized UTC ISO, or None (which no time window admits)."""
    if definition.consent_time_field is None:
        return None
    return normalize_time(data.get(definition.consent_time_field))


def normalize_time(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if _CANONICAL.fullmatch(value):
        return value  # already UTC with milliseconds and Z: parsing would give it back unchanged
    try:
        return iso(parse_iso(value))
    except ValueError:
        return None


def merge(
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    semantics: str,
    other_paths: bool,
    union_fields: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The data a record holds after `new` arrives on top of `old`.

    - Fields the new write supplies win.
    - Fields only the old data has are kept when the record is also evidenced by another
      acquisition path (that path supplied them) and always on append-only streams, whose
      records are events that later writes may enrich but never shrink.
    - A mutable-state record evidenced only by the writing path is replaced wholesale, so the
      path can remove a field it no longer reports.
    - A definition's `union_fields` (sets such as mail folders and labels) are the union of
      what each path reports wherever old fields are kept, so one path never drops another's.
    """
    if semantics == "append_only" or other_paths:
        merged = {**old, **new}
        for name in union_fields:
            if isinstance(old.get(name), list) and isinstance(new.get(name), list):
                merged[name] = _union(old[name], new[name])
        return merged
    return new


def _union(old: list[Any], new: list[Any]) -> list[Any]:
    """Order-stable set union of two JSON arrays (values compared by their JSON text)."""
    seen: dict[bytes, Any] = {}
    for value in [*old, *new]:
        seen.setdefault(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), value)
    return list(seen.values())


def changed_fields(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    """Top-level fields whose value differs (all fields of whichever side exists alone)."""
    old = old or {}
    new = new or {}
    return sorted(
        k for k in old.keys() | new.keys() if old.get(k, _MISSING) != new.get(k, _MISSING)
    )


_MISSING = object()


def project(data: dict[str, Any], fields: tuple[str, ...] | frozenset[str]) -> dict[str, Any]:
    """Grant projection: only the named top-level fields."""
    return {k: v for k, v in data.items() if k in fields}


def search_text(value: Any) -> str:
    """The text the search index holds for one field value."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(search_text(v) for v in value)
    if isinstance(value, dict):
        return " ".join(search_text(v) for v in value.values())
    return str(value)


def is_coarse(rule: RecordRule, data: dict[str, Any]) -> bool:
    return data.get(rule.coarse_field) in rule.coarse_values


def keep_finer_time(
    rule: RecordRule, held: dict[str, Any], merged: dict[str, Any]
) -> dict[str, Any]:
    """`merged`, except that a write coarser than the record it lands on (by the rule's
    `precision_order`) keeps the record's finer time and precision: an export that dates a
    play to the second never replaces the API's millisecond."""
    order = rule.precision_order
    field, time = rule.coarse_field, rule.time_field
    if held.get(field) not in order or merged.get(field) not in order or time not in held:
        return merged
    if order.index(merged[field]) >= order.index(held[field]):
        return merged
    return {**merged, time: held[time], field: held[field]}


def match_key(rule: RecordRule, data: dict[str, Any]) -> str | None:
    """A record's identity under a record rule: its time's window and its match fields
    (case-folded), hashed; None when the record lacks one of them."""
    found = match_window(rule, data)
    return None if found is None else found[1]


def match_window(rule: RecordRule, data: dict[str, Any]) -> tuple[int, str] | None:
    """The window (of `rule.window_seconds`) a record's time falls in, and its `match_key`;
    None when the record lacks one of them. The time is parsed once for both."""
    value = data.get(rule.time_field)
    if not isinstance(value, str):
        return None
    try:
        moment = parse_iso(value)
    except ValueError:
        return None
    window = int(moment.timestamp()) // rule.window_seconds
    parts = [str(window)]
    for name in rule.match_fields:
        field = data.get(name)
        if not isinstance(field, str):
            return None
        parts.append(field.casefold())
    return window, hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:20]


# blob references ----------------------------------------------------------------------------
BLOB_ID_PREFIX = "blob_sha256_"
BLOB_ID = re.compile(r"blob_sha256_[0-9a-f]{64}")
BLOB_REF_KEYS = frozenset({"blob_id", "mime_type", "size_bytes", "sha256"})
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]{1,127}"
MEDIA_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=(\"[^\"\\\x00-\x1f\x7f]*\"|{_TOKEN}))*"
)


def blob_id_for(sha256: str) -> str:
    """A blob's id: its content's sha256, so equal bytes are one blob wherever they come from."""
    return BLOB_ID_PREFIX + sha256


def blob_ref_problem(ref: Any) -> str | None:
    """What is wrong with a producer's `blob_ref` (PDPP core §4: `blob_id`, `mime_type`,
    `size_bytes`, `sha256`, and no `fetch_url`, which the server adds when it serves one), or
    None."""
    if not isinstance(ref, dict):
        return "a blob_ref must be an object"
    extra = sorted(set(ref) - BLOB_REF_KEYS)
    if extra:
        return f"a blob_ref has only blob_id, mime_type, size_bytes and sha256, not {extra}"
    blob_id, sha = ref.get("blob_id"), ref.get("sha256")
    if not isinstance(blob_id, str) or not BLOB_ID.fullmatch(blob_id):
        return "blob_id must be blob_sha256_ and the content's 64 hex sha256"
    if sha != blob_id[len(BLOB_ID_PREFIX) :]:
        return "sha256 must be the hash blob_id names"
    size = ref.get("size_bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "size_bytes must be a non-negative integer"
    mime = ref.get("mime_type")
    if not isinstance(mime, str) or not MEDIA_TYPE.fullmatch(mime):
        return "mime_type must be a media type (type/subtype)"
    return None


def blob_refs(definition: StreamDefinition, data: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every value at one of the definition's blob paths, with the top-level field it is in
    (the unit a grant projects): `photo`, `cover.blob_ref`, `attachments[].blob_ref`."""
    found: list[tuple[str, Any]] = []
    for path in definition.blob_fields:
        head, _, inner = path.partition(".")
        name = head.removesuffix("[]")
        value = data.get(name)
        many = head.endswith("[]")
        for holder in (value if isinstance(value, list) else []) if many else [value]:
            ref = holder if not inner else holder.get(inner) if isinstance(holder, dict) else None
            if ref is not None:
                found.append((name, ref))
    return found


def blob_field_names(definition: StreamDefinition) -> set[str]:
    """The top-level fields the definition's blob paths live in (`attachments[].blob_ref` →
    `attachments`): the fields a grant must project for a blob to be read through them."""
    return {path.partition(".")[0].removesuffix("[]") for path in definition.blob_fields}


def with_fetch_urls(definition: StreamDefinition, data: dict[str, Any]) -> dict[str, Any]:
    """`data` with a `fetch_url` (`/v1/blobs/{blob_id}`) in each well-formed `blob_ref`, as a
    resource server serves records (PDPP core §4: producers never write one). Only the
    containers on a blob path are copied; `data` itself is left as it was."""
    if not definition.blob_fields:
        return data
    found = dict(data)
    for path in definition.blob_fields:
        head, _, inner = path.partition(".")
        name = head.removesuffix("[]")
        if name not in found:
            continue
        if head.endswith("[]"):
            if isinstance(found[name], list):
                found[name] = [_with_url(item, inner) for item in found[name]]
        else:
            found[name] = _with_url(found[name], inner)
    return found


def _with_url(holder: Any, inner: str) -> Any:
    if not inner:
        return _url_ref(holder)
    if isinstance(holder, dict) and inner in holder:
        return {**holder, inner: _url_ref(holder[inner])}
    return holder


def _url_ref(ref: Any) -> Any:
    blob_id = ref.get("blob_id") if isinstance(ref, dict) else None
    if isinstance(blob_id, str) and BLOB_ID.fullmatch(blob_id):
        return {**ref, "fetch_url": f"/v1/blobs/{blob_id}"}
    return ref
