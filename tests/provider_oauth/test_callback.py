"""The callback refuses what it did not start: unknown, replayed or expired state, a code
redeemed with another authorization's PKCE verifier, a declined consent."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from ownstream.errors import ProviderAuthorizationRefused
from ownstream.owner.provider_oauth import CALLBACK_PATH

from . import REDIRECT_URI, OAuthLab, query


def refused(lab: OAuthLab, location: str, status: int = 400) -> str:
    response = lab.callback(location)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "Not connected" in response.text
    return response.text


def test_a_callback_connects_once_and_says_as_whom(lab: OAuthLab) -> None:
    started = lab.start(display_name="Ann <Spotify>")
    location = lab.approve(started, "ann")
    page = lab.callback(location)
    assert page.status_code == 200
    assert "Connected spotify as spotify_user_id=ann" in page.text
    assert "Ann &lt;Spotify&gt;" in page.text  # what the owner typed is escaped
    authorization = lab.store.provider_authorization(started.authorization_id)
    assert authorization.status == "connected"
    assert authorization.sealed_verifier is None and authorization.sealed_client_secret is None
    assert authorization.connection_id == lab.store.connections()[0].connection_id

    exchanges = len(lab.double.token_requests)
    assert "already used" in refused(lab, location)  # a replayed redirect
    assert len(lab.double.token_requests) == exchanges  # never reaches the provider again
    assert len(lab.store.connections()) == 1


def test_unknown_missing_or_forged_state_is_refused(lab: OAuthLab) -> None:
    started = lab.start()
    location = lab.approve(started, "ann")
    code = query(location)["code"]
    assert "unknown state" in refused(
        lab, f"{REDIRECT_URI}?{urlencode({'code': code, 'state': 'forged'})}"
    )
    assert "no state" in refused(lab, f"{REDIRECT_URI}?{urlencode({'code': code})}")
    assert lab.double.token_requests == []
    assert lab.store.connections() == []
    # the genuine redirect still works: a forged one did not use the authorization up
    assert lab.callback(location).status_code == 200


def test_a_code_redeemed_with_another_authorizations_verifier_is_refused(lab: OAuthLab) -> None:
    """An attacker's code injected into the owner's flow: PKCE binds a code to its verifier."""
    attacker, victim = lab.start(), lab.start()
    stolen = query(lab.approve(attacker, "ben"))["code"]
    victim_state = query(lab.approve(victim, "ann"))["state"]
    page = refused(lab, f"{REDIRECT_URI}?{urlencode({'code': stolen, 'state': victim_state})}")
    assert "refused the authorization code (invalid_grant)" in page
    assert lab.store.connections() == []
    ended = lab.store.provider_authorization(victim.authorization_id)
    assert ended.status == "refused" and ended.outcome is not None
    assert ended.outcome["code"] == "provider_authorization_refused"
    assert ended.sealed_verifier is None
    event = next(e for e in lab.audit() if e["operation"] == "connect")
    assert event["outcome"] == "refused" and event["summary"]["via"] == "oauth"


def test_a_declined_consent_connects_nothing(lab: OAuthLab) -> None:
    started = lab.start()
    location = lab.approve(started, "ann", approve=False)
    assert query(location)["error"] == "access_denied"
    assert "did not authorize the connection (access_denied)" in refused(lab, location)
    assert lab.store.provider_authorization(started.authorization_id).status == "refused"
    assert lab.store.connections() == []


def test_an_expired_authorization_is_refused(lab: OAuthLab) -> None:
    started = lab.start()
    location = lab.approve(started, "ann")
    with lab.db() as db:
        db.execute(
            "UPDATE provider_authorizations SET expires_at = '2000-01-01T00:00:00.000Z' "
            "WHERE authorization_id = ?",
            (started.authorization_id,),
        )
    assert "expired" in refused(lab, location)
    expired = lab.store.provider_authorization(started.authorization_id)
    assert expired.status == "expired" and expired.sealed_verifier is None
    assert lab.double.token_requests == []


def test_only_a_hash_of_the_state_is_stored(lab: OAuthLab) -> None:
    started = lab.start()
    state = query(started.authorization_url)["state"]
    verifier_free = query(started.authorization_url)
    assert verifier_free["code_challenge_method"] == "S256"
    assert "code_verifier" not in verifier_free
    with lab.db() as db:
        dump = db.everything()
    assert state.encode() not in dump
    assert verifier_free["code_challenge"].encode() not in dump


def test_the_error_the_provider_sends_back_is_escaped(lab: OAuthLab) -> None:
    started = lab.start()
    state = query(started.authorization_url)["state"]
    page = refused(
        lab, f"{CALLBACK_PATH}?{urlencode({'state': state, 'error': '<script>x</script>'})}"
    )
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_completing_directly_raises_the_typed_refusal(lab: OAuthLab) -> None:
    with pytest.raises(ProviderAuthorizationRefused):
        lab.flow.complete(state="nothing-started", code="x", error=None)
