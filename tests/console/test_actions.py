"""The typed action of a health verdict (what the console offers as a button) and how the
console renders each one; the remediation text for people is unchanged beside it."""

from __future__ import annotations

import pytest

from ownstream.console.pages import templates
from ownstream.health import Action, hint_action, verdict
from tests.owner.test_health import evidence, gap, run, schedule


def test_each_verdict_carries_the_action_a_surface_can_offer() -> None:
    reconnect = run("failed", gaps=(gap("reconnect", "actionable", None),))
    rejected = run("failed", gaps=(gap("refresh_credentials", "actionable", None),))
    cases = {
        "reconnect_required by oauth": (
            evidence(last_runs=(reconnect,), oauth_paths=("spotify",)),
            Action("reconnect_oauth", "spotify"),
            "ownstream connect spotify --oauth --connection cin_x",
        ),
        "reconnect_required with secrets": (
            evidence(last_runs=(reconnect,)),
            Action("reconnect_secrets", "spotify"),
            "ownstream connect spotify --connection cin_x",
        ),
        "credentials_rejected": (
            evidence(last_runs=(rejected,), oauth_paths=("spotify",)),
            Action("reconnect_oauth", "spotify"),
            "refresh_credentials",
        ),
        "credential_unavailable": (
            evidence(missing_credentials=("spotify:access_token",)),
            Action("reconnect_secrets", "spotify"),
            "reconnect with the credential (ownstream connect … --connection ID)",
        ),
        "last_run_failed": (
            evidence(last_runs=(run("failed", gaps=(gap("retry_by_runtime"),)),)),
            Action("retry"),
            "retry_by_runtime",
        ),
        "known_gaps": (
            evidence(last_runs=(run(gaps=(gap("manual_action_required", "actionable"),)),)),
            Action("manual"),
            "manual_action_required",
        ),
        "revoked": (evidence(status="revoked"), Action("reactivate"), "reactivate"),
        "schedule_paused": (
            evidence(schedule=schedule(paused=True)), Action("resume"), "resume"
        ),
        "no_evidence": (
            evidence(last_runs=(), last_successful_run=None), Action("run"), "run it"
        ),
        "healthy": (evidence(), None, None),
    }
    for name, (given, action, remediation) in cases.items():
        found = verdict(given)
        assert (found.action, found.remediation) == (action, remediation), name
        assert found.to_dict()["action"] == (action.to_dict() if action else None), name
    archive_only = evidence(runnable_paths=(), last_runs=(), last_successful_run=None)
    assert verdict(archive_only).action is None  # nothing to run


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("retry_on_connector_upgrade", Action("await_upgrade")),
        ("not_retriable", None),
        (None, None),
        ("reconnect", Action("reconnect_oauth", "spotify")),
    ],
)
def test_recovery_hints_map_to_actions(hint: str | None, expected: Action | None) -> None:
    assert hint_action(hint, "spotify", {"spotify"}) == expected


def button(action: Action | None) -> str:
    macros = templates.get_template("_macros.html").module
    return str(
        macros.action_button(  # type: ignore[attr-defined]
            action.to_dict() if action else None, "cin_abc_123", "t0k"
        )
    )


def test_the_console_renders_each_action_with_the_connection_id_intact() -> None:
    oauth = button(Action("reconnect_oauth", "spotify"))
    assert 'action="/console/connect/spotify/oauth"' in oauth
    assert 'name="connection_id" value="cin_abc_123"' in oauth
    assert 'name="csrf_token" value="t0k"' in oauth and ">Reconnect</button>" in oauth
    secrets = button(Action("reconnect_secrets", "spotify"))
    assert 'href="/console/connect/spotify?connection_id=cin_abc_123"' in secrets
    for action, path, label in [
        (Action("retry"), "run", "Retry now"),
        (Action("run"), "run", "Run now"),
        (Action("reactivate"), "reactivate", "Reactivate"),
        (Action("resume"), "schedule/resume", "Resume the schedule"),
    ]:
        shown = button(action)
        assert f'action="/console/connections/cin_abc_123/{path}"' in shown
        assert f">{label}</button>" in shown
    assert "act on the message" in button(Action("manual"))
    assert "newer connector" in button(Action("await_upgrade"))
    assert button(None).strip() == ""
    assert "cin abc" not in "".join(button(Action(c)) for c in ("retry", "run", "manual"))
