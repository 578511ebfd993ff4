"""Property tests: whatever the grant and whatever the request, a client sees nothing else.

The dataset is built once (3 Spotify archive connections, 3 notes connections over two
connectors, with updates, hidden-only updates and deletes). Hypothesis draws grants (streams,
connections, fields, time windows, resources) and requests (endpoint, connection narrowing,
`fields`, search terms taken from the data, paging), and every response is checked against an
oracle computed straight from the database rows:
- records, details, change feeds: only granted (stream, connection), inside the window and the
  resources, data equal to the stored data projected on granted ∩ requested fields;
- stream lists and metadata: only granted streams and connections; counts of visible records;
- search: hits only on visible records whose *visible* searchable text holds every term;
  matched_fields and snippets only from granted fields; and every such record is found;
- aggregations: every metric and grouping equals a fold over the client's own pages of the
  same grant (and connection narrowing), and one over a withheld field is refused;
- no response body contains provenance (connector keys, methods, runs, batches, artifacts,
  placeholder labels).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ownstream.model import Grant
from ownstream.records import search_text
from tests.services.postgres import backend_environment

from .conftest import SECRET_WORDS, World, assert_error, build_standard, make_notes
from .contract import assert_shape

STREAMS = ("listening_history", "saved_tracks", "playlists", "profile", "notes")
MISSING_CONNECTION = "cin_" + "f" * 24
SETTINGS = settings(
    # OWNSTREAM_PROPERTY_EXAMPLES=500 for a deeper run
    max_examples=int(os.environ.get("OWNSTREAM_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
Row = dict[str, Any]


def fold(text: str) -> str:
    """Fold as SQLite's unicode61 tokenizer (remove_diacritics 2): simple lowercase, then no
    combining marks. Written here, not imported, so the oracle does not share the code under
    test."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def raw_words(text: str) -> set[str]:
    """Words as a person would type them from the data: original case and accents."""
    return set(re.findall(r"[^\W_]+", text))


def tokens_of(text: str) -> set[str]:
    """Words as the index sees them: letters and digits, case and diacritics folded."""
    return {fold(w) for w in raw_words(text)}


