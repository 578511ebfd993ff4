"""The PostgreSQL index's tokenizer is SQLite's unicode61 (remove_diacritics 2), exactly."""

from __future__ import annotations

import json
import sqlite3
from importlib import resources

from hypothesis import given, settings
from hypothesis import strategies as st

from ownstream.store.postgres import unicode61

BMP = range(0x10000)


def sqlite_tokens(texts: list[str]) -> list[list[str]]:
    """What FTS5 itself makes of each text, in order."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5 (x, tokenize = 'unicode61 remove_diacritics 2')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab (t, 'instance')")
    db.executemany("INSERT INTO t (rowid, x) VALUES (?, ?)", list(enumerate(texts)))
    found: list[list[tuple[int, str]]] = [[] for _ in texts]
    for doc, term, offset in db.execute("SELECT doc, term, offset FROM v"):
        found[doc].append((offset, term))
    return [[term for _, term in sorted(tokens)] for tokens in found]


def test_the_shipped_table_is_what_this_sqlite_does_for_every_character_of_the_bmp() -> None:
    shipped = json.loads(
        resources.files(unicode61.__package__).joinpath(unicode61.TABLE).read_text()
    )
    derived = unicode61.derive(BMP)

    def within(ranges: list[list[int]]) -> set[int]:
        return {c for low, high in ranges for c in range(low, min(high, BMP.stop - 1) + 1)}

    assert within(shipped["ranges"]) == within(derived["ranges"])
    assert {k: v for k, v in shipped["folds"].items() if int(k) in BMP} == derived["folds"]


def test_tokens_of_mixed_text_are_fts5s() -> None:
    texts = [
        "ada.lind@example.org https://x.org/a-b_c?d=1",
        "Café ÜBERSTRASSE Straße ﬁne ǅ İstanbul",
        "東京タワー 🎵music🎶 emoji🙂inside",
        "a \u0301 b e\u0301t\u0301e",
        "",
        "   ",
        "MiXeD CaSe 123abc",
    ]
    assert [unicode61.tokens(text) for text in texts] == sqlite_tokens(texts)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=20))
def test_tokens_of_any_text_are_fts5s(texts: list[str]) -> None:
    texts = [t for t in texts if not any(0xD800 <= ord(c) <= 0xDFFF for c in t)] or [""]
    assert [unicode61.tokens(text) for text in texts] == sqlite_tokens(texts)
