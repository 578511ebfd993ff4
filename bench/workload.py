"""The benchmark workload: deterministic mail-like records, ~1 KB each, as JSON-lines files.

Every record belongs to one account (one connection). Text is drawn from a Zipf-like vocabulary
of pseudo-words, and three marker words are planted at fixed rates so search has a selective
(~0.015 % of records), a mid (~1 %) and an unselective (~75 %) term whatever the size.

Files hold one record (the `data` object) per line with `id` first; the same files feed the
ownstream connector, the executemany floor and dlt. Derived files (an overlapping re-export,
an update pass) are computed from an original file line by line, never loaded whole.
"""

from __future__ import annotations

import calendar
import itertools
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

STREAM = "bench_messages"

DEFINITION: dict[str, Any] = {
    "name": STREAM,
    "version": 1,
    "semantics": "mutable_state",
    "primary_key": ["id"],
    "cursor_field": "sent_at",
    "consent_time_field": "sent_at",
    "searchable_fields": ["subject", "body"],
    "aggregations": {
        "count": True,
        "sum": ["size_bytes"],
        "group_by": ["from", "labels", "read"],
        "group_by_time": ["sent_at"],
        "count_distinct": ["from", "thread_id"],
    },
    "description": "A mail message (benchmark workload).",
    "schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "thread_id": {"type": "string"},
            "sent_at": {"type": "string", "format": "date-time", "pattern": "Z$"},
            "from": {"type": "string"},
            "to": {"type": "string"},
            "subject": {"type": "string"},
            "body": {"type": "string"},
            "labels": {"type": "string"},
            "size_bytes": {"type": "integer", "minimum": 0},
            "read": {"type": "boolean"},
            "starred": {"type": "boolean"},
        },
        "required": ["id", "sent_at", "subject"],
        "additionalProperties": False,
    },
}

# Planted search terms and the share of records that carry each one.
SELECTIVE, MID, UNSELECTIVE = "zanzibar", "harbour", "update"
RATES = {SELECTIVE: 0.00015, MID: 0.01, UNSELECTIVE: 0.75}

VOCABULARY_SIZE = 30_000
POOL_WORDS = 1 << 20
ZIPF_EXPONENT = 1.07
BODY_WORDS = (95, 125)
SUBJECT_WORDS = (4, 8)
EPOCH = 1_451_606_400  # 2016-01-01T00:00:00Z
SPAN_SECONDS = 10 * 365 * 86_400  # ten years of mail per account
LABELS = ("inbox", "work", "family", "travel", "receipts", "newsletters", "archive", "later")


@dataclass(frozen=True)
class Vocabulary:
    words: tuple[str, ...]
    cumulative: tuple[float, ...]

    def sample(self, rng: random.Random, count: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cumulative, k=count)


class Text:
    """Fast Zipf text: slices of one long pre-sampled word sequence at random offsets."""

    def __init__(self, vocab: Vocabulary, rng: random.Random) -> None:
        self.pool = vocab.sample(rng, POOL_WORDS)

    def words(self, draw: Callable[[], float], count: int) -> list[str]:
        start = int(draw() * (POOL_WORDS - count))
        return self.pool[start : start + count]


def vocabulary(seed: int) -> Vocabulary:
    """Pseudo-words from consonant-vowel syllables, with Zipf weights by rank."""
    rng = random.Random(seed * 7919 + 1)
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    planted = set(RATES)
    seen: set[str] = set()
    words: list[str] = []
    while len(words) < VOCABULARY_SIZE:
        syllables = rng.choice((1, 2, 2, 3, 3, 3, 4))
        word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))
        if word not in seen and word not in planted:
            seen.add(word)
            words.append(word)
    weights = [1.0 / (rank**ZIPF_EXPONENT) for rank in range(1, len(words) + 1)]
    return Vocabulary(tuple(words), tuple(itertools.accumulate(weights)))


