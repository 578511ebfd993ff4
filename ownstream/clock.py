"""Time and identifiers: UTC ISO 8601 with `Z`, prefixed opaque ids."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Render a moment as UTC ISO 8601 with millisecond precision and a `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso(utc_now())


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
