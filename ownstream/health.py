"""Connection health: one pure function from evidence to a verdict every surface renders.

Verdicts, worst first: `blocked` (collection cannot proceed until the owner acts: a missing or
rejected credential, or an authorization the provider refused, which needs a reconnect),
`needs_attention` (it runs, but something asks for the owner), `degraded` (failures, gaps,
backoff, a stalled run, or staleness on a scheduled connection), `idle` (revoked, paused, or a
manual-only connection that is merely stale), `unknown` (no evidence yet), `healthy`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from ownstream.clock import iso, parse_iso
from ownstream.store.base import RunRecord, Schedule

OWNER_ACTIONS = frozenset({"manual_action_required", "refresh_credentials", "reconnect"})

# What the owner can do, as a code: `reconnect_oauth` (authorize again at the provider),
# `reconnect_secrets` (give the credentials again), `retry` / `run` (run it now), `reactivate`,
# `resume` (the schedule), `manual` (act outside ownstream, as the message says) and
# `await_upgrade` (a newer connector is needed).
ActionCode = Literal[
    "reconnect_oauth",
    "reconnect_secrets",
    "retry",
    "run",
    "reactivate",
    "resume",
    "manual",
    "await_upgrade",
]
_HINT_ACTIONS: dict[str, ActionCode] = {
    "retry": "retry",
    "retry_by_runtime": "retry",
    "reconnect": "reconnect_secrets",
    "refresh_credentials": "reconnect_secrets",
    "manual_action_required": "manual",
    "retry_on_connector_upgrade": "await_upgrade",
}


@dataclass(frozen=True)
class HealthEvidence:
    status: str
    runnable_paths: tuple[str, ...]
    last_runs: tuple[RunRecord, ...]  # the latest run of each path, newest first
    last_successful_run: RunRecord | None
    last_batch_at: str | None
    staleness_budget_seconds: int | None
    schedule: Schedule | None
    missing_credentials: tuple[str, ...]
    now: str
    stalled_run: str | None = None  # a run still marked running whose lease went stale
    oauth_paths: tuple[str, ...] = ()  # paths that connect by OAuth at their provider


@dataclass(frozen=True)
class Action:
    """What the owner can do, typed, so that a surface can offer it (the console as a button)
    without parsing `Verdict.remediation`, which says it to people (a command, a hint)."""

    code: ActionCode
    connector_key: str | None = None  # the acquisition path a reconnect is for

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "connector_key": self.connector_key}


def hint_action(
    hint: str | None, connector_key: str | None, oauth_paths: Collection[str]
) -> Action | None:
    """The action a recovery hint asks of the owner; a path that connects by OAuth is
    reconnected at its provider. None when there is nothing to do (`not_retriable`)."""
    code = _HINT_ACTIONS.get(hint or "")
    if code is None:
        return None
    if code != "reconnect_secrets":
        return Action(code)
    return Action(
        "reconnect_oauth" if connector_key in oauth_paths else "reconnect_secrets", connector_key
    )


@dataclass(frozen=True)
class Verdict:
    state: str
    reason: str
    message: str
    remediation: str | None = None  # for people: the command to run, or the hint's word
    advisories: tuple[str, ...] = ()
    gaps: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    action: Action | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason_code": self.reason,
            "message": self.message,
            "remediation": self.remediation,
            "action": self.action.to_dict() if self.action else None,
            "advisories": list(self.advisories),
            "known_gaps": list(self.gaps),
        }


def _asks(run: RunRecord, action: str) -> bool:
    """Whether one of the run's known gaps asks for this recovery action."""
    return any(g.get("recovery_hint", {}).get("action") == action for g in run.known_gaps)


def _scheduled(schedule: Schedule | None) -> bool:
    return schedule is not None and schedule.enabled and not schedule.paused


def gap_action(gap: dict[str, Any], oauth_paths: Collection[str]) -> Action | None:
    """The action a known gap's recovery hint asks for."""
    return hint_action(
        gap.get("recovery_hint", {}).get("action"), gap.get("connector_key"), oauth_paths
    )


