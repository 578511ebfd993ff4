"""SQLite's `unicode61 remove_diacritics 2` tokenizer, in Python, for the PostgreSQL index.

Search must return the same hits on both backends, so PostgreSQL must see the very tokens FTS5
sees. Neither PostgreSQL's parser (it keeps e-mail addresses, URLs and hyphenated words whole)
nor Python's `unicodedata` (a newer Unicode, another diacritic rule) does. unicode61 decides
code point by code point: a code point is a token character or a separator, and a token
character folds to a lowercase, diacritic-free string (often itself; for a combining mark,
nothing). `unicode61.json` records exactly those two facts for every code point, asked of
SQLite itself (`python -m ownstream.store.postgres.unicode61` regenerates it; a test checks it
against the SQLite the tests run with): token characters as ranges, folds as a map.
"""

from __future__ import annotations

import json
import re
import sqlite3
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

TABLE = "unicode61.json"
MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)
_PROBE = "q"  # a token character that folds to itself, around each probed code point


# ASCII is the common case and unicode61 treats it simply: letters and digits are token
# characters, uppercase folds to lowercase (`test_unicode61` checks this against SQLite).
_ASCII_TOKEN = re.compile(r"[0-9a-z]+")
# After folding, whatever is left outside ASCII is a token character.
_TOKEN = re.compile(r"[0-9a-z\x80-\U0010ffff]+")
_BEYOND_ASCII = re.compile(r"[^\x00-\x7f]+")


@cache
def _folding() -> dict[int, str]:
    """Beyond ASCII: each separator to a space, each token character that folds to its fold."""
    table = json.loads(resources.files(__package__).joinpath(TABLE).read_text())
    mapping = {int(code): folded for code, folded in table["folds"].items() if int(code) >= 0x80}
    start = 0x80
    for low, high in [*table["ranges"], [MAX_CODE_POINT + 1, MAX_CODE_POINT + 1]]:
        for code in range(max(start, 0x80), low):
            if code not in _SURROGATES:
                mapping[code] = " "
        start = max(start, high + 1)
    return mapping


def _fold_run(match: re.Match[str]) -> str:
    return match.group().translate(_folding())


def tokens(text: str) -> list[str]:
    """The tokens unicode61 makes of `text`, in order (repeats kept)."""
    if text.isascii():
        return _ASCII_TOKEN.findall(text.lower())
    # bytes.lower() lowercases ASCII letters only; str.lower() would also change letters
    # unicode61 leaves alone
    lowered = text.encode(errors="surrogatepass").lower().decode(errors="surrogatepass")
    return _TOKEN.findall(_BEYOND_ASCII.sub(_fold_run, lowered))


def derive(code_points: range | list[int] | None = None) -> dict[str, Any]:
    """Ask this process's SQLite, one code point at a time (between two probes), whether it
    is a token character and what it folds to. All code points take about 15 seconds."""
    wanted = [
        c
        for c in (code_points if code_points is not None else range(MAX_CODE_POINT + 1))
        if c not in _SURROGATES and chr(c) != _PROBE
    ]
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE VIRTUAL TABLE probe USING fts5 (x, tokenize = 'unicode61 remove_diacritics 2')"
    )
    db.execute("CREATE VIRTUAL TABLE seen USING fts5vocab (probe, 'instance')")
    db.executemany(
        "INSERT INTO probe (rowid, x) VALUES (?, ?)",
        [(c, f"{_PROBE}{chr(c)}{_PROBE}") for c in wanted],
    )
    found: dict[int, list[str]] = {}
    for code, term in db.execute("SELECT doc, term FROM seen"):
        found.setdefault(code, []).append(term)
    db.close()
    ranges: list[list[int]] = []
    folds: dict[str, str] = {}
    for code in [*wanted, ord(_PROBE)]:
        if code != ord(_PROBE):
            terms = found[code]
            if len(terms) != 1:  # two probes: the code point separated them
                continue
            folded = terms[0][len(_PROBE) : -len(_PROBE)]
            if folded != chr(code):
                folds[str(code)] = folded
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    ranges.sort()
    merged: list[list[int]] = []
    for low, high in ranges:
        if merged and merged[-1][1] == low - 1:
            merged[-1][1] = high
        else:
            merged.append([low, high])
    return {"sqlite_version": sqlite3.sqlite_version, "ranges": merged, "folds": folds}


def main() -> None:
    path = Path(__file__).with_name(TABLE)
    path.write_text(json.dumps(derive(), ensure_ascii=True, separators=(",", ":")) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
