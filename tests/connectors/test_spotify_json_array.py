"""A history file is read entry by entry: the streamed items are exactly what orjson makes of the
whole document, and a document orjson refuses (or that is no array) is refused too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ownstream.connectors.spotify_export.json_array import (
    ORJSON_DEPTH_LIMIT,
    READ_AHEAD,
    NotAnArray,
    array_items,
)

_BOM = b"\xef\xbb\xbf"


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    return iter([data[i : i + size] for i in range(0, len(data), size)])


class Counted:
    """`data` in chunks of 4 KiB, counting the chunks read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pulled = 0

    def chunks(self) -> Iterator[bytes]:
        for chunk in chunked(self.data, 4096):
            self.pulled += 1
            yield chunk


def streamed(data: bytes, size: int) -> list[Any] | None:
    """The items read from `data` in chunks of `size` bytes, or None when it is refused."""
    try:
        return list(array_items(chunked(data, size)))
    except NotAnArray:
        return None


def whole(data: bytes) -> list[Any] | None:
    """What the importer made of a history before: orjson's list, or None (refused)."""
    try:
        document = orjson.loads(data.removeprefix(_BOM))
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, list) else None


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.text(st.characters(codec="utf-8"), max_size=4)
    return st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=8)
    | st.sampled_from(["}", "]", '"', "\\", "{", "é", "\u2028"]),
    containers,
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(json_values, max_size=6),
    indent=st.sampled_from([None, 2, "\t"]),
    bom=st.booleans(),
    size=st.integers(1, 64),
)
def test_the_items_are_those_of_the_whole_document(
    items: list[Any], indent: int | str | None, bom: bool, size: int
) -> None:
    data = (_BOM if bom else b"") + json.dumps(items, indent=indent, ensure_ascii=False).encode()
    assert streamed(data, size) == whole(data) == items


SAMPLE = (
    json.dumps(
        [
            {"ts": "2025-01-01T00:00:00Z", "name": "a}b", "list": [1, {"x": "]"}], "n": None},
            'quoted \\" }',
            -1.5e3,
            True,
            [],
            {},
        ],
        indent=2,
    )
    .replace("true", "true ")
    .encode()
)


@pytest.mark.parametrize("size", [1, 3, READ_AHEAD])
def test_a_document_cut_anywhere_is_refused_like_orjson_refuses_it(size: int) -> None:
    for end in range(len(SAMPLE) + 1):
        data = SAMPLE[:end]
        assert streamed(data, size) == whole(data), data


@settings(max_examples=500, deadline=None)
@given(
    position=st.integers(0, len(SAMPLE) - 1),
    removed=st.integers(0, 3),
    inserted=st.sampled_from(
        [b"", b",", b"]", b"[", b"{", b"}", b'"', b"\\", b" ", b"\x0c", b"\xff", b"1", b"x", _BOM]
    ),
    size=st.integers(1, 16),
)
def test_a_damaged_document_is_refused_exactly_when_orjson_refuses_it(
    position: int, removed: int, inserted: bytes, size: int
) -> None:
    data = SAMPLE[:position] + inserted + SAMPLE[position + removed :]
    assert streamed(data, size) == whole(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"  ",
        b"{}",
        b'"[]"',
        b"[1,]",
        b"[,1]",
        b"[1 2]",
        b"[1] 2",
        b"[1]]",
        _BOM + _BOM + b"[]",
    ],
)
def test_what_is_not_one_array_is_refused(data: bytes) -> None:
    assert streamed(data, 2) is None


@pytest.mark.parametrize("depth", [ORJSON_DEPTH_LIMIT - 1, ORJSON_DEPTH_LIMIT])
def test_an_item_as_deep_as_orjson_allows_in_the_array(depth: int) -> None:
    """The array counts as a level: an item orjson parses alone may be too deep inside it."""
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    data = b"[" + nested + b"]"
    assert (streamed(data, 100) is None) == (whole(data) is None) == (depth == ORJSON_DEPTH_LIMIT)


def test_an_item_is_yielded_before_the_rest_of_the_stream_is_read() -> None:
    entry = {"ts": "2025-01-01T00:00:00Z", "master_metadata_track_name": "x" * 100}
    source = Counted(json.dumps([entry] * 50_000, indent=2).encode())
    items = array_items(source.chunks())
    assert next(items) == entry
    assert source.pulled <= READ_AHEAD // 4096 + 1 < len(source.data) // 4096
    assert sum(1 for _ in items) == 49_999


def test_a_long_item_spanning_many_chunks() -> None:
    item = {"text": "}" * 300_000, "nested": [[["]"] * 1000]]}
    data = json.dumps([item, 1, item]).encode()
    assert streamed(data, 1000) == [item, 1, item]


def test_an_item_too_deep_for_orjson_is_refused_without_reading_on() -> None:
    source = Counted(b"[" + b"[" * (16 * READ_AHEAD))
    with pytest.raises(NotAnArray):
        next(array_items(source.chunks()))
    assert source.pulled <= READ_AHEAD // 4096 + 1
