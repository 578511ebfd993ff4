"""Messages that cannot become records: counted by reason, never the end of a run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from ownstream.runtime.sdk import Message, skip

MAX_EXAMPLES = 5


class Rejections:
    """Counts rejected messages by reason and keeps a few examples for the owner.

    The whole tally is reported once, as a known gap of the `messages` stream, at the end.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: list[str] = []

    def reject(self, reason: str, detail: str, where: str) -> None:
        self.counts[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason} ({detail})")

    def report(self, stream: str) -> Iterator[Message]:
        if not self.counts:
            return
        total = sum(self.counts.values())
        by_reason = ", ".join(f"{reason} {count}" for reason, count in sorted(self.counts.items()))
        yield skip(
            stream,
            "rejected_messages",
            f"{total} messages could not be collected ({by_reason}); for example "
            + "; ".join(self.examples),
            recovery_action="not_retriable",
            retryable=False,
        )