class Dataset:
    """The world, plus every stored row (tombstones included) as the oracle's ground truth."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.rows: dict[tuple[str, str, str], Row] = {}
        self.connections: dict[str, list[str]] = {}  # stream -> connections that have it
        self.times: dict[str, list[str]] = {}
        self.keys: dict[str, list[str]] = {}
        self.words: list[str] = []
        self.unusual: list[str] = []  # words with non-ASCII letters (ß, ø, ü, é ...)

    @classmethod
    def build(cls, root: Path) -> Dataset:
        w = build_standard(root)
        # history for the change feed: visible and hidden-only updates, deletes on both paths
        alice = make_notes("alice")
        alice = [{**n, "title": "retitled"} if n["note_id"] == "n01" else n for n in alice]
        alice = [{**n, "secret": "glacier moved"} if n["note_id"] == "n02" else n for n in alice]
        w.run_notes("alice", [n for n in alice if n["note_id"] != "n03"], deleted=["n03"])
        carol = make_notes("carol", month_offset=6)
        w.import_notes("carol", [n for n in carol if n["note_id"] != "n04"], deleted=["n04"])
        ds = cls(w)
        for stream in STREAMS:
            for row in w.rows(stream, deleted=None):
                ds.rows[(stream, row["connection_id"], row["record_key"])] = row
        definitions = {s: w.home.catalog.definition(s) for s in STREAMS}
        for stream in STREAMS:
            ds.connections[stream] = sorted({c for s, c, _ in ds.rows if s == stream})
            ds.times[stream] = sorted(
                {r["consent_time"] for (s, _, _), r in ds.rows.items()
                 if s == stream and r["consent_time"]}
            )
            ds.keys[stream] = sorted({k for s, _, k in ds.rows if s == stream})
        vocabulary: set[str] = set(SECRET_WORDS)
        for (stream, _, _), row in ds.rows.items():
            for name in definitions[stream].searchable_fields:
                vocabulary |= raw_words(search_text(row["data"].get(name)))
        ds.words = sorted(vocabulary)
        ds.unusual = sorted(w for w in vocabulary if not w.isascii())
        return ds

    def __repr__(self) -> str:
        return f"Dataset({self.world.root})"

    def definition(self, stream: str) -> Any:
        return self.world.home.catalog.definition(stream)

    # -- the oracle -------------------------------------------------------------------------
    def visible(self, grant: Grant, stream: str, connection_id: str, key: str) -> Row | None:
        """The stored row (live or tombstone) if the grant lets a client see it at all."""
        entry = grant.stream(stream)
        row = self.rows.get((stream, connection_id, key))
        if entry is None or row is None or connection_id not in entry.instance_ids:
            return None
        if entry.since is not None or entry.until is not None:
            moment = row["consent_time"]
            if moment is None:
                return None
            if entry.since is not None and moment < entry.since:
                return None
            if entry.until is not None and moment >= entry.until:
                return None
        if entry.resources is not None and key not in entry.resources:
            return None
        return row

    def visible_rows(
        self, grant: Grant, stream: str, narrow: str | None, *, live: bool = True
    ) -> dict[tuple[str, str], Row]:
        found = {}
        for (s, c, k), row in self.rows.items():
            if s != stream or (narrow is not None and c != narrow):
                continue
            if live and row["deleted"]:
                continue
            if self.visible(grant, s, c, k) is not None:
                found[(c, k)] = row
        return found


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Dataset:
    with backend_environment(request):
        return Dataset.build(tmp_path_factory.mktemp("property-world"))


# --- strategies ----------------------------------------------------------------------------------
def draw_grant(data: st.DataObject, ds: Dataset) -> tuple[Grant, str]:
    names = data.draw(st.lists(st.sampled_from(STREAMS), min_size=1, unique=True), "streams")
    entries = []
    for name in names:
        definition = ds.definition(name)
        entry: dict[str, Any] = {
            "name": name,
            "connection_ids": data.draw(
                st.lists(st.sampled_from(ds.connections[name]), min_size=1, unique=True)
            ),
            "fields": data.draw(
                st.lists(st.sampled_from(definition.fields), min_size=1, unique=True)
            ),
        }
        if definition.consent_time_field and data.draw(st.booleans()):
            # saved_tracks from archives carry no added_at: any window hides them all
            moments = ds.times[name] or ["2025-01-01T00:00:00.000Z"]
            since = data.draw(st.none() | st.sampled_from(moments))
            until = data.draw(st.none() | st.sampled_from(moments))
            if since or until:
                entry["time_range"] = {
                    k: v for k, v in (("since", since), ("until", until)) if v
                }
        if data.draw(st.integers(0, 3)) == 0:
            entry["resources"] = data.draw(
                st.lists(st.sampled_from(ds.keys[name]), max_size=8, unique=True)
            )
        entries.append(entry)
    return ds.world.grant(entries, client_id="prop.app")


def draw_narrow(data: st.DataObject, ds: Dataset) -> str | None:
    everyone = sorted(set(ds.world.conns.values()))
    return data.draw(
        st.none() | st.sampled_from([*everyone, MISSING_CONNECTION]), "connection_id"
    )


def draw_fields(data: st.DataObject, ds: Dataset, stream: str) -> list[str] | None:
    return data.draw(
        st.none() | st.lists(st.sampled_from(ds.definition(stream).fields), min_size=1,
                             unique=True),
        "fields",
    )


def narrow_params(narrow: str | None, data: st.DataObject) -> dict[str, str]:
    if narrow is None:
        return {}
    name = data.draw(st.sampled_from(["connection_id", "connector_instance_id"]))
    return {name: narrow}


def project(row: Row, fields: set[str]) -> dict[str, Any]:
    return {k: v for k, v in row["data"].items() if k in fields}


def effective_fields(
    ds: Dataset, grant: Grant, stream: str, requested: list[str] | None
) -> set[str]:
    """The sparse fieldset: requested plus schema-required fields, within the grant."""
    entry = grant.stream(stream)
    assert entry is not None
    granted = set(entry.fields)
    if requested is None:
        return granted
    return granted & {*requested, *ds.definition(stream).schema.get("required", [])}


def withheld(grant: Grant, stream: str, requested: list[str] | None) -> bool:
    """Whether a request names a field the grant withholds (refused, never dropped)."""
    entry = grant.stream(stream)
    assert entry is not None
    return requested is not None and not set(requested) <= set(entry.fields)


def check_record(ds: Dataset, grant: Grant, record: dict[str, Any], fields: set[str]) -> None:
    row = ds.visible(grant, record["stream"], record["connection_id"], record["id"])
    assert row is not None, f"record outside the grant: {record}"
    if record.get("deleted"):
        assert row["deleted"], record
        assert "data" not in record
    else:
        assert not row["deleted"]
        assert record["data"] == project(row, fields), record
    label = {c.connection_id: c.client_display_name for c in ds.world.store.connections()}
    assert record.get("display_name") == label[record["connection_id"]]


def has_term(term: str, words: set[str]) -> bool:
    folded = fold(term.rstrip("*"))
    if term.endswith("*"):
        return any(w.startswith(folded) for w in words)
    return folded in words


def finds(
    ds: Dataset, grant: Grant, stream: str, row: Row, terms: list[str]
) -> tuple[bool, list[str]]:
    """Whether the row's visible searchable text holds every term, and which fields hold one."""
    entry = grant.stream(stream)
    assert entry is not None
    fields = [f for f in ds.definition(stream).searchable_fields if f in entry.fields]
    words_by_field = {f: tokens_of(search_text(row["data"].get(f))) for f in fields}
    union: set[str] = set().union(*words_by_field.values()) if fields else set()
    every = bool(fields) and all(has_term(t, union) for t in terms)
    return every, [f for f in fields if any(has_term(t, words_by_field[f]) for t in terms)]


