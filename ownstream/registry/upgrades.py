"""Record upgrades: what a new definition version asks of the records already stored.

A definition version that derives keys differently ships a pure re-key function with it. At
start (`Home.catalog`) every upgrade whose version the catalog's definition has reached runs
once per database: the store re-keys the stream's records in place and records the upgrade in
its `meta` table, so later starts skip it. An upgrade that had to wait for a running stage is
tried again at the next start. What each upgrade did goes to the audit log, counts only.

The stored match keys of streams with a record rule are refreshed the same way, once per
stream and key format (`MATCH_KEY_FORMAT`): the keys stay, the match keys are recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ownstream.connectors.spotify import LISTENING_HISTORY, rekey_play
from ownstream.registry.catalog import Catalog
from ownstream.store.base import Rekey, RekeyReport, Store


@dataclass(frozen=True)
class RecordUpgrade:
    """Records of `stream` written before definition `version` get the key `rekey` derives."""

    stream: str
    version: int
    rekey: Rekey

    @property
    def name(self) -> str:
        return f"{self.stream}@{self.version}"


BUILTIN_UPGRADES: tuple[RecordUpgrade, ...] = (
    # version 2 keys plays by the second (the minute for the basic history): docs/spotify.md
    RecordUpgrade(LISTENING_HISTORY, 2, rekey_play),
)


MATCH_KEY_FORMAT = 2
"""2: `planner.stored_match_key`, the rule's time window first (1: the bare rule match key)."""


def _same_key(data: dict[str, Any]) -> None:
    """A re-key that keeps every key and data as they are (only match keys are refreshed)."""


def apply_upgrades(
    store: Store, catalog: Catalog, upgrades: Sequence[RecordUpgrade] = BUILTIN_UPGRADES
) -> list[RekeyReport]:
    """Run the upgrades this database has not had yet; returns what those that ran did."""
    runs: list[tuple[str, Rekey, str]] = []
    for upgrade in upgrades:
        definition = catalog.definition_or_none(upgrade.stream)
        if definition is not None and definition.version >= upgrade.version:
            runs.append((upgrade.stream, upgrade.rekey, upgrade.name))
    for definition in catalog.all_definitions():
        if catalog.record_rule(definition.name) is not None:
            name = f"{definition.name}:match-keys@{MATCH_KEY_FORMAT}"
            runs.append((definition.name, _same_key, name))
    reports = []
    for stream, rekey, name in runs:
        report = store.rekey_records(
            stream, rekey, upgrade=name, rule=catalog.record_rule(stream)
        )
        if report is None:
            continue
        reports.append(report)
        if report.rekeyed or report.conflicts or report.deferred:
            store.append_audit(
                actor_kind="system",
                connection_id=None,
                operation="records.rekey",
                outcome="deferred" if report.deferred else "succeeded",
                summary=asdict(report),
            )
    return reports
