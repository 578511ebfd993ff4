"""The write planner: what one batch of records does to the records a connection holds. Pure.

`plan_batch` takes a stream definition, the acquisition path and stage that write, the current
head version of every record the batch touches, and the incoming writes; it returns a
`BatchPlan` — inserts, new versions (with the change-log entry and the diff each one keeps),
sightings, stats. The merge policy, version diffs and the non-destructive delete rule live here,
in plain Python, so every backend applies exactly the same rules: a backend only loads the
current rows a batch needs and applies the plan (dlt's normalize/load split).

A *stage* is one run, import or push. Its versions stay invisible to readers until the stage is
published; a version is written over a head only when that head belongs to the same stage,
otherwise the published head is *parked* (kept readable) until publication.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import orjson

from ownstream.model import AcquisitionPath, RecordRule, RecordWrite, StreamDefinition
from ownstream.records import (
    BLOB_ID,
    blob_refs,
    changed_fields,
    consent_time,
    is_coarse,
    keep_finer_time,
    match_window,
    merge,
    sortable,
)

OWNER_EDITOR = "owner"
"""The connector key of the owner's own edits (a record delete): an authoritative path."""


@dataclass(frozen=True)
class BlobUse:
    """A blob a record's head references, in the top-level field a grant projects."""

    field: str
    blob_id: str
    mime_type: str


def blob_uses(definition: StreamDefinition, data: dict[str, Any]) -> tuple[BlobUse, ...]:
    """The blobs `data` references at the definition's blob paths (well-formed refs only; the
    runtime refuses records with others), each (field, blob) once."""
    found: dict[tuple[str, str], BlobUse] = {}
    for name, ref in blob_refs(definition, data):
        if isinstance(ref, dict) and isinstance(ref.get("blob_id"), str):
            blob_id = ref["blob_id"]
            if BLOB_ID.fullmatch(blob_id):
                mime = ref.get("mime_type")
                found.setdefault(
                    (name, blob_id),
                    BlobUse(name, blob_id, mime if isinstance(mime, str) else ""),
                )
    return tuple(found.values())


@dataclass(frozen=True)
class CurrentRecord:
    """A record's head version as the store holds it (the stage's own, or the published one)."""

    record_id: int
    encoded: bytes  # the data as stored: JSON, decoded only when a write may change it
    version: int
    deleted: bool
    paths: frozenset[str]  # connector keys whose evidence the record carries
    stage: int  # the stage that wrote this version
    emitted_at: str

    @cached_property
    def data(self) -> dict[str, Any]:
        decoded: dict[str, Any] = orjson.loads(self.encoded)
        return decoded


@dataclass(slots=True)
class Head:
    """The columns of a record's head version after the batch.

    A plan's parts (`Head`, `Change`, `Insert`, `NewVersion`, `Sighting`) are made once per
    record and only read after: they are not frozen, which makes building one several times
    cheaper (a frozen dataclass sets each field through `object.__setattr__`)."""

    record_key: str
    data: dict[str, Any]
    encoded: bytes
    emitted_at: str
    cursor_value: str
    consent_time: str | None
    version: int
    deleted: bool
    paths: frozenset[str]
    match_key: str | None
    blobs: tuple[BlobUse, ...] = ()  # what a live head references; a tombstone references none


def stored_match_key(rule: RecordRule, data: dict[str, Any]) -> str | None:
    """The match key a store keeps and looks records up by: the rule's time window (fixed-width
    hex) and then the rule's match key. Two records share it exactly when they share
    `records.match_key`, and an index on it grows at its end as time-ordered records arrive,
    so an import dirties a few index pages per batch rather than one per record."""
    found = match_window(rule, data)
    if found is None:
        return None
    window, key = found
    return f"{window:010x}{key[:12]}"