def _iso(moment: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def _epoch(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def _plant(draw: Callable[[], float], words: list[str]) -> None:
    for term, rate in RATES.items():
        if draw() < rate:
            words.insert(int(draw() * (len(words) + 1)), term)


def _people(rng: random.Random, vocab: Vocabulary, account: str, count: int) -> list[str]:
    return [
        f"{'.'.join(vocab.sample(rng, 2))}@{rng.choice(vocab.words[:200])}.example"
        for _ in range(count)
    ] + [f"{account}@mail.example"]


def _between(draw: Callable[[], float], low: int, high: int) -> int:
    """A uniform integer in [low, high], cheaper than `randint` (this runs ~10 times a record)."""
    return low + int(draw() * (high - low + 1))


LABEL_SETS = tuple(
    ",".join(combo) for size in (1, 2, 3) for combo in itertools.combinations(LABELS, size)
)


def generate(
    account: str,
    count: int,
    seed: int,
    *,
    first: int = 0,
    after: int | None = None,
    step: int | None = None,
) -> Iterator[dict[str, Any]]:
    """`count` messages of one account, oldest first, ids `{account}-{n:08d}` from `first`,
    spread over SPAN_SECONDS from EPOCH; or, given `after` (epoch seconds) and `step` (the mean
    seconds between two messages), continuing another file's timeline at its pace."""
    rng = random.Random(f"{seed}:{account}:{first}")
    draw = rng.random
    vocab = vocabulary(seed)
    text_source = Text(vocab, rng)
    people = _people(rng, vocab, account, 300)
    step = step or max(1, SPAN_SECONDS // max(count, 1))
    moment = EPOCH + first * step if after is None else after
    for n in range(first, first + count):
        moment += _between(draw, 1, 2 * step - 1) if step > 1 else 1
        body = text_source.words(draw, _between(draw, *BODY_WORDS))
        _plant(draw, body)
        subject = text_source.words(draw, _between(draw, *SUBJECT_WORDS))
        subject[0] = subject[0].capitalize()
        text = " ".join(body)
        recipients = _between(draw, 1, 3)
        at = int(draw() * (len(people) - recipients))
        yield {
            "id": f"{account}-{n:08d}",
            "thread_id": f"{account}-t{max(first, n - _between(draw, 0, 6)):08d}",
            "sent_at": _iso(moment),
            "from": people[int(draw() * len(people))],
            "to": ", ".join(people[at : at + recipients]),
            "subject": " ".join(subject),
            "body": text,
            "labels": LABEL_SETS[int(draw() * len(LABEL_SETS))],
            "size_bytes": len(text) + _between(draw, 400, 40_000),
            "read": draw() < 0.8,
            "starred": draw() < 0.05,
        }


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """Write records as JSON lines; returns (lines, bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = size = 0
    with path.open("wb") as out:
        for record in records:
            line = orjson.dumps(record) + b"\n"
            out.write(line)
            lines += 1
            size += len(line)
    return lines, size


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield orjson.loads(line)


def _edit(record: dict[str, Any], rng: random.Random, vocab: Vocabulary) -> dict[str, Any]:
    """A plausible change: flags and labels move, and every other edit renames the subject."""
    changed = dict(record)
    changed["read"] = not record["read"]
    changed["labels"] = LABEL_SETS[rng.randrange(len(LABEL_SETS))]
    if rng.random() < 0.5:
        changed["subject"] = "Re: " + " ".join(vocab.sample(rng, rng.randint(*SUBJECT_WORDS)))
    return changed


def overlapping(
    source: Path, account: str, seed: int, *, changed: float = 0.05, new: float = 0.05
) -> Iterator[dict[str, Any]]:
    """A later export of the same account, as long as `source`: the first (1 - new) share of
    its records (a `changed` share of all lines edited), then `new` share of newer records."""
    total = sum(1 for _ in source.open("rb"))
    keep = total - round(total * new)
    rng = random.Random(f"{seed}:{account}:overlap")
    vocab = vocabulary(seed)
    every = max(1, round(keep / max(1, round(total * changed))))
    last, sent = 0, EPOCH
    for index, record in enumerate(itertools.islice(read_jsonl(source), keep)):
        last, sent = int(record["id"].rsplit("-", 1)[1]), _epoch(record["sent_at"])
        yield _edit(record, rng, vocab) if index % every == every - 1 else record
    # the new records follow the last kept one at the same pace (sent within the span's end)
    pace = max(1, SPAN_SECONDS // max(total, 1))
    yield from generate(account, total - keep, seed, first=last + 1 + total, after=sent, step=pace)


def updates(source: Path, seed: int, *, fraction: float) -> Iterator[dict[str, Any]]:
    """An incremental pull after `fraction` of the account's records changed: only those."""
    rng = random.Random(f"{seed}:{source.name}:updates")
    vocab = vocabulary(seed)
    every = max(1, round(1 / fraction))
    for index, record in enumerate(read_jsonl(source)):
        if index % every == every // 2:
            yield _edit(record, rng, vocab)


def count_term(path: Path, term: str) -> int:
    """Records whose subject or body holds `term` as a word (ground truth for search)."""
    needle = term.encode()
    hits = 0
    with path.open("rb") as handle:
        for line in handle:
            if needle in line:
                record = orjson.loads(line)
                text = f"{record['subject']} {record['body']}".lower().split()
                hits += term in text
    return hits


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]
