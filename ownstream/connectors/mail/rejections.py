"""Messages that cannot become records: each is rejected with its reason, never the end of a run.

The parsers find them while they stream (sometimes in a pass that cannot yield protocol
messages), so they are noted here and reported as REJECT messages once the pass is done; the
receipt then counts them by reason with a few examples.
"""

from __future__ import annotations

from collections.abc import Iterator

from ownstream.runtime.sdk import Message, reject


class Rejections:
    def __init__(self) -> None:
        self._rejected: list[tuple[str, str, str]] = []

    def reject(self, reason: str, detail: str, where: str) -> None:
        self._rejected.append((reason, detail, where))

    @property
    def count(self) -> int:
        return len(self._rejected)

    def report(self, stream: str) -> Iterator[Message]:
        for reason, detail, where in self._rejected:
            yield reject(stream, reason, detail, key=where)
        self._rejected.clear()