class MatchKeys:
    """`stored_match_key` under one rule, computed once per data object of a batch (the
    store's lookup, the pairing and the heads all ask for the same writes' keys)."""

    def __init__(self, rule: RecordRule) -> None:
        self.rule = rule
        self._known: dict[int, tuple[dict[str, Any], str | None]] = {}

    def __call__(self, data: dict[str, Any]) -> str | None:
        known = self._known.get(id(data))
        if known is None or known[0] is not data:
            known = self._known[id(data)] = (data, stored_match_key(self.rule, data))
        return known[1]


@dataclass(frozen=True)
class Matching:
    """A stream's record rule, and the live records (by key, also in `current`) that share a
    stored match key with the batch's writes."""

    rule: RecordRule
    candidates: Mapping[str, Sequence[str]]  # stored match key -> record keys
    keys: MatchKeys


@dataclass(slots=True)
class Change:
    """One change-log entry. `prior` holds the previous values of the fields it changed (a
    field absent from `prior` but listed in `fields` did not exist before); inserts carry
    neither, deletes leave the data on the tombstone."""

    op: Literal["insert", "update", "delete"]
    version: int
    fields: tuple[str, ...] | None
    prior: dict[str, Any] | None


@dataclass(slots=True)
class Insert:
    head: Head
    change: Change


@dataclass(slots=True)
class NewVersion:
    """A new version of an existing record. `park` keeps the published head readable until
    the stage is published; a head the stage wrote itself is simply overwritten."""

    record_id: int
    previous: CurrentRecord
    head: Head
    change: Change
    park: bool


@dataclass(slots=True)
class Sighting:
    """The stage saw a record it holds unchanged: provenance, and maybe a new path mark."""

    record_id: int
    add_path: bool


