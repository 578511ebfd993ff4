"""Search finds the same records, in the same order, on SQLite and on PostgreSQL.

One dataset (text chosen where tokenizers differ: e-mail addresses, URLs, hyphens and
underscores, diacritics and case, ß and ligatures, CJK, emoji, digits, words hidden in a field
a grant withholds, versions staged and not yet published, tombstones) goes into a store of
each backend through the Store protocol; every query, under every scope, must answer alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ownstream.model import ReadScope
from ownstream.search import parse_query
from ownstream.store.base import Store
from ownstream.store.postgres import PostgresStore, reads
from ownstream.store.sqlite import SQLiteStore
from tests.store.contract.conftest import NOTES, Clock, Harness, gone, note

TEXTS = [
    ("ada.lind@example.org wrote", "Meet at https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC"),
    ("Café Überstraße", "naïve façade; CAFÉ au lait"),
    ("Straße und Strasse", "ﬁne ligatures: ﬁle ﬂow"),
    ("foo-bar baz_qux", "well-known e-mail re-run"),
    ("東京 タワー 日本語テキスト", "mixed 東京tower text"),
    ("🎵 music 🎶 notes", "emoji🙂inside words"),
    ("Version 2.0.1 released", "room 42b, 3.14159 and 1,000,000"),
    ("Ωmega Αλφα ÅNGSTRÖM", "Ελληνικά Кириллица ЁЛКА"),
    ("İstanbul \u0131stakoz", "Ǆemal ǅivo dž"),  # \u0131: a dotless i
    ("O'Brien's \"quoted\" text", "back\\slash and tab\there"),
    ("garden tomatoes", "garden party"),
    ("budget invoice", "tomato garden"),
]
QUERIES = [
    "garden", "gard*", "tomato*", "garden tomatoes", "ada", "example", "org", "lind",
    "spotify", "4ulu6hmcjmi75m1a2tkuqc", "cafe", "CAFÉ", "uberstrasse", "überstraße", "straße",
    "strasse", "fine", "ﬁne", "ﬁ*", "foo", "bar", "baz", "qux", "baz_qux", "well", "known",
    "東京", "東*", "タワー", "music", "emoji", "inside", "2", "0", "1", "42b", "3", "14159",
    "ωmega", "αλφα", "angstrom", "ελληνικα", "ёлка", "елка", "istanbul", "\u0131stakoz", "ǆemal",
    "dž", "o", "brien", "s", "quoted", "slash", "tab", "t*", "zephyr", "secretword",
    "secret*", "staged", "zzz", "garden zzz",
]
SCOPES = {
    "every field": NOTES.fields,
    "no secret": ("id", "title", "body", "at"),
    "title only": ("id", "title"),
}


def load(store: Store, clock: Clock) -> list[str]:
    """The dataset, written the same way into any store; its connection ids."""
    harness = Harness(store, clock)
    a, b, c = harness.connection("a"), harness.connection("b"), harness.connection("c")
    for i, (title, body) in enumerate(TEXTS):
        connection = (a, b, c)[i % 3]
        secret = "secretword zephyr" if i % 4 == 0 else "plain"
        at = f"2024-0{i % 9 + 1}-01T00:00:00Z"
        harness.collect(connection, [note(f"n{i}", title=title, body=body, secret=secret, at=at)])
    # a later stage rewrites some, deletes one, adds one; another stays staged, unpublished
    stage = harness.stage(a)
    harness.write(stage, [note("n0", title="garden rewritten", body="", at="2024-02-01T00:00:00Z"),
                          gone("n3"), note("added", title="garden added", secret="zephyr")])
    harness.publish(stage)
    staged = harness.stage(b)
    harness.write(staged, [note("n1", title="staged garden"), note("n99", title="staged")])
    return [a, b, c]


def hits(store: Store, connections: list[str], fields: tuple[str, ...], query: str,
         **window: str) -> list[tuple[str, str]]:
    """Every hit, newest first, paged by 3 through `before`."""
    scope = ReadScope(NOTES, tuple(connections), fields, **window)  # type: ignore[arg-type]
    found: list[tuple[str, str]] = []
    before = None
    while True:
        page, more = store.search([scope], parse_query(query), limit=3, before=before)
        found += [(hit.connection_id, hit.record_key) for hit in page]
        if not more:
            return found
        before = page[-1].record_id


@pytest.fixture
def stores(tmp_path: Path, postgres_url: str) -> tuple[tuple[Store, list[str]], ...]:
    clock = Clock()
    sqlite = SQLiteStore(tmp_path / "parity.db", clock=clock)
    postgres = PostgresStore(postgres_url, clock=clock)
    loaded = ((sqlite, load(sqlite, clock)), (postgres, load(postgres, clock)))
    assert loaded[0][1] == loaded[1][1]  # the same connection ids
    return loaded


@pytest.mark.parametrize("walk", [reads.PROBE_ROWS, 1], ids=["walk-first", "index-mostly"])
def test_every_query_finds_the_same_records_in_the_same_order(
    stores: tuple[tuple[Store, list[str]], ...], walk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the walk's usual budget the newest hits are mostly proven by walking; with none
    to speak of, mostly by the GIN index: either way, the same hits as SQLite."""
    monkeypatch.setattr(reads, "PROBE_ROWS", walk)
    (sqlite, connections), (postgres, _) = stores
    a, b, c = connections
    compared = found = 0
    for query in QUERIES:
        for name, fields in SCOPES.items():
            for granted in ([a, b, c], [a], [b, c]):
                expected = hits(sqlite, granted, fields, query)
                assert hits(postgres, granted, fields, query) == expected, (query, name, granted)
                compared += 1
                found += bool(expected)
        window = {"since": "2024-03-01T00:00:00.000Z", "until": "2024-08-01T00:00:00.000Z"}
        assert hits(postgres, connections, NOTES.fields, query, **window) == hits(
            sqlite, connections, NOTES.fields, query, **window
        ), query
    assert compared == len(QUERIES) * len(SCOPES) * 3
    assert found > compared // 3  # most comparisons are of real hits, not of empty lists
    sqlite.close()
