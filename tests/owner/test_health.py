"""Health: one pure verdict per evidence case, and the same verdict on every owner surface."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from ownstream.clock import iso, parse_iso
from ownstream.health import HealthEvidence, Verdict, verdict
from ownstream.store.base import RunRecord, RunStatus, Schedule

from . import Lab, custom_manifest

NOW = "2026-03-01T12:00:00.000Z"
DAY = 86400


def ago(seconds: float) -> str:
    return iso(parse_iso(NOW) - timedelta(seconds=seconds))


def gap(action: str, severity: str = "recoverable", stream: str | None = "saved_tracks") -> Any:
    return {
        "kind": "skip_result",
        "reason": "upstream_unavailable",
        "message": "the stream could not be read",
        "stream": stream,
        "severity": severity,
        "recovery_hint": {"action": action},
        "connector_key": "spotify",
        "acquisition_method": "provider_api",
    }


def run(
    status: RunStatus = "succeeded",
    *,
    at: float = 600,
    gaps: tuple[dict[str, Any], ...] = (),
    error: dict[str, Any] | None = None,
) -> RunRecord:
    return RunRecord(
        run_id=f"run_{status}_{int(at)}",
        connection_id="cin_x",
        connector_key="spotify",
        acquisition_method="provider_api",
        trigger="schedule",
        collection_mode="incremental",
        status=status,
        started_at=ago(at + 60),
        ended_at=ago(at),
        known_gaps=list(gaps),
        error=error,
    )


def schedule(**changes: Any) -> Schedule:
    base = Schedule(
        connection_id="cin_x",
        enabled=True,
        paused=False,
        interval_seconds=3600,
        jitter_seconds=0,
        next_due_at=ago(-3000),
        consecutive_failures=0,
        backoff_until=None,
        last_run_at=ago(600),
        origin="refresh_policy",
        updated_at=ago(600),
    )
    return replace(base, **changes)


def evidence(**changes: Any) -> HealthEvidence:
    ok = run()
    base = HealthEvidence(
        status="active",
        runnable_paths=("spotify",),
        last_runs=(ok,),
        last_successful_run=ok,
        last_batch_at=None,
        staleness_budget_seconds=DAY,
        schedule=schedule(),
        missing_credentials=(),
        now=NOW,
    )
    return replace(base, **changes)


def check(found: Verdict, state: str, reason: str) -> Verdict:
    assert (found.state, found.reason) == (state, reason), found
    assert found.message
    return found


# -- one pure function, one case at a time -----------------------------------------------------


def test_healthy() -> None:
    found = check(verdict(evidence()), "healthy", "ok")
    assert found.remediation is None and found.advisories == ()
    informational = run(gaps=(gap("not_retriable", "informational", None),))
    kept = check(
        verdict(evidence(last_runs=(informational,), last_successful_run=informational)),
        "healthy",
        "ok",
    )
    assert len(kept.gaps) == 1  # reported, but no reason for concern
    # an archive-only connection with a fresh batch is healthy too
    check(
        verdict(
            evidence(
                runnable_paths=(),
                last_runs=(),
                last_successful_run=None,
                last_batch_at=ago(3600),
                staleness_budget_seconds=None,
                schedule=None,
            )
        ),
        "healthy",
        "ok",
    )


@pytest.mark.parametrize(
    ("changes", "reason", "remediation"),
    [
        (
            {"last_runs": (run("failed", error={"message": "HTTP 503"},
                               gaps=(gap("retry_by_runtime"),)),)},
            "last_run_failed",
            "retry_by_runtime",
        ),
        ({"last_runs": (run(gaps=(gap("retry_by_runtime"),)),)}, "known_gaps", "retry_by_runtime"),
        (
            {"schedule": schedule(consecutive_failures=2, backoff_until=ago(-300))},
            "backing_off",
            None,
        ),
        (
            {"last_successful_run": run(at=2 * DAY), "last_runs": (run(at=2 * DAY),)},
            "stale",
            None,
        ),
    ],
    ids=["failed-run", "recoverable-gap", "backing-off", "scheduled-and-stale"],
)
def test_degraded(changes: dict[str, Any], reason: str, remediation: str | None) -> None:
    found = check(verdict(evidence(**changes)), "degraded", reason)
    assert found.remediation == remediation


def test_blocked() -> None:
    missing = check(
        verdict(evidence(missing_credentials=("spotify:access_token",))),
        "blocked",
        "credential_unavailable",
    )
    assert "spotify:access_token" in missing.message and missing.remediation
    rejected = run("failed", gaps=(gap("refresh_credentials", "actionable", None),))
    found = check(
        verdict(evidence(last_runs=(rejected,), last_successful_run=run(at=DAY))),
        "blocked",
        "credentials_rejected",
    )
    assert found.remediation == "refresh_credentials"
    assert rejected.run_id in found.message


def test_idle() -> None:
    revoked = check(
        verdict(evidence(status="revoked", missing_credentials=("spotify:access_token",))),
        "idle",
        "revoked",
    )
    assert revoked.remediation == "reactivate"
    paused = check(
        verdict(evidence(schedule=schedule(paused=True))), "idle", "schedule_paused"
    )
    assert paused.remediation == "resume"
    # a manual-only connection that is merely stale: idle, with a refresh advisory
    stale = run(at=3 * DAY)
    manual = check(
        verdict(evidence(last_runs=(stale,), last_successful_run=stale, schedule=None)),
        "idle",
        "stale_manual_refresh",
    )
    assert manual.advisories and "refresh" in manual.advisories[0]
    # …and an archive whose newest import is older than the budget, likewise
    archive = check(
        verdict(
            evidence(
                last_runs=(),
                last_successful_run=None,
                last_batch_at=ago(3 * DAY),
                schedule=None,
            )
        ),
        "idle",
        "stale_manual_refresh",
    )
    assert archive.advisories


def test_needs_attention() -> None:
    failed = run(
        "failed",
        error={"code": "identity_mismatch", "message": "another account"},
        gaps=(gap("manual_action_required", "actionable", None),),
    )
    found = check(verdict(evidence(last_runs=(failed,))), "needs_attention", "last_run_failed")
    assert found.remediation == "manual_action_required"
    scope = run(gaps=(gap("refresh_credentials"),))  # a stream refused (HTTP 403): owner's call
    check(verdict(evidence(last_runs=(scope,))), "needs_attention", "known_gaps")


def test_unknown() -> None:
    found = check(
        verdict(evidence(last_runs=(), last_successful_run=None)), "unknown", "no_evidence"
    )
    assert found.remediation


def test_precedence_worst_first() -> None:
    """Missing credentials outrank a failure, which outranks staleness and back-off."""
    failed = run("failed", at=3 * DAY, gaps=(gap("retry_by_runtime"),))
    everything = evidence(
        last_runs=(failed,),
        last_successful_run=run(at=4 * DAY),
        schedule=schedule(backoff_until=ago(-60), consecutive_failures=3),
        missing_credentials=("spotify:access_token",),
    )
    check(verdict(everything), "blocked", "credential_unavailable")
    check(verdict(replace(everything, missing_credentials=())), "degraded", "last_run_failed")


# -- the same verdict on every surface ---------------------------------------------------------


def age_runs(lab: Lab, connection_id: str, seconds: int) -> None:
    """Pretend this connection's runs happened `seconds` ago."""
    with lab.db() as db:
        for run_id, started, ended in db.execute(
            "SELECT run_id, started_at, ended_at FROM runs WHERE connection_id = ?",
            (connection_id,),
        ).fetchall():
            db.execute(
                "UPDATE runs SET started_at = ?, ended_at = ? WHERE run_id = ?",
                (
                    iso(parse_iso(started) - timedelta(seconds=seconds)),
                    iso(parse_iso(ended) - timedelta(seconds=seconds)),
                    run_id,
                ),
            )


