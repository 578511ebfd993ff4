"""The whole flow against the double: connect by OAuth, run, let the access token expire, run
again (refresh, the rotated refresh token stored), and again with the rotated token."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from ownstream.credentials import fingerprint
from tests.owner import FakeClock

from . import CLIENT_ID, OAuthLab


@pytest.fixture(params=["in-process", "subprocess"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "subprocess":
        monkeypatch.setenv("OWNSTREAM_CONNECTOR_TRANSPORT", "subprocess")
    return str(request.param)


def test_connect_refresh_rotate_and_the_old_refresh_token_is_never_used_again(
    lab: OAuthLab, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ann = lab.connect_oauth("ann", display_name="Ann's Spotify")
    connection = lab.store.connection(ann)
    assert connection.display_name == "Ann's Spotify"
    assert connection.identity is not None and connection.identity.value == "ann"
    assert {c.name for c in lab.store.credential_metadata(ann)} == {
        "access_token",
        "refresh_token",
        "client_id",
    }
    assert lab.stored(ann, "client_id") == CLIENT_ID
    assert lab.store.schedule(ann) is not None  # enrolled like every connect
    first_refresh = lab.stored(ann, "refresh_token")

    [fresh] = lab.ops.run(ann)  # the access token from the code exchange is still valid
    assert fresh.status == "succeeded" and fresh.credentials_stored == []
    assert lab.refreshes_with(first_refresh) == 0

    lab.double.expire_access_tokens("ann")
    [refreshed] = lab.ops.run(ann)
    assert refreshed.status == "succeeded"
    assert refreshed.credentials_stored == ["access_token", "refresh_token"]
    assert lab.refreshes_with(first_refresh) == 1
    rotated = lab.stored(ann, "refresh_token")
    assert rotated != first_refresh
    stored = {c.name: c for c in lab.store.credential_metadata(ann)}
    assert stored["refresh_token"].fingerprint == fingerprint(rotated)
    assert stored["refresh_token"].rotated_at is not None
    assert stored["client_id"].rotated_at is None  # only what the run handed back changed
    lab.remember_secrets(ann)

    # the rotated-away refresh token is dead at Spotify
    answer = httpx.post(
        lab.double.base_url + "/api/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first_refresh,
            "client_id": CLIENT_ID,
        },
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    asked = len(lab.double.token_requests)

    lab.double.expire_access_tokens("ann")
    [again] = lab.ops.run(ann)
    assert again.status == "succeeded" and again.collection_mode == "incremental"
    assert lab.refreshes_with(rotated) == 1
    assert ("refresh_token", first_refresh) not in lab.double.token_requests[asked:]
    assert lab.stored(ann, "refresh_token") not in (first_refresh, rotated)
    lab.remember_secrets(ann)

    # the audit says which secrets were rotated, never their values; no secret anywhere
    runs = [e for e in lab.audit(ann) if e["operation"] == "run"]
    assert [e["summary"]["credentials_stored"] for e in runs] == [
        ["access_token", "refresh_token"],
        ["access_token", "refresh_token"],
        [],
    ]
    connect = next(e for e in lab.audit(ann) if e["operation"] == "connect")
    assert connect["summary"]["via"] == "oauth"
    assert connect["summary"]["credentials"] == ["access_token", "client_id", "refresh_token"]
    lab.assert_no_secret(json.dumps([r.__dict__ for r in lab.runs(ann)], default=str))
    lab.assert_no_secret(caplog.text)
    for path in (f"/v1/owner/connections/{ann}", f"/v1/owner/connections/{ann}/diagnostics"):
        lab.ok("GET", path)
    lab.cli_json("connections", "show", ann)


@pytest.mark.parametrize("rotate", [False])
def test_a_refresh_without_rotation_keeps_the_refresh_token(lab: OAuthLab) -> None:
    ann = lab.connect_oauth("ann")
    refresh_token, access_token = lab.stored(ann, "refresh_token"), lab.stored(ann, "access_token")
    for _ in range(2):
        lab.double.expire_access_tokens("ann")
        [outcome] = lab.ops.run(ann)
        assert outcome.status == "succeeded" and outcome.credentials_stored == ["access_token"]
    assert lab.refreshes_with(refresh_token) == 2
    assert lab.stored(ann, "refresh_token") == refresh_token
    assert lab.stored(ann, "access_token") != access_token
    stored = {c.name: c for c in lab.store.credential_metadata(ann)}
    assert stored["refresh_token"].rotated_at is None
    assert stored["access_token"].rotated_at is not None


def test_a_run_that_refreshed_and_then_failed_keeps_the_new_credentials(lab: OAuthLab) -> None:
    ann = lab.connect_oauth("ann")
    old = lab.stored(ann, "refresh_token")
    lab.double.expire_access_tokens("ann")
    # the refresh succeeds, then Spotify rejects the new token too: the run fails right there
    lab.double.inject_fault("/v1/me", 401, times=2)
    [failed] = lab.ops.run(ann)
    assert failed.status == "failed"
    assert failed.error is not None and failed.error["code"] == "credentials_invalid"
    assert failed.credentials_stored == ["access_token", "refresh_token"]
    assert lab.refreshes_with(old) == 1
    rotated = lab.stored(ann, "refresh_token")
    assert rotated != old

    # a failure later in the run keeps them too
    lab.double.expire_access_tokens("ann")
    lab.double.inject_fault("/v1/me/tracks", 401)
    [failed_later] = lab.ops.run(ann)
    assert failed_later.status == "failed"
    assert lab.refreshes_with(rotated) == 1
    latest = lab.stored(ann, "refresh_token")
    assert latest not in (old, rotated)

    [recovered] = lab.ops.run(ann)  # the access token refreshed by the failed run still works
    assert recovered.status == "succeeded" and recovered.credentials_stored == []
    assert lab.refreshes_with(latest) == 0


def test_two_connections_of_one_provider_keep_their_own_credentials(lab: OAuthLab) -> None:
    ann, ben = lab.connect_oauth("ann"), lab.connect_oauth("ben")
    ben_before = lab.sealed_rows(ben)
    ann_refresh, ben_refresh = lab.stored(ann, "refresh_token"), lab.stored(ben, "refresh_token")

    lab.double.expire_access_tokens("ann")
    assert [o.status for o in lab.ops.run(ann)] == ["succeeded"]
    assert lab.sealed_rows(ben) == ben_before  # not a byte of ben's credentials moved
    assert lab.refreshes_with(ann_refresh) == 1 and lab.refreshes_with(ben_refresh) == 0
    ann_after = lab.sealed_rows(ann)

    lab.double.expire_access_tokens("ann")
    lab.double.expire_access_tokens("ben")
    assert [o.status for o in lab.ops.run(ben)] == ["succeeded"]
    assert lab.refreshes_with(ben_refresh) == 1
    assert lab.sealed_rows(ann) == ann_after
    assert lab.stored(ben, "refresh_token") != ben_refresh
    # each connection still proves its own account with its own tokens
    for connection_id, user in ((ann, "ann"), (ben, "ben")):
        [outcome] = lab.ops.run(connection_id)
        assert outcome.status == "succeeded"
        assert outcome.identity is not None and outcome.identity.value == user


def test_a_scheduled_run_stores_what_it_refreshed(lab: OAuthLab) -> None:
    ann = lab.connect_oauth("ann")
    old = lab.stored(ann, "refresh_token")
    lab.double.expire_access_tokens("ann")
    outcomes = lab.worker(FakeClock()).tick()[ann]
    assert isinstance(outcomes, list)
    [outcome] = outcomes
    assert outcome.status == "succeeded" and outcome.trigger == "schedule"
    assert lab.refreshes_with(old) == 1 and lab.stored(ann, "refresh_token") != old
    lab.remember_secrets(ann)
    event = next(e for e in lab.audit(ann) if e["operation"] == "scheduled_run")
    assert event["summary"]["credentials_stored"] == ["access_token", "refresh_token"]