# --- properties -------------------------------------------------------------------------------
@SETTINGS
@given(data=st.data())
def test_records_details_and_metadata_stay_inside_the_grant(
    ds: Dataset, data: st.DataObject
) -> None:
    w = ds.world
    grant, token = draw_grant(data, ds)
    granted = {s.name: s for s in grant.streams}
    for _ in range(data.draw(st.integers(1, 4), "requests")):
        kind = data.draw(st.sampled_from(["streams", "meta", "records", "detail", "schema"]))
        narrow = draw_narrow(data, ds)
        params: dict[str, Any] = narrow_params(narrow, data)
        if kind == "streams":
            response = w.cget("/v1/streams", token, params)
            pairs = {
                (s, c) for s, entry in granted.items() for c in entry.instance_ids
                if narrow is None or c == narrow
            }
            if not pairs:
                assert_error(response, 404, "connection_not_found")
                continue
            entries = response.json()["data"]
            assert {(e["name"], e["connection_id"]) for e in entries} == pairs
            for e in entries:
                expected = ds.visible_rows(grant, e["name"], e["connection_id"])
                assert e["record_count"] == len(expected), e
            continue
        if kind == "schema":
            response = w.cget("/v1/schema", token, params)
            names = [
                s for s, entry in granted.items() if narrow is None or narrow in entry.instance_ids
            ]
            if not names:
                assert_error(response, 404, "connection_not_found")
                continue
            body = response.json()
            [shared] = body["connectors"]
            assert shared["connector_id"] == "shared-definitions"
            assert [m["name"] for m in shared["streams"]] == names
            for meta in shared["streams"]:
                shown = granted[meta["name"]]
                assert meta["granted_fields"] == list(shown.fields)
                assert [f for f, c in meta["field_capabilities"].items() if c["granted"]] == [
                    f for f in ds.definition(meta["name"]).fields if f in shown.fields
                ]
                assert {c["connection_id"] for c in meta["granted_connections"]} <= set(
                    shown.instance_ids
                )
            continue
        stream = data.draw(st.sampled_from(STREAMS), "stream")
        entry = granted.get(stream)
        if kind == "meta":
            response = w.cget(f"/v1/streams/{stream}", token, params)
        elif kind == "records":
            fields = draw_fields(data, ds, stream)
            params.update(
                order=data.draw(st.sampled_from(["asc", "desc"])),
                limit=data.draw(st.sampled_from([10, 60, 100])),
            )
            if fields is not None:
                params["fields"] = ",".join(fields)
            response = w.cget(f"/v1/streams/{stream}/records", token, params)
        else:
            fields = draw_fields(data, ds, stream)
            key = data.draw(st.sampled_from(ds.keys[stream]), "key")
            if fields is not None:
                params["fields"] = fields
            response = w.cget(f"/v1/streams/{stream}/records/{quote(key, safe='')}", token,
                              params)
        if entry is None:
            assert_error(response, 403, "grant_stream_not_allowed")
            continue
        if narrow is not None and narrow not in entry.instance_ids:
            assert_error(response, 404, "connection_not_found")
            continue
        allowed = [narrow] if narrow is not None else list(entry.instance_ids)
        if kind == "meta":
            meta = response.json()
            assert meta["granted_fields"] == list(entry.fields)
            assert sorted(c["connection_id"] for c in meta["granted_connections"]) == sorted(
                allowed
            )
            definition = ds.definition(stream)
            assert meta["query"]["search"]["lexical_fields"] == list(definition.searchable_fields)
            assert set(meta["field_capabilities"]) == set(definition.fields)
            for name, capabilities in meta["field_capabilities"].items():
                assert capabilities["granted"] == (name in entry.fields)
                assert capabilities["lexical_search"]["usable"] == (
                    name in entry.fields and name in definition.searchable_fields
                )
            continue
        if withheld(grant, stream, fields):
            assert_error(response, 403, "field_not_granted")
            continue
        visible_fields = effective_fields(ds, grant, stream, fields)
        expected = ds.visible_rows(grant, stream, narrow)
        if kind == "records":
            seen: list[tuple[str, str]] = []
            for page_number, page in enumerate(
                w.page_all(f"/v1/streams/{stream}/records", token, params)
            ):
                for record in page["data"]:
                    check_record(ds, grant, record, visible_fields)
                    seen.append((record["connection_id"], record["id"]))
                if page_number == 4:
                    break
            else:
                assert len(seen) == len(set(seen))
                assert set(seen) == set(expected)
            continue
        # detail
        holders = sorted(c for c, k in expected if k == key)
        if not holders:
            assert_error(response, 404, "not_found")
        elif len(holders) > 1:
            error = assert_error(response, 409, "ambiguous_connection")
            assert sorted(c["connection_id"] for c in error["available_connections"]) == holders
        else:
            record = response.json()
            assert record["connection_id"] == holders[0]
            check_record(ds, grant, record, visible_fields)


