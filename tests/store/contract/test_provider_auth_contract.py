"""Provider authorizations and the credentials a run hands back, through the Store protocol,
on every backend: one claim per state, ends that happen once, expiry, and the lease fence."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from ownstream.clock import iso
from ownstream.errors import NotFound, RunLeaseLost
from ownstream.store.base import ProviderAuthorization

from .conftest import Harness


def pending(harness: Harness, authorization_id: str, minutes: int = 10) -> ProviderAuthorization:
    return ProviderAuthorization(
        authorization_id=authorization_id,
        connector_key="spotify",
        status="pending",
        redirect_uri="http://127.0.0.1:8765/connect/oauth/callback",
        client_id="app",
        settings={"api_base_url": "http://provider"},
        display_name="Ann",
        connection_id=None,
        allow_recreate=False,
        created_at=iso(harness.clock()),
        expires_at=iso(harness.clock() + timedelta(minutes=minutes)),
        sealed_verifier=b"sealed-verifier",
        sealed_client_secret=b"sealed-secret",
    )


def test_one_callback_claims_an_authorization_and_it_ends_once(harness: Harness) -> None:
    store = harness.store
    started = pending(harness, "pa_1")
    store.create_provider_authorization(started, "hash-1")
    assert store.provider_authorization("pa_1") == started
    claimed = store.claim_provider_authorization("hash-1")
    assert claimed == replace(started, status="completing")
    again = store.claim_provider_authorization("hash-1")
    assert again is not None and again.status == "completing"
    assert store.claim_provider_authorization("hash-unknown") is None
    a = harness.connection("a")
    outcome = {"created": True}
    assert store.finish_provider_authorization(
        "pa_1", expected="completing", status="connected", connection_id=a, outcome=outcome
    )
    assert not store.finish_provider_authorization(
        "pa_1", expected="completing", status="refused", connection_id=None, outcome={}
    )
    ended = store.provider_authorization("pa_1")
    assert (ended.status, ended.connection_id, ended.outcome) == ("connected", a, outcome)
    assert ended.sealed_verifier is None and ended.sealed_client_secret is None
    assert ended.finished_at == iso(harness.clock())
    with pytest.raises(NotFound):
        store.provider_authorization("pa_missing")


def test_an_expired_authorization_cannot_be_claimed_and_is_dropped_a_day_later(
    harness: Harness,
) -> None:
    store = harness.store
    store.create_provider_authorization(pending(harness, "pa_old", minutes=1), "hash-old")
    harness.clock.advance(120)
    expired = store.claim_provider_authorization("hash-old")
    assert expired is not None and expired.status == "expired"
    assert expired.sealed_verifier is None
    harness.clock.advance(86_400)
    store.create_provider_authorization(pending(harness, "pa_new"), "hash-new")
    with pytest.raises(NotFound):
        store.provider_authorization("pa_old")
    assert store.provider_authorization("pa_new").status == "pending"


def test_run_credentials_are_stored_at_once_and_fenced_by_the_lease(harness: Harness) -> None:
    store = harness.store
    a = harness.connection("a")
    run = harness.stage(a)
    store.save_run_credentials(run, {"refresh_token": (b"sealed-1", "fp-1")})
    store.abandon(run, {"code": "failed", "message": "the run failed after refreshing"})
    kept = store.connection_config(a, "notes-api")
    assert kept.sealed_secrets == {"refresh_token": b"sealed-1"}
    slow = harness.stage(a)
    harness.clock.advance(120)
    harness.stage(a)  # takes the stale lease over
    with pytest.raises(RunLeaseLost):
        store.save_run_credentials(slow, {"refresh_token": (b"sealed-2", "fp-2")})
    assert store.connection_config(a, "notes-api").sealed_secrets == {
        "refresh_token": b"sealed-1"
    }
