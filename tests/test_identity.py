"""`identity.resolve`, the pure rule deciding which connection a run or import writes through.

Only evidence joins acquisition paths: proven by the same connector, or by connectors an
identity rule links under the same claim. Source or connector type alone never does, and
ambiguity is never resolved by picking.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from ownstream.errors import (
    AmbiguousConnection,
    ConnectionNotFound,
    ConnectionNotWritable,
    ConnectionTombstoned,
    IdentityMismatch,
    IdentityUnproven,
)
from ownstream.identity import Resolution, ResolutionContext, linking_rule, resolve
from ownstream.model import (
    AcquisitionMethod,
    AttachedPath,
    Connection,
    ConnectionIdentity,
    ConnectorManifest,
    IdentityEvidence,
    IdentityRule,
    StreamDefinition,
)

STREAM = StreamDefinition(
    "entries", 1, "mutable_state", ("id",),
    {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
)
CLAIM = "user_id"


def manifest(
    key: str, method: AcquisitionMethod = "provider_api", claim: str | None = CLAIM
) -> Any:
    return ConnectorManifest(
        connector_key=key, version="1", display_name=key, source="svc",
        acquisition_method=method, streams=(STREAM,), identity_claim=claim, command=("x",),
    )


API, EXPORT, OTHER = manifest("api"), manifest("export", "owner_artifact"), manifest("other")
RULE = IdentityRule("svc-account", 1, "svc", CLAIM, ("api", "export"))
OTHER_CLAIM_RULE = IdentityRule("svc-email", 1, "svc", "email", ("api", "export", "other"))


def evidence(key: str, value: str = "u1", claim: str = CLAIM) -> IdentityEvidence:
    return IdentityEvidence(claim, value, key)


def path(key: str, proved: bool = True, rule_id: str | None = None) -> AttachedPath:
    method = "owner_artifact" if key == "export" else "provider_api"
    return AttachedPath(key, method, "2024-01-01T00:00:00.000Z", proved, rule_id)


def conn(
    cid: str,
    *paths: AttachedPath,
    value: str | None = "u1",
    proven_by: str | None = None,
    claim: str = CLAIM,
    status: str = "active",
) -> Connection:
    identity = None
    if value is not None:
        identity = ConnectionIdentity(claim, value, proven_by or paths[0].connector_key)
    return Connection(
        connection_id=cid, owner_id="owner", source="svc", display_name=cid,
        display_name_is_placeholder=True, status=status,  # type: ignore[arg-type]
        created_at="t", updated_at="t", identity=identity, paths=paths,
    )


def run(
    m: ConnectorManifest,
    ev: IdentityEvidence | None,
    *connections: Connection,
    rules: tuple[IdentityRule, ...] = (RULE,),
    target: str | None = None,
    tombstoned: bool = False,
    allow_recreate: bool = False,
) -> Resolution:
    return resolve(
        ResolutionContext(
            manifest=m, evidence=ev, connections=connections, rules=rules,
            tombstoned=tombstoned, requested_connection_id=target, allow_recreate=allow_recreate,
        )
    )


# ------------------------------------------------------------------------------------------
# implicit resolution
# ------------------------------------------------------------------------------------------


def test_no_evidence_always_creates_a_new_connection_never_merged() -> None:
    same_connector = conn("c1", path("api"))
    no_identity = conn("c2", path("api"), value=None)
    for existing in [(), (same_connector,), (no_identity,), (same_connector, no_identity)]:
        result = run(API, None, *existing)
        assert result == Resolution("create", None, attach_path=True, evidence=None)


def test_evidence_and_no_connection_creates_one_carrying_it() -> None:
    ev = evidence("api")
    assert run(API, ev) == Resolution("create", None, attach_path=True, evidence=ev)


def test_evidence_proven_by_the_same_connector_reuses_the_connection() -> None:
    ev = evidence("api")
    result = run(API, ev, conn("c1", path("api")), conn("c2", path("api"), value="u2"))
    assert result == Resolution("use", "c1", attach_path=False, evidence=ev, rule_id=None)


def test_evidence_of_a_rule_linked_connector_attaches_the_new_path() -> None:
    ev = evidence("export")
    result = run(EXPORT, ev, conn("c1", path("api")))
    assert result == Resolution("use", "c1", attach_path=True, evidence=ev, rule_id="svc-account")


def test_a_rule_works_in_both_directions() -> None:
    ev = evidence("api")
    result = run(API, ev, conn("c1", path("export")))
    assert (result.action, result.connection_id, result.rule_id) == ("use", "c1", "svc-account")


# The matrix: who proved the connection's identity, what the new evidence says, which rules.
PROVERS = ["api", "export", "other"]
VALUES = ["u1", "u2"]
RULESETS: dict[str, tuple[IdentityRule, ...]] = {
    "none": (), "rule": (RULE,), "other_claim_rule": (OTHER_CLAIM_RULE,),
}


@pytest.mark.parametrize(
    ("prover", "value", "rules", "writer"),
    list(itertools.product(PROVERS, VALUES, sorted(RULESETS), ["api", "export", "other"])),
)
def test_only_equal_evidence_from_the_prover_or_a_rule_linked_connector_joins(
    prover: str, value: str, rules: str, writer: str
) -> None:
    existing = conn("c1", path(prover), value="u1")
    ev = evidence(writer, value)
    result = run(manifest(writer), ev, existing, rules=RULESETS[rules])

    linked = rules == "rule" and {prover, writer} == {"api", "export"}
    joins = value == "u1" and (writer == prover or linked)
    if joins:
        assert result.action == "use" and result.connection_id == "c1"
        assert result.attach_path is (writer != prover)
        assert result.rule_id == (None if writer == prover else "svc-account")
    else:
        assert result == Resolution("create", None, attach_path=True, evidence=ev)


def test_a_different_claim_name_never_matches() -> None:
    existing = conn("c1", path("api"), claim="email")
    ev = evidence("api", "u1", claim=CLAIM)
    assert run(API, ev, existing, rules=(RULE, OTHER_CLAIM_RULE)).action == "create"


def test_a_connection_without_identity_is_never_matched_by_evidence() -> None:
    existing = conn("c1", path("api"), path("export", proved=False), value=None)
    assert run(EXPORT, evidence("export"), existing).action == "create"
    assert run(API, evidence("api"), existing).action == "create"


def test_a_path_that_proved_the_identity_later_also_counts_as_a_prover() -> None:
    # proven first by `export`, then `api` attached with proof under RULE; a rule linking
    # `api` and `other` then admits `other` too
    api_other = IdentityRule("svc-api-other", 1, "svc", CLAIM, ("api", "other"))
    existing = conn("c1", path("export"), path("api", rule_id="svc-account"), proven_by="export")
    result = run(OTHER, evidence("other"), existing, rules=(RULE, api_other))
    assert (result.action, result.connection_id, result.rule_id) == ("use", "c1", "svc-api-other")


def test_a_path_attached_without_proof_does_not_count_as_a_prover() -> None:
    api_other = IdentityRule("svc-api-other", 1, "svc", CLAIM, ("api", "other"))
    existing = conn("c1", path("export"), path("api", proved=False), proven_by="export")
    assert run(OTHER, evidence("other"), existing, rules=(RULE, api_other)).action == "create"


def test_several_matching_connections_are_ambiguous_and_listed() -> None:
    c1, c2 = conn("c1", path("api")), conn("c2", path("export"))
    with pytest.raises(AmbiguousConnection) as caught:
        run(API, evidence("api"), c1, c2)
    error = caught.value
    assert error.code == "ambiguous_connection" and error.status == 409
    assert error.extra["retry_with"] == "connection_id"
    assert [c["connection_id"] for c in error.extra["available_connections"]] == ["c1", "c2"]


def test_a_revoked_match_is_refused_not_replaced() -> None:
    with pytest.raises(ConnectionNotWritable) as caught:
        run(API, evidence("api"), conn("c1", path("api"), status="revoked"))
    assert caught.value.extra["connection_id"] == "c1"


def test_a_deleted_identity_is_recreated_only_on_request() -> None:
    ev = evidence("api")
    with pytest.raises(ConnectionTombstoned):
        run(API, ev, tombstoned=True)
    assert run(API, ev, tombstoned=True, allow_recreate=True).action == "create"
    # a live match wins over the tombstone of an older connection
    assert run(API, ev, conn("c1", path("api")), tombstoned=True).action == "use"


# ------------------------------------------------------------------------------------------
# explicit target (--connection)
# ------------------------------------------------------------------------------------------


def test_an_unknown_target_is_not_found() -> None:
    with pytest.raises(ConnectionNotFound) as caught:
        run(API, evidence("api"), conn("c1", path("api")), target="c9")
    assert caught.value.param == "connection_id"


def test_a_revoked_target_is_refused() -> None:
    with pytest.raises(ConnectionNotWritable):
        run(API, evidence("api"), conn("c1", path("api"), status="revoked"), target="c1")


def test_the_same_path_is_allowed_on_the_owners_word() -> None:
    target = conn("c1", path("export"), value=None)
    assert run(EXPORT, None, target, target="c1") == Resolution(
        "use", "c1", attach_path=False, evidence=None
    )
    identified = conn("c2", path("export"))
    result = run(EXPORT, None, identified, target="c2")
    assert (result.action, result.connection_id, result.attach_path) == ("use", "c2", False)


def test_the_same_path_with_equal_evidence_is_allowed() -> None:
    ev = evidence("export")
    result = run(EXPORT, ev, conn("c1", path("export")), target="c1")
    assert result == Resolution("use", "c1", attach_path=False, evidence=ev, rule_id=None)


def test_another_path_proven_under_a_rule_is_allowed_and_attached() -> None:
    ev = evidence("export")
    result = run(EXPORT, ev, conn("c1", path("api")), target="c1")
    assert result == Resolution("use", "c1", attach_path=True, evidence=ev, rule_id="svc-account")


@pytest.mark.parametrize("same_path", [True, False])
def test_contradicting_evidence_is_a_mismatch_even_on_the_same_path(same_path: bool) -> None:
    target = conn("c1", path("export" if same_path else "api"))
    with pytest.raises(IdentityMismatch) as caught:
        run(EXPORT, evidence("export", "u2"), target, target="c1")
    assert caught.value.code == "identity_mismatch"
    assert caught.value.extra["connection_id"] == "c1"
    with pytest.raises(IdentityMismatch):
        run(EXPORT, evidence("export", "u1", claim="email"), target, target="c1")


def test_equal_evidence_without_a_linking_rule_is_unproven() -> None:
    with pytest.raises(IdentityUnproven, match="no identity rule links it"):
        run(EXPORT, evidence("export"), conn("c1", path("api")), target="c1", rules=())


def test_no_evidence_for_another_path_is_unproven() -> None:
    with pytest.raises(IdentityUnproven, match="it proved no identity") as caught:
        run(EXPORT, None, conn("c1", path("api")), target="c1")
    assert caught.value.code == "identity_unproven"


def test_evidence_into_a_connection_without_identity_on_another_path_is_unproven() -> None:
    target = conn("c1", path("api", proved=False), value=None)
    with pytest.raises(IdentityUnproven, match="has no proven identity"):
        run(EXPORT, evidence("export"), target, target="c1")


def test_linking_rule_needs_both_connectors_and_the_claim() -> None:
    rules = (OTHER_CLAIM_RULE, RULE)
    assert linking_rule(rules, "api", "export", CLAIM) is RULE
    assert linking_rule(rules, "export", "api", CLAIM) is RULE
    assert linking_rule(rules, "api", "other", CLAIM) is None
    assert linking_rule(rules, "api", "other", "email") is OTHER_CLAIM_RULE
    assert linking_rule((), "api", "export", CLAIM) is None