@SETTINGS
@given(data=st.data())
def test_search_stays_inside_the_grant(ds: Dataset, data: st.DataObject) -> None:
    w = ds.world
    grant, token = draw_grant(data, ds)
    granted = {s.name: s for s in grant.streams}
    for _ in range(data.draw(st.integers(1, 3), "requests")):
        word = st.sampled_from(ds.words) | st.sampled_from(ds.unusual)
        case = st.sampled_from([str, str.lower, str.upper, str.title])
        terms = data.draw(st.lists(st.builds(lambda w, c: c(w), word, case), min_size=1,
                                   max_size=2, unique=True), "terms")
        prefix = data.draw(st.booleans(), "prefix")
        if prefix:
            terms = [terms[0][: max(1, len(terms[0]) - 2)] + "*", *terms[1:]]
        narrow = draw_narrow(data, ds)
        params: dict[str, Any] = {"q": " ".join(terms), "limit": 100,
                                  **narrow_params(narrow, data)}
        names = data.draw(st.none() | st.lists(st.sampled_from(STREAMS), min_size=1,
                                               unique=True), "search streams")
        if names is not None:
            params["streams"] = names
        response = w.cget("/v1/search", token, params)
        wanted = names if names is not None else list(granted)
        if any(n not in granted for n in wanted):
            assert_error(response, 403, "grant_stream_not_allowed")
            continue
        searched = [n for n in wanted if narrow is None or narrow in granted[n].instance_ids]
        if not searched:
            assert_error(response, 404, "connection_not_found")
            continue
        assert response.status_code == 200, response.text

        expected = {
            (stream, c, k)
            for stream in searched
            for (c, k), row in ds.visible_rows(grant, stream, narrow).items()
            if finds(ds, grant, stream, row, terms)[0]
        }
        hits = []
        for page in w.page_all("/v1/search", token, params, max_pages=60):
            hits.extend(page["data"])
        got = [(h["stream"], h["connection_id"], h["record_key"]) for h in hits]
        assert len(got) == len(set(got))
        assert set(got) == expected, (params, set(got) ^ expected)
        for hit in hits:
            row = ds.visible(grant, hit["stream"], hit["connection_id"], hit["record_key"])
            assert row is not None and not row["deleted"]
            assert "data" not in hit
            _, matched = finds(ds, grant, hit["stream"], row, terms)
            assert hit["matched_fields"] and set(hit["matched_fields"]) <= set(matched), hit
            assert set(hit["matched_fields"]) <= set(granted[hit["stream"]].fields)
            snippet = hit.get("snippet")
            if snippet is not None:
                assert snippet["field"] in hit["matched_fields"]
                source = search_text(row["data"].get(snippet["field"]))
                piece = snippet["text"].strip("…")
                assert piece in source or piece in fold(source), (snippet, source)


