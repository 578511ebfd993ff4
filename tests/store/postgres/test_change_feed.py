"""The change feed is commit-ordered with concurrent publishers (collection.py says why).

A change token is the publish clock a reader saw; the next read covers (token, clock]. The
feed would skip a publication if one could commit with a number at or below a clock a reader
had already seen: these tests hold a publication open after it took its number, publish
another connection meanwhile, and read the feed at every step; then let writers race.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable

import psycopg

from ownstream.model import ReadScope
from ownstream.store.postgres import PostgresStore
from tests.store.contract.conftest import NOTES, Clock, Harness, note

from .conftest import OpenStore


def feed(store: PostgresStore, since: int, connection_ids: list[str]) -> tuple[list[str], int]:
    """Everything changed after token `since`, and the next token."""
    upto = store.change_horizon()
    scope = ReadScope(NOTES, tuple(connection_ids), NOTES.fields)
    keys, after = [], None
    while True:
        page, more = store.changes_page(scope, since=since, upto=upto, after=after, limit=50)
        keys += [record.record_key for record in page]
        if not more:
            return keys, upto
        after = page[-1].position


def waiting_for_locks(url: str, count: int, timeout: float = 10) -> None:
    """Wait until `count` sessions of the database are blocked on a lock."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as db:
        while True:
            row = db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None and row[0] >= count:
                return
            assert time.monotonic() < deadline, "the publications never blocked"
            time.sleep(0.01)


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_a_publication_in_flight_holds_back_every_later_one(
    pg: Harness, postgres_url: str
) -> None:
    store = pg.store
    assert isinstance(store, PostgresStore)
    a, b = pg.connection("a"), pg.connection("b")
    slow, fast = pg.stage(a), pg.stage(b)
    pg.write(slow, [note("a1", title="slow")])
    pg.write(fast, [note("b1", title="fast")])
    token = store.change_horizon()

    with psycopg.connect(postgres_url) as hold:
        # the slow publication will take its number, then wait on its run's row
        hold.execute("SELECT 1 FROM runs WHERE run_id = %s FOR UPDATE", (slow.run_id,))
        slow_thread, slow_errors = in_thread(lambda: pg.publish(slow))
        waiting_for_locks(postgres_url, 1)
        # it has its number but has not committed: the clock a reader sees has not moved
        assert store.change_horizon() == token
        fast_thread, fast_errors = in_thread(lambda: pg.publish(fast))
        waiting_for_locks(postgres_url, 2)  # the fast one waits for the clock's row
        seen, held_token = feed(store, token, [a, b])
        assert (seen, held_token) == ([], token)
        hold.rollback()  # the slow publication goes on, and commits; then the fast one
    for thread in (slow_thread, fast_thread):
        thread.join(30)
    assert slow_errors == fast_errors == []
    seen, next_token = feed(store, held_token, [a, b])
    assert seen == ["a1", "b1"]  # nothing skipped, in commit order
    assert next_token == token + 2


def test_racing_publishers_never_make_a_reader_skip_a_change(
    open_store: OpenStore, clock: Clock
) -> None:
    writers, stages_each, records_each = 4, 6, 3
    admin = Harness(open_store(pool_size=8), clock)
    connections = [admin.connection(f"w{i}") for i in range(writers)]
    written: set[str] = set()
    lock = threading.Lock()
    done = threading.Event()

    def write(index: int) -> None:
        harness = Harness(open_store(pool_size=2), clock)
        harness.runs = index * 1000
        rng = random.Random(index)
        for stage_number in range(stages_each):
            keys = [f"w{index}-s{stage_number}-r{r}" for r in range(records_each)]
            stage = harness.stage(connections[index])
            harness.write(stage, [note(key, title=key) for key in keys])
            time.sleep(rng.random() / 100)
            harness.publish(stage)
            with lock:
                written.update(keys)

    reads: list[list[str]] = []
    tokens: list[int] = []

    def read() -> None:
        reader = open_store(pool_size=2)
        token = 0
        while True:
            finished = done.is_set()
            seen, token = feed(reader, token, connections)
            reads.append(seen)
            tokens.append(token)
            if finished:
                return

    reader_thread, reader_errors = in_thread(read)
    threads = [in_thread(functools.partial(write, i)) for i in range(writers)]
    for thread, errors in threads:
        thread.join(60)
        assert errors == []
    done.set()
    reader_thread.join(60)
    assert reader_errors == []
    every = [key for seen in reads for key in seen]
    assert sorted(every) == sorted(written)  # each change read exactly once, none skipped
    assert len(written) == writers * stages_each * records_each
    assert tokens == sorted(tokens) and len(reads) > 1
