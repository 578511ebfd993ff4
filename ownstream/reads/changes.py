"""The `changes_since` session: tokens, horizons and pages of one grant-visible change feed.

A session pins the store's publish horizon on its first page; every page follows with a sealed
`next_cursor` that carries (start, horizon, position); the terminal page hands out
`next_changes_since`, the horizon, for the next session. One token covers every readable
connection of the stream.
"""

from __future__ import annotations

from typing import Any

from ownstream.errors import CursorExpired, InvalidCursor
from ownstream.grants.scope import display_names
from ownstream.home import Home
from ownstream.model import Bearer, ReadScope
from ownstream.reads import cursors
from ownstream.reads.common import attribution, note_read, record_body


def _start(home: Home, scope: ReadScope, changes_since: str, epoch: str) -> int:
    """The publish sequence a new session starts after."""
    if changes_since == "beginning":
        return 0
    try:
        start = cursors.decode(home.vault, "since", changes_since, "changes_since")
    except cursors.ForeignCursor:
        start = {}  # sealed by another server key: a token this database cannot honour
    if start.get("e") != epoch or start.get("s") != scope.stream.name:
        raise CursorExpired(
            "changes_since was issued by another database or stream; re-sync from "
            "changes_since=beginning",
            param="changes_since",
        )
    since: int = cursors.values(start, "changes_since", seq=int)[0]
    # `beginning` is the advertised way out of a 410, so only tokens can expire.
    if since < home.store.change_floor():
        raise CursorExpired(
            "changes_since is older than the retained change history; re-sync from "
            "changes_since=beginning",
            param="changes_since",
        )
    return since


def changes_page(
    home: Home,
    who: Bearer,
    scope: ReadScope,
    *,
    changes_since: str,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    """One page of a change session as a PDPP list body (without `meta`)."""
    store = home.store
    epoch = store.epoch()
    if cursor is not None:
        session = cursors.decode(home.vault, "changes", cursor)
        if session.get("s") != scope.stream.name or session.get("e") != epoch:
            raise InvalidCursor("cursor belongs to another stream or server", param="cursor")
        since, upto, after_publish, after_seq = cursors.values(
            session, "cursor", **{"from": int, "to": int, "ap": int, "as": int}
        )
        after: tuple[int, int] | None = (after_publish, after_seq)
    else:
        since = _start(home, scope, changes_since, epoch)
        upto, after = store.change_horizon(), None
    page, has_more = store.changes_page(scope, since=since, upto=upto, after=after, limit=limit)
    note_read(home, who, scope.stream.name, [c.connection_id for c in page])
    labels = display_names(store, sorted({c.connection_id for c in page}))
    data = []
    for change in page:
        if change.deleted:
            data.append(
                {
                    "object": "record",
                    "id": change.record_key,
                    "stream": scope.stream.name,
                    "deleted": True,
                    "deleted_at": change.deleted_at,
                    "emitted_at": change.emitted_at,
                    **attribution(change.connection_id, labels),
                }
            )
        else:
            assert change.data is not None
            data.append(
                record_body(
                    scope.stream,
                    change.connection_id,
                    change.record_key,
                    change.data,
                    change.emitted_at,
                    labels,
                )
            )
    body: dict[str, Any] = {
        "object": "list",
        "url": f"/v1/streams/{scope.stream.name}/records",
        "data": data,
        "has_more": has_more,
    }
    if has_more:
        body["next_cursor"] = cursors.encode(
            home.vault,
            "changes",
            {
                "s": scope.stream.name,
                "e": epoch,
                "from": since,
                "to": upto,
                "ap": page[-1].position[0],
                "as": page[-1].position[1],
            },
        )
    else:
        body["next_changes_since"] = cursors.encode(
            home.vault, "since", {"s": scope.stream.name, "e": epoch, "seq": upto}
        )
    return body
