"""Which connection a probe, run or import writes through, as the store will record it.

`identity.resolve` decides (pure); this module gathers what it needs from the store and the
catalog, and turns its answer into a `Binding`: an existing connection, or one to create —
created at once for a probe (`connect`), at publication for an import, so a failed import
leaves no connection behind.
"""

from __future__ import annotations

from ownstream.clock import now_iso
from ownstream.identity import Resolution, ResolutionContext, resolve
from ownstream.model import ConnectionIdentity, ConnectorManifest, IdentityEvidence
from ownstream.registry import Catalog
from ownstream.store.base import Binding, NewConnection, PathAttachment, Store


def placeholder_label(manifest: ConnectorManifest, evidence: IdentityEvidence | None) -> str:
    suffix = evidence.value if evidence is not None else "unidentified source"
    return f"{manifest.display_name} · {suffix}"


class Resolver:
    def __init__(self, store: Store, catalog: Catalog, owner_id: str) -> None:
        self.store = store
        self.catalog = catalog
        self.owner_id = owner_id

    def resolve(
        self,
        manifest: ConnectorManifest,
        evidence: IdentityEvidence | None,
        requested_connection_id: str | None = None,
        allow_recreate: bool = False,
    ) -> Resolution:
        tombstoned = evidence is not None and self.store.identity_tombstoned(
            self.owner_id,
            manifest.source,
            evidence.claim,
            evidence.value,
            self.catalog.linked_connectors(manifest.connector_key, evidence.claim),
        )
        return resolve(
            ResolutionContext(
                manifest=manifest,
                evidence=evidence,
                connections=tuple(self.store.connections(source=manifest.source)),
                rules=tuple(self.catalog.rules.values()),
                tombstoned=tombstoned,
                requested_connection_id=requested_connection_id,
                allow_recreate=allow_recreate,
            )
        )

    def binding(
        self,
        manifest: ConnectorManifest,
        resolution: Resolution,
        *,
        display_name: str | None,
        seed: str,
    ) -> Binding:
        """The connection a resolution names, with what must be created or attached."""
        evidence = resolution.evidence
        attach = (
            PathAttachment(
                connector_key=manifest.connector_key,
                acquisition_method=manifest.acquisition_method,
                proved_identity=evidence is not None,
                rule_id=resolution.rule_id,
            )
            if resolution.action == "create" or resolution.attach_path
            else None
        )
        if resolution.action == "use":
            assert resolution.connection_id is not None
            return Binding(resolution.connection_id, attach=attach)
        new = NewConnection(
            owner_id=self.owner_id,
            source=manifest.source,
            display_name=display_name or placeholder_label(manifest, evidence),
            display_name_is_placeholder=display_name is None,
            identity=ConnectionIdentity(
                evidence.claim, evidence.value, manifest.connector_key, None, now_iso()
            )
            if evidence is not None
            else None,
            seed=seed,
        )
        return Binding(self.store.connection_id_for(new), create=new, attach=attach)
