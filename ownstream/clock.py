"""Time and identifiers: UTC ISO 8601 with `Z`, prefixed opaque ids."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Render a moment as UTC ISO 8601 with millisecond precision and a `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _MillisecondClock:
    """`iso(utc_now())`, rendered once per millisecond: a run stamps thousands of records a
    second, and rendering is most of the cost of asking."""

    def __init__(self) -> None:
        self._last: tuple[int, str] = (-1, "")

    def __call__(self) -> str:
        millis = time.time_ns() // 1_000_000
        last = self._last
        if last[0] == millis:
            return last[1]
        seconds, rest = divmod(millis, 1000)
        text = iso(datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest * 1000))
        self._last = (millis, text)
        return text


now_iso = _MillisecondClock()


def parse_iso(text: str) -> datetime:
    """Parse ISO 8601 (a trailing `Z` included); naive values are taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def stable_id(prefix: str, *parts: str) -> str:
    """A deterministic id: the same parts always give the same id."""
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return f"{prefix}_{digest[:24]}"


def random_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"
