"""Lexical search terms: parse a user query, and find matches in visible text.

The store turns terms into its own index syntax; this module never sees SQL. Matched fields
and snippets are computed from grant-projected data only, so hidden fields cannot shape them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ownstream.errors import InvalidArgument
from ownstream.records import search_text

WORD = re.compile(r"[\w]+\*?", re.UNICODE)
MAX_TERMS = 16
# Every backend indexes a stream's first this-many searchable fields, and only those, so the
# same query finds the same records on each.
MAX_SEARCHABLE_FIELDS = 8
SNIPPET_CHARS = 120


@dataclass(frozen=True)
class Term:
    text: str  # folded: lowercase, no diacritics
    prefix: bool


def fold(text: str) -> str:
    # Fold exactly as the index's unicode61 tokenizer does: simple lowercase, diacritics off.
    # Not casefold(): it turns "ß" into "ss", which the index never does, so a word copied from
    # the data ("Straße") could never match.
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def parse_query(q: str) -> tuple[Term, ...]:
    """Words of the query, all of which must match; a trailing `*` makes a prefix term."""
    terms = []
    for match in WORD.finditer(q):
        word = match.group(0)
        prefix = word.endswith("*")
        text = fold(word.rstrip("*").replace("_", " ")).strip()
        for part in text.split():
            terms.append(Term(part, prefix))
    if not terms:
        raise InvalidArgument("q must contain at least one word", param="q")
    if len(terms) > MAX_TERMS:
        raise InvalidArgument(f"q may have at most {MAX_TERMS} words", param="q")
    return tuple(dict.fromkeys(terms))


def _pattern(term: Term) -> re.Pattern[str]:
    tail = r"\w*" if term.prefix else r"(?!\w)"
    return re.compile(r"(?<!\w)" + re.escape(term.text) + tail)


def matches(
    data: dict[str, Any], fields: tuple[str, ...], terms: tuple[Term, ...]
) -> tuple[list[str], dict[str, str] | None]:
    """Which of `fields` contain a term, and a snippet around the first hit."""
    matched, snippet = [], None
    patterns = [_pattern(t) for t in terms]
    for field in fields:
        text = search_text(data.get(field))
        folded = fold(text)
        hits = [m for p in patterns if (m := p.search(folded))]
        if not hits:
            continue
        matched.append(field)
        if snippet is None:
            # `fold` can change lengths for rare characters; snippet from the folded text then
            position = min(h.start() for h in hits)
            source = text if len(text) == len(folded) else folded
            start = max(0, position - SNIPPET_CHARS // 3)
            piece = source[start : start + SNIPPET_CHARS]
            snippet = {
                "field": field,
                "text": ("…" if start else "")
                + piece
                + ("…" if start + SNIPPET_CHARS < len(source) else ""),
            }
    return matched, snippet