def make_healthy(lab: Lab) -> str:
    ann = lab.connect("ann")
    lab.ops.run(ann)
    return ann


def make_unknown(lab: Lab) -> str:
    return lab.connect("ann")


def make_blocked(lab: Lab) -> str:
    ann = lab.connect("ann")
    lab.double.expire_token(lab.tokens["ann"])
    lab.ops.run(ann)
    return ann


def make_degraded(lab: Lab) -> str:
    ann = lab.connect("ann")
    lab.double.inject_fault("/v1/me/tracks", 503, times=3)
    lab.ops.run(ann)
    return ann


def make_needs_attention(lab: Lab) -> str:
    ann = lab.connect("ann")
    lab.double.inject_fault("/v1/me/playlists", 403)
    lab.ops.run(ann)
    return ann


def make_idle_revoked(lab: Lab) -> str:
    ann = make_healthy(lab)
    lab.ops.revoke(ann)
    return ann


def make_idle_manual_stale(lab: Lab) -> str:
    policy = {"recommended_mode": "manual", "background_safe": True,
              "maximum_staleness_seconds": DAY}
    lab.register(custom_manifest("spotify-manual", policy))
    ann = lab.connect("ann", connector="spotify-manual")
    lab.ops.run(ann)
    age_runs(lab, ann, 2 * DAY)
    return ann


def make_degraded_scheduled_stale(lab: Lab) -> str:
    ann = make_healthy(lab)
    age_runs(lab, ann, 2 * DAY)
    return ann


@pytest.mark.parametrize(
    ("make", "state", "reason"),
    [
        (make_healthy, "healthy", "ok"),
        (make_unknown, "unknown", "no_evidence"),
        (make_blocked, "blocked", "credentials_rejected"),
        (make_degraded, "degraded", "known_gaps"),
        (make_needs_attention, "needs_attention", "known_gaps"),
        (make_idle_revoked, "idle", "revoked"),
        (make_idle_manual_stale, "idle", "stale_manual_refresh"),
        (make_degraded_scheduled_stale, "degraded", "stale"),
    ],
    ids=lambda v: v.__name__.removeprefix("make_") if callable(v) else None,
)
def test_the_same_verdict_in_the_list_diagnostics_and_cli(
    lab: Lab, make: Callable[[Lab], str], state: str, reason: str
) -> None:
    connection_id = make(lab)
    listed = {
        e["connection_id"]: e["health"] for e in lab.ok("GET", "/v1/owner/connections")["data"]
    }[connection_id]
    one = lab.ok("GET", f"/v1/owner/connections/{connection_id}")["health"]
    diagnostics = lab.ok("GET", f"/v1/owner/connections/{connection_id}/diagnostics")
    shown = lab.cli_json("connections", "show", connection_id)["health"]
    cli_diagnostics = lab.cli_json("connections", "diagnostics", connection_id)["health"]
    assert (listed["state"], listed["reason_code"]) == (state, reason), listed
    assert listed == one == diagnostics["health"] == shown == cli_diagnostics
    assert diagnostics["known_gaps"] == listed["known_gaps"]
    if state == "idle" and reason == "stale_manual_refresh":
        assert listed["advisories"]
        text = lab.cli("connections", "show", connection_id).stdout
        assert "health: idle" in text and "advisory:" in text
    if state in ("degraded", "needs_attention") and reason == "known_gaps":
        [found] = [g for g in listed["known_gaps"] if g["severity"] != "informational"]
        assert found["connector_key"] == "spotify"
        assert found["acquisition_method"] == "provider_api"
        assert found["recovery_hint"]["action"] == listed["remediation"]
