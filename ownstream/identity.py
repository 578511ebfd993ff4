"""Connection resolution: which connection a run or import writes through. Pure; no I/O.

The rule it enforces: evidence of an identity, proven by the same connector or by connectors
an identity rule links, is the only thing that joins acquisition paths into one connection.
Connector type or source alone never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ownstream.errors import (
    AmbiguousConnection,
    ConnectionNotFound,
    ConnectionNotWritable,
    ConnectionTombstoned,
    IdentityMismatch,
    IdentityUnproven,
)
from ownstream.model import Connection, ConnectorManifest, IdentityEvidence, IdentityRule


@dataclass(frozen=True)
class Resolution:
    """Write through `connection_id` (existing), or create a connection with `identity`."""

    action: Literal["use", "create"]
    connection_id: str | None
    attach_path: bool
    evidence: IdentityEvidence | None
    rule_id: str | None = None


@dataclass(frozen=True)
class ResolutionContext:
    manifest: ConnectorManifest
    evidence: IdentityEvidence | None
    connections: tuple[Connection, ...]  # the owner's connections of the manifest's source
    rules: tuple[IdentityRule, ...]
    tombstoned: bool = False  # this identity's connection was deleted by the owner
    requested_connection_id: str | None = None
    allow_recreate: bool = False


def linking_rule(
    rules: tuple[IdentityRule, ...], first: str, second: str, claim: str
) -> IdentityRule | None:
    for rule in rules:
        if rule.claim == claim and first in rule.connector_keys and second in rule.connector_keys:
            return rule
    return None


def _proof_matches(
    connection: Connection, evidence: IdentityEvidence, rules: tuple[IdentityRule, ...]
) -> tuple[bool, str | None]:
    """Whether `evidence` proves `connection`'s identity, and by which rule.

    The rule is None when the same connector proved it.
    """
    identity = connection.identity
    if identity is None or identity.claim != evidence.claim or identity.value != evidence.value:
        return False, None
    provers = {p.connector_key for p in connection.paths if p.proved_identity} | {
        identity.proven_by
    }
    if evidence.connector_key in provers:
        return True, None
    for prover in sorted(provers):
        rule = linking_rule(rules, prover, evidence.connector_key, evidence.claim)
        if rule is not None:
            return True, rule.rule_id
    return False, None


def _ambiguous(matches: list[Connection]) -> AmbiguousConnection:
    return AmbiguousConnection(
        "several connections match this identity; name one with --connection",
        retry_with="connection_id",
        available_connections=[
            {"connection_id": c.connection_id, "display_name": c.display_name} for c in matches
        ],
    )


def resolve(context: ResolutionContext) -> Resolution:
    manifest, evidence = context.manifest, context.evidence
    if context.requested_connection_id is not None:
        return _resolve_explicit(context)
    if evidence is None:
        return Resolution("create", None, attach_path=True, evidence=None)
    matches: list[tuple[Connection, str | None]] = []
    for connection in context.connections:
        proven, rule_id = _proof_matches(connection, evidence, context.rules)
        if proven:
            matches.append((connection, rule_id))
    if len(matches) > 1:
        raise _ambiguous([c for c, _ in matches])
    if matches:
        connection, rule_id = matches[0]
        if connection.status == "revoked":
            raise ConnectionNotWritable(
                f"connection {connection.connection_id} for this account is revoked; "
                "reactivate it first",
                connection_id=connection.connection_id,
            )
        return Resolution(
            "use",
            connection.connection_id,
            attach_path=not connection.has_path(manifest.connector_key),
            evidence=evidence,
            rule_id=rule_id,
        )
    if context.tombstoned and not context.allow_recreate:
        raise ConnectionTombstoned(
            f"the {manifest.source} connection for {evidence.claim} was deleted by the owner; "
            "re-create it explicitly (--allow-recreate)",
        )
    return Resolution("create", None, attach_path=True, evidence=evidence)


def _resolve_explicit(context: ResolutionContext) -> Resolution:
    manifest, evidence = context.manifest, context.evidence
    target = next(
        (c for c in context.connections if c.connection_id == context.requested_connection_id),
        None,
    )
    if target is None:
        raise ConnectionNotFound(
            f"no {manifest.source} connection {context.requested_connection_id}",
            param="connection_id",
        )
    if target.status == "revoked":
        raise ConnectionNotWritable(
            f"connection {target.connection_id} is revoked", connection_id=target.connection_id
        )
    identity = target.identity
    if evidence is not None and identity is not None:
        if evidence.claim != identity.claim or evidence.value != identity.value:
            raise IdentityMismatch(
                f"this {manifest.connector_key} source proves a different {evidence.claim} "
                f"than connection {target.connection_id}",
                connection_id=target.connection_id,
            )
        proven, rule_id = _proof_matches(target, evidence, context.rules)
        if proven:
            return Resolution(
                "use",
                target.connection_id,
                attach_path=not target.has_path(manifest.connector_key),
                evidence=evidence,
                rule_id=rule_id,
            )
    if target.has_path(manifest.connector_key):
        # Another artifact (or run) of a path this connection already has: the owner's word
        # is enough, as long as no evidence contradicts it (checked above).
        return Resolution("use", target.connection_id, attach_path=False, evidence=evidence)
    raise IdentityUnproven(
        f"nothing proves that this {manifest.connector_key} source is the account of "
        f"connection {target.connection_id}: "
        + (
            "it proved no identity"
            if evidence is None
            else "no identity rule links it to the connection's paths"
            if identity is not None
            else "the connection has no proven identity"
        ),
        connection_id=target.connection_id,
    )