@dataclass
class BatchStats:
    new: int = 0
    updated: int = 0
    duplicate: int = 0
    deleted: int = 0
    skipped: int = 0  # deletes deferred because another path evidences the record
    merged_with_existing: int = 0
    ambiguous: int = 0  # coarse records that could be several events: kept apart
    count_delta: int = 0  # live records gained (or lost)
    window_start: str | None = None  # the consent-time window the batch's records cover
    window_end: str | None = None
    seen: int = 0

    def add(self, other: BatchStats) -> None:
        for name in (
            "new",
            "updated",
            "duplicate",
            "deleted",
            "skipped",
            "merged_with_existing",
            "ambiguous",
            "count_delta",
            "seen",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.widen(other.window_start, other.window_end)

    def widen(self, start: str | None, end: str | None) -> None:
        if start is not None:
            self.window_start = min(start, self.window_start or start)
        if end is not None:
            self.window_end = max(end, self.window_end or end)


@dataclass
class BatchPlan:
    stream: str
    inserts: list[Insert] = field(default_factory=list)
    versions: list[NewVersion] = field(default_factory=list)
    sightings: list[Sighting] = field(default_factory=list)
    stats: BatchStats = field(default_factory=BatchStats)


_NO_PATHS: frozenset[str] = frozenset()


class _Working:
    """A key's effective state while the batch is folded onto it.

    `encoded` is `data` as JSON when it is known without encoding: the held head's stored
    bytes, or one incoming write's. A write whose bytes equal them is a duplicate without
    either side being decoded, which keeps a re-import of mostly known records cheap."""

    __slots__ = (
        "_data",
        "current",
        "deleted",
        "emitted_at",
        "encoded",
        "paths",
        "sighted",
        "touched",
    )

    def __init__(self, current: CurrentRecord | None) -> None:
        self.current = current
        self._data: dict[str, Any] | None
        self.encoded: bytes | None
        self.paths: frozenset[str]
        if current is None:  # a key the store does not hold: no data, as if deleted
            self._data = {}
            self.encoded = None
            self.deleted = True
            self.paths = _NO_PATHS
            self.emitted_at = ""
        else:
            self._data = None  # decoded from `encoded` when asked
            self.encoded = current.encoded
            self.deleted = current.deleted
            self.paths = current.paths
            self.emitted_at = current.emitted_at
        self.touched = False  # some write changed data or liveness
        self.sighted = False

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            assert self.current is not None
            self._data = self.current.data
        return self._data

    def rewrite(self, data: dict[str, Any], encoded: bytes | None) -> None:
        self._data, self.encoded = data, encoded

    @property
    def unchanged(self) -> bool:
        """Still exactly the held head's data (known without decoding or diffing)."""
        return self.current is not None and self.encoded is self.current.encoded


def plan_batch(
    definition: StreamDefinition,
    path: AcquisitionPath,
    stage: int,
    current: Mapping[str, CurrentRecord],
    incoming: Sequence[RecordWrite],
    matching: Matching | None = None,
) -> BatchPlan:
    """Fold `incoming` (in order) onto the current heads; see the module docstring.

    Rules (docs/identity.md, "merge policy"):
    - an upsert of an unknown key inserts; of a known one merges by `records.merge` (fields
      kept when another path evidences the record or the stream is append-only; union fields
      united); a merge that changes nothing is a sighting (`duplicate`);
    - a delete removes a record only the writing path evidences; another path's evidence
      defers it (`skipped`); a delete of an unknown or deleted key changes nothing;
    - the owner's delete (`OWNER_EDITOR`) is authoritative: it removes the record whatever
      evidences it, and a later write brings the record back only when it carries data the
      deleted record did not have (a re-sighting of what the owner deleted is `skipped`);
    - several writes of one key in a batch fold into one new version;
    - under a record rule (`Matching`), a coarse record and a precise one of the same event
      (`reconcile`) become one record, keyed precisely.
    """
    plan = BatchPlan(definition.name)
    stats = plan.stats
    connector = path.connector_key
    working: dict[str, _Working] = {}
    fills: list[tuple[str, RecordWrite]] = []
    absorbed: list[tuple[str, str]] = []
    rule = matching.rule if matching is not None else None
    keys = matching.keys if matching is not None else None
    if matching is not None:
        incoming, fills, absorbed, stats.ambiguous = reconcile(matching, current, incoming)
    for write in incoming:
        state = working.get(write.record_key)
        if state is None:
            state = working[write.record_key] = _Working(current.get(write.record_key))
        stats.seen += 1
        if write.op == "delete":
            _delete(state, connector, stats)
        else:
            _upsert(definition, rule, state, write, connector, stats)
    for target_key, write in fills:
        _widen(definition, write.data, stats)
        _fill(working, current, target_key, write.data, connector, stats)
    for coarse_key, target_key in absorbed:
        _absorb(working, current, coarse_key, target_key)
        stats.merged_with_existing += 1
    for key, state in working.items():
        _settle(definition, keys, plan, stage, key, state)
    return plan


def reconcile(
    matching: Matching, current: Mapping[str, CurrentRecord], incoming: Sequence[RecordWrite]
) -> tuple[list[RecordWrite], list[tuple[str, RecordWrite]], list[tuple[str, str]], int]:
    """Pair coarse and precise records of one event under a record rule.

    For each match key the batch touches: when exactly one precise record (held or incoming)
    and exactly one coarse record (held or incoming) share it, they are one event — an
    incoming coarse write *fills* the precise record (its fields only fill what the precise
    one lacks), and a held coarse record is *absorbed* into it (likewise, and its own key is
    tombstoned). Anything else with both kinds present is ambiguous: the coarse records stay
    apart, and are counted (held ones too, so precise records arriving after their coarse
    twins report the ambiguity as well). Returns the writes left to fold, the fills (precise
    key, coarse write), the absorptions (coarse key, precise key) and the ambiguous count.
    """
    rule, keys = matching.rule, matching.keys
    coarse_in: dict[str, list[int]] = {}
    precise_in: dict[str, list[int]] = {}
    for index, write in enumerate(incoming):
        key = keys(write.data) if write.op == "upsert" else None
        if key is not None:
            group = coarse_in if is_coarse(rule, write.data) else precise_in
            group.setdefault(key, []).append(index)
    filling: dict[int, str] = {}
    absorbed: list[tuple[str, str]] = []
    ambiguous = 0
    for key in coarse_in.keys() | precise_in.keys():
        if key not in matching.candidates and (key not in coarse_in or key not in precise_in):
            continue  # one kind only, nothing held: the usual case, and nothing to pair
        held = [
            k for k in matching.candidates.get(key, ()) if k in current and not current[k].deleted
        ]
        coarse = {k for k in held if is_coarse(rule, current[k].data)}
        coarse |= {incoming[i].record_key for i in coarse_in.get(key, ())}
        precise = {k for k in held if not is_coarse(rule, current[k].data)}
        precise |= {incoming[i].record_key for i in precise_in.get(key, ())}
        if not coarse or not precise:
            continue
        if len(coarse) > 1 or len(precise) > 1:
            ambiguous += len(coarse)  # held or incoming: whichever side arrived last
            continue
        (target,) = precise
        (coarse_key,) = coarse
        filling.update((index, target) for index in coarse_in.get(key, ()))
        if coarse_key in current and not current[coarse_key].deleted:
            absorbed.append((coarse_key, target))
    writes = [w for i, w in enumerate(incoming) if i not in filling]
    fills = [(target, incoming[i]) for i, target in sorted(filling.items())]
    return writes, fills, absorbed, ambiguous


def _fill(
    working: dict[str, _Working],
    current: Mapping[str, CurrentRecord],
    target_key: str,
    data: dict[str, Any],
    connector: str,
    stats: BatchStats,
) -> None:
    """A coarse write of an event held precisely: its fields fill the gaps, its path joins."""
    target = working.get(target_key)
    if target is None:
        target = working[target_key] = _Working(current.get(target_key))
    stats.seen += 1
    stats.merged_with_existing += 1
    filled = {**data, **target.data}
    target.paths = target.paths | {connector}
    if filled == target.data:
        stats.duplicate += 1
        target.sighted = True
        return
    stats.updated += 1
    target.rewrite(filled, None)
    target.touched = True


def _absorb(
    working: dict[str, _Working],
    current: Mapping[str, CurrentRecord],
    coarse_key: str,
    target_key: str,
) -> None:
    """A held coarse record joins its precise twin: its fields fill the gaps, its paths join,
    and its own key becomes a tombstone (a re-key, whatever path wrote it)."""
    coarse = current[coarse_key]
    target = working.get(target_key)
    if target is None:
        target = working[target_key] = _Working(current.get(target_key))
    if target.deleted:
        return
    filled = {**coarse.data, **target.data}
    if filled != target.data:
        target.rewrite(filled, None)
    target.touched = True
    target.paths = target.paths | coarse.paths
    gone = working.get(coarse_key)
    if gone is None:
        gone = working[coarse_key] = _Working(coarse)
    gone.deleted = gone.touched = True


def _delete(state: _Working, connector: str, stats: BatchStats) -> None:
    if state.deleted:
        stats.duplicate += 1
    elif connector == OWNER_EDITOR:
        stats.deleted += 1
        state.deleted = state.touched = True
        state.paths = frozenset({OWNER_EDITOR})  # the owner's word is its only evidence now
    elif state.paths - {connector}:
        stats.skipped += 1  # another path evidences it: not ours to remove
    else:
        stats.deleted += 1
        state.deleted = state.touched = True


def _widen(definition: StreamDefinition, data: dict[str, Any], stats: BatchStats) -> None:
    """Every record a batch evidences is in its window, whether it changed anything or not."""
    point = consent_time(definition, data)
    if point is not None:
        stats.widen(point, point)


def _upsert(
    definition: StreamDefinition,
    rule: RecordRule | None,
    state: _Working,
    write: RecordWrite,
    connector: str,
    stats: BatchStats,
) -> None:
    _widen(definition, write.data, stats)
    if state.deleted and OWNER_EDITOR in state.paths:
        if _merged(definition, state.data, write.data, other_paths=False) == state.data:
            stats.skipped += 1  # what the owner deleted, seen again: it stays deleted
            return
        state.paths = frozenset()  # new data from the source: the record starts over
    other_paths = bool(state.paths - {connector})
    state.paths = state.paths | {connector}
    if state.deleted:
        stats.new += 1
        if state.current is None:
            state.emitted_at = write.emitted_at
        # a record that comes back starts from the path's data, as a fresh record would
        state.rewrite(write.data, write.encoded)
        state.deleted, state.touched = False, True
        return
    if other_paths:
        stats.merged_with_existing += 1
    if state.encoded is not None and state.encoded == write.encoded:
        stats.duplicate += 1
        state.sighted = True
        return
    merged = _merged(definition, state.data, write.data, other_paths=other_paths)
    if rule is not None:
        merged = keep_finer_time(rule, state.data, merged)
    if merged == state.data:
        stats.duplicate += 1
        state.sighted = True
        return
    stats.updated += 1
    state.rewrite(merged, write.encoded if merged is write.data else None)
    state.touched = True


def _merged(
    definition: StreamDefinition, old: dict[str, Any], new: dict[str, Any], *, other_paths: bool
) -> dict[str, Any]:
    return merge(
        old,
        new,
        semantics=definition.semantics,
        other_paths=other_paths,
        union_fields=definition.union_fields,
    )


def _settle(
    definition: StreamDefinition,
    keys: MatchKeys | None,
    plan: BatchPlan,
    stage: int,
    key: str,
    state: _Working,
) -> None:
    """Turn a key's folded state into an insert, a new version, a sighting, or nothing."""
    current = state.current
    if current is None:
        if state.touched:
            plan.inserts.append(
                Insert(_head(definition, keys, key, state, 1), Change("insert", 1, None, None))
            )
            plan.stats.count_delta += 0 if state.deleted else 1
        return
    add_path = state.paths != current.paths
    if state.deleted and current.deleted:
        return
    if state.deleted:
        change = Change("delete", current.version + 1, None, None)
    else:
        fields, prior = ((), {}) if state.unchanged else _diff(current.data, state.data)
        if not fields and not current.deleted:
            if state.sighted or state.touched or add_path:
                plan.sightings.append(Sighting(current.record_id, add_path))
            return
        op: Literal["insert", "update"] = "insert" if current.deleted else "update"
        change = Change(op, current.version + 1, fields, prior)
    plan.stats.count_delta += (0 if state.deleted else 1) - (0 if current.deleted else 1)
    plan.versions.append(
        NewVersion(
            record_id=current.record_id,
            previous=current,
            head=_head(definition, keys, key, state, change.version),
            change=change,
            park=current.stage != stage,
        )
    )


def _head(
    definition: StreamDefinition,
    keys: MatchKeys | None,
    key: str,
    state: _Working,
    version: int,
) -> Head:
    """A head's columns. A tombstone keeps its last data, cursor value and consent time, so a
    time-windowed grant still learns that a record in its window was deleted."""
    cursor_field = definition.cursor_field
    return Head(
        record_key=key,
        data=state.data,
        # a copy of its exact length: orjson's result keeps its whole (~4 KiB) output buffer
        encoded=state.encoded
        if state.encoded is not None
        else bytes(memoryview(orjson.dumps(state.data))),
        emitted_at=state.emitted_at,
        cursor_value=sortable(state.data.get(cursor_field)) if cursor_field else "",
        consent_time=consent_time(definition, state.data),
        version=version,
        deleted=state.deleted,
        paths=state.paths,
        match_key=keys(state.data) if keys is not None else None,
        blobs=() if state.deleted or not definition.blob_fields else blob_uses(
            definition, state.data
        ),
    )


def _diff(old: dict[str, Any], new: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    fields = tuple(changed_fields(old, new))
    return fields, {name: old[name] for name in fields if name in old}


def reconstruct(data: dict[str, Any], changes: Iterable[Change]) -> dict[str, Any]:
    """The data before `changes` (newest first) were applied to `data`: history replayed
    backwards from the diffs the change log keeps."""
    for change in changes:
        if change.op == "delete" or change.fields is None:
            continue
        prior = change.prior or {}
        data = {k: v for k, v in data.items() if k not in change.fields or k in prior}
        data.update(prior)
    return data