@SETTINGS
@given(data=st.data())
def test_change_feed_stays_inside_the_grant(ds: Dataset, data: st.DataObject) -> None:
    w = ds.world
    grant, token = draw_grant(data, ds)
    granted = {s.name: s for s in grant.streams}
    for _ in range(data.draw(st.integers(1, 2), "requests")):
        stream = data.draw(st.sampled_from(list(granted)), "stream")
        entry = granted[stream]
        narrow = data.draw(st.none() | st.sampled_from(list(entry.instance_ids)))
        fields = draw_fields(data, ds, stream)
        params: dict[str, Any] = {"changes_since": "beginning", "limit": 100,
                                  **narrow_params(narrow, data)}
        if fields is not None:
            params["fields"] = fields
        if withheld(grant, stream, fields):
            response = w.cget(f"/v1/streams/{stream}/records", token, params)
            assert_error(response, 403, "field_not_granted")
            continue
        records: list[dict[str, Any]] = []
        last: dict[str, Any] = {}
        for page in w.page_all(f"/v1/streams/{stream}/records", token, params, max_pages=10):
            records.extend(page["data"])
            last = page
        assert last["next_changes_since"]
        visible_fields = effective_fields(ds, grant, stream, fields)
        for record in records:
            check_record(ds, grant, record, visible_fields)
        got = [(r["connection_id"], r["id"]) for r in records]
        assert len(got) == len(set(got))
        # from the beginning, every visible record (tombstones included) appears exactly once
        assert set(got) == set(ds.visible_rows(grant, stream, narrow, live=False))
        # and nothing has changed since
        again = w.cget(f"/v1/streams/{stream}/records", token,
                       {**params, "changes_since": last["next_changes_since"]}).json()
        assert again["data"] == [] and again["next_changes_since"]


# --- aggregation: the store's SQL against a fold over the client's own pages ----------------------
ZONES = ("UTC", "America/New_York", "Europe/Paris", "Asia/Kolkata", "Asia/Kathmandu",
         "Australia/Lord_Howe", "Pacific/Chatham", "America/St_Johns")
GRANULARITIES = ("minute", "hour", "day", "week", "month", "quarter", "year")


def bucket(value: Any, granularity: str, zone: str, date_only: bool) -> str | None:
    """A calendar bucket computed with datetime and zoneinfo, independently of the SQL."""
    if not isinstance(value, str):
        return None
    try:
        if date_only:
            moment = datetime.combine(date.fromisoformat(value), time())
        else:
            moment = datetime.fromisoformat(value).astimezone(ZoneInfo(zone))
    except ValueError:
        return None
    day = moment.date()
    if granularity == "minute":
        return moment.strftime("%Y-%m-%dT%H:%M")
    if granularity == "hour":
        return moment.strftime("%Y-%m-%dT%H:00")
    if granularity == "week":
        day -= timedelta(days=day.weekday())
    elif granularity == "month":
        day = day.replace(day=1)
    elif granularity == "quarter":
        day = day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    elif granularity == "year":
        day = day.replace(month=1, day=1)
    return day.isoformat()


