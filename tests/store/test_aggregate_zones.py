"""Zoned time buckets in SQLite: the UTC offset ranges equal zoneinfo's offset at every moment."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from ownstream.store.sqlite.aggregate import offset_ranges

ZONES = ("UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu",
         "America/Sao_Paulo", "Pacific/Apia", "Africa/Casablanca", "Asia/Tokyo")
LOW = int(datetime(1995, 1, 1, tzinfo=UTC).timestamp())
HIGH = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())


def shift(ranges: list[tuple[int | None, int]], moment: int) -> int:
    """What the SQL CASE does: the first range whose `until` lies after the moment."""
    return next(offset for until, offset in ranges if until is None or moment < until)


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    window=st.tuples(st.integers(LOW, HIGH), st.integers(0, 6 * 365 * 86_400)),
    probes=st.lists(st.floats(0, 1), min_size=1, max_size=20),
)
def test_offset_ranges_match_zoneinfo(
    zone: str, window: tuple[int, int], probes: list[float]
) -> None:
    low, span = window
    high = low + span
    ranges = offset_ranges(ZoneInfo(zone), low, high)
    untils = [u for u, _ in ranges if u is not None]
    assert len(untils) == len(ranges) - 1
    assert untils == sorted(untils) and all(low < u <= high for u in untils)
    for probe in [0.0, 1.0, *probes]:
        moment = low + int(span * probe)
        expected = datetime.fromtimestamp(moment, ZoneInfo(zone)).utcoffset()
        assert expected is not None
        assert shift(ranges, moment) == int(expected.total_seconds()), (zone, moment)
    for until in untils:  # exactly at each transition, and the second before it
        for moment in (until - 1, until):
            expected = datetime.fromtimestamp(moment, ZoneInfo(zone)).utcoffset()
            assert expected is not None
            assert shift(ranges, moment) == int(expected.total_seconds())