def verdict(evidence: HealthEvidence) -> Verdict:
    oauth = evidence.oauth_paths
    if evidence.status == "revoked":
        return Verdict(
            "idle",
            "revoked",
            "collection is stopped; records are kept",
            "reactivate",
            action=Action("reactivate"),
        )
    if evidence.missing_credentials:
        path = evidence.missing_credentials[0].partition(":")[0]
        return Verdict(
            "blocked",
            "credential_unavailable",
            f"missing credential(s): {', '.join(evidence.missing_credentials)}",
            "reconnect with the credential (ownstream connect … --connection ID)",
            action=hint_action("reconnect", path, oauth),
        )
    if evidence.stalled_run is not None:
        return Verdict(
            "degraded",
            "run_stalled",
            f"run {evidence.stalled_run} stopped renewing its lease (its process may have "
            "died); it is reclaimed and nothing it staged is kept",
            "retry",
            action=Action("retry"),
        )
    gaps = tuple(g for run in evidence.last_runs for g in run.known_gaps)
    for run in evidence.last_runs:
        if run.status == "failed" and _asks(run, "reconnect"):
            action = hint_action("reconnect", run.connector_key, oauth)
            how = "--oauth " if action and action.code == "reconnect_oauth" else ""
            return Verdict(
                "blocked",
                "reconnect_required",
                f"{run.connector_key} refused the stored authorization in run {run.run_id} "
                "(it expired, or access was revoked at the provider)",
                f"ownstream connect {run.connector_key} {how}--connection {run.connection_id}",
                gaps=gaps,
                action=action,
            )
    for run in evidence.last_runs:
        if run.status == "failed" and _asks(run, "refresh_credentials"):
            return Verdict(
                "blocked",
                "credentials_rejected",
                f"{run.connector_key} rejected the stored credential in run {run.run_id}",
                "refresh_credentials",
                gaps=gaps,
                action=hint_action("refresh_credentials", run.connector_key, oauth),
            )
    if not evidence.last_runs and evidence.last_batch_at is None:
        return Verdict(
            "unknown",
            "no_evidence",
            "nothing has been collected yet",
            "run it",
            action=Action("run") if evidence.runnable_paths else None,
        )
    latest = evidence.last_runs[0] if evidence.last_runs else None
    if latest is not None and latest.status in ("failed", "cancelled"):
        error = latest.error or {}
        asking = sorted(
            (g for g in gaps if g.get("recovery_hint", {}).get("action")),
            key=lambda g: str(g["recovery_hint"]["action"]),
        )
        first = asking[0] if asking else None
        return Verdict(
            "needs_attention"
            if any(g["recovery_hint"]["action"] in OWNER_ACTIONS for g in asking)
            else "degraded",
            "last_run_failed",
            f"run {latest.run_id} of {latest.connector_key} {latest.status}: "
            f"{error.get('message', 'no detail')}",
            str(first["recovery_hint"]["action"]) if first else None,
            gaps=gaps,
            action=gap_action(first, oauth) if first else None,
        )
    actionable = tuple(g for g in gaps if g.get("severity") != "informational")
    if actionable:
        owner_needed = any(
            g.get("recovery_hint", {}).get("action") in OWNER_ACTIONS for g in actionable
        )
        return Verdict(
            "needs_attention" if owner_needed else "degraded",
            "known_gaps",
            f"{len(actionable)} known gap(s) in the latest run(s)",
            str(actionable[0].get("recovery_hint", {}).get("action")),
            gaps=gaps,
            action=gap_action(actionable[0], oauth),
        )
    schedule = evidence.schedule
    if schedule is not None and schedule.backoff_until and schedule.backoff_until > evidence.now:
        return Verdict(
            "degraded",
            "backing_off",
            f"{schedule.consecutive_failures} failed scheduled run(s); next try after "
            f"{schedule.backoff_until}",
            None,
        )
    newest = max(
        (t for t in (
            evidence.last_successful_run.ended_at if evidence.last_successful_run else None,
            evidence.last_batch_at,
        ) if t),
        default=None,
    )
    budget = evidence.staleness_budget_seconds
    if budget is not None and newest is not None:
        deadline = iso(parse_iso(newest) + timedelta(seconds=budget))
        if deadline < evidence.now:
            if _scheduled(schedule):
                return Verdict(
                    "degraded", "stale", f"newest evidence {newest} is older than {budget}s", None
                )
            return Verdict(
                "idle",
                "stale_manual_refresh",
                f"newest evidence {newest} is older than {budget}s",
                None,
                advisories=("refresh: run it now, or import a newer archive",),
            )
    if schedule is not None and schedule.paused:
        return Verdict(
            "idle", "schedule_paused", "the schedule is paused", "resume", action=Action("resume")
        )
    return Verdict("healthy", "ok", "collected successfully", None, gaps=gaps)