def fold_aggregate(
    records: list[dict[str, Any]], params: dict[str, Any], definition: Any
) -> dict[str, Any]:
    """What an aggregation must answer, folded over the records a client paged through."""
    values = [r["data"].get(params.get("field") or "") for r in records]
    present = [v for v in values if v is not None]
    metric = params["metric"]
    expected: dict[str, Any] = {"filtered_record_count": len(records)}
    if "group_by" in params or "group_by_time" in params:
        order: Callable[[tuple[Any, int]], tuple[Any, ...]]
        if "group_by" in params:
            keys = [r["data"].get(params["group_by"]) for r in records]
            order = lambda kv: (-kv[1], kv[0] is None, kv[0])  # noqa: E731
        else:
            prop = definition.schema["properties"][params["group_by_time"]]
            keys = [
                bucket(r["data"].get(params["group_by_time"]), params["granularity"],
                       params.get("time_zone", "UTC"), prop.get("format") == "date")
                for r in records
            ]
            order = lambda kv: (kv[0] is None, kv[0])  # noqa: E731
        counts: dict[Any, int] = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        ranked = sorted(counts.items(), key=order)
        limit = params.get("limit", 10)
        groups = [{"key": k, "count": n} for k, n in ranked[:limit]]
        expected.update(groups=groups, other_count=len(records) - sum(g["count"] for g in groups))
    elif metric == "count":
        expected["value"] = len(records)
    elif metric == "count_distinct":
        expected["value"] = len(set(present))
    elif metric == "sum":
        expected["value"] = sum(present) if present else None
    else:
        expected["value"] = (min if metric == "min" else max)(present) if present else None
    return expected


def draw_aggregation(data: st.DataObject, definition: Any) -> dict[str, Any]:
    """Any request the definition declares; the caller may not be granted its fields."""
    declared = definition.aggregations
    metrics: list[dict[str, Any]] = [{"metric": "count"}]
    for metric in ("sum", "min", "max", "count_distinct"):
        metrics += [{"metric": metric, "field": f} for f in declared.fields_for(metric)]
    kinds = {
        "metric": metrics,
        "group_by": [{"metric": "count", "group_by": f} for f in declared.group_by],
        "group_by_time": [{"metric": "count", "group_by_time": f} for f in declared.group_by_time],
    }
    kind = data.draw(st.sampled_from([k for k, choices in kinds.items() if choices]), "kind")
    params: dict[str, Any] = dict(data.draw(st.sampled_from(kinds[kind]), "aggregation"))
    if "group_by_time" in params:
        params["granularity"] = data.draw(st.sampled_from(GRANULARITIES), "granularity")
        zone = data.draw(st.none() | st.sampled_from(ZONES), "time_zone")
        if zone is not None:
            params["time_zone"] = zone
    if ("group_by" in params or "group_by_time" in params) and data.draw(st.booleans()):
        params["limit"] = data.draw(st.sampled_from([1, 2, 3, 7, 100]), "limit")
    return params


@SETTINGS
@given(data=st.data())
def test_aggregations_equal_a_fold_over_the_grants_pages(ds: Dataset, data: st.DataObject) -> None:
    w = ds.world
    grant, token = draw_grant(data, ds)
    for _ in range(data.draw(st.integers(2, 5), "requests")):
        stream = data.draw(st.sampled_from([s.name for s in grant.streams]), "stream")
        entry = grant.stream(stream)
        assert entry is not None
        definition = ds.definition(stream)
        params = draw_aggregation(data, definition)
        narrow = data.draw(st.none() | st.sampled_from(list(entry.instance_ids)), "narrow")
        narrowing = {} if narrow is None else {"connection_id": narrow}
        response = w.cget(f"/v1/streams/{stream}/aggregate", token, {**params, **narrowing})
        used = [params[k] for k in ("field", "group_by", "group_by_time") if k in params]
        if any(name not in entry.fields for name in used):
            assert_error(response, 403, "field_not_granted")
            continue
        assert response.status_code == 200, response.text
        records = [
            record
            for page in w.page_all(f"/v1/streams/{stream}/records", token,
                                   {"limit": 100, **narrowing})
            for record in page["data"]
        ]
        got = response.json()
        assert_shape("aggregation", got)
        expected = fold_aggregate(records, params, definition)
        assert {k: got[k] for k in expected} == expected, (params, narrowing)
        assert got["approximate"] is False
        assert ("other_count" in got) == ("groups" in expected)
