"""Reading one entry of Spotify's JSON (an archive entry, an API item) field by field.

Spotify writes null for what does not apply, so null, absence and an empty string all mean
"not provided". Anything else of the wrong type means the entry is not what Spotify documents:
it raises `Malformed`, which the connectors turn into a REJECT for that entry alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ownstream.runtime.sdk import Message, reject


class Malformed(Exception):
    """An entry that cannot become a record; `reason` names why in the receipt."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def rejected(stream: str | None, problem: Malformed, what: str, place: str) -> Message:
    """The REJECT of one malformed entry: why, which entry (`what`), and where (`place`)."""
    return reject(stream, problem.reason, f"{what}: {problem}", key=place)


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object"}


def entry_object(entry: Any, what: str = "the entry") -> Mapping[str, Any]:
    if not isinstance(entry, dict):
        raise Malformed("not_an_object", f"{what} is {type(entry).__name__}, not an object")
    return entry


def field(entry: Mapping[str, Any], name: str, kind: type[Any], *, required: bool = False) -> Any:
    """A field's value, or None when it is not provided; a negative integer is out of range."""
    value: Any = entry.get(name)
    if type(value) is kind and value != "" and (kind is not int or value >= 0):
        return value  # the usual case, settled at once: exactly the type, and in range
    if value is None or value == "":
        if required:
            raise Malformed("missing_field", f"{name} is missing")
        return None
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise Malformed("wrong_type", f"{name} is {type(value).__name__}, not {_TYPE_NAMES[kind]}")
    if isinstance(value, int) and value < 0:
        raise Malformed("out_of_range", f"{name} is negative ({value})")
    return value


def text(entry: Mapping[str, Any], name: str) -> str | None:
    value: str | None = field(entry, name, str)
    return value


def required_text(entry: Mapping[str, Any], name: str) -> str:
    value: str = field(entry, name, str, required=True)
    return value


def moment(entry: Mapping[str, Any], name: str, parse: Callable[[str], datetime]) -> datetime:
    """A required time field, read by `parse` (which raises ValueError for what it rejects)."""
    value = required_text(entry, name)
    try:
        return parse(value)
    except ValueError:
        raise Malformed("invalid_time", f"{name} {value[:40]!r} is not a time") from None


def optional_moment(
    entry: Mapping[str, Any], name: str, parse: Callable[[str], datetime]
) -> datetime | None:
    return None if text(entry, name) is None else moment(entry, name, parse)
