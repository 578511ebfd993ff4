"""A grant revoked (or a refresh token expired) at the provider: `reconnect_required` with the
command to run, on the CLI and the owner API; reconnecting keeps the connection."""

from __future__ import annotations

from . import OAuthLab


def test_a_revoked_grant_blocks_the_connection_until_it_is_reconnected(lab: OAuthLab) -> None:
    ann, ben = lab.connect_oauth("ann"), lab.connect_oauth("ben")
    assert [o.status for o in lab.ops.run(ann)] == ["succeeded"]
    refresh_token = lab.stored(ann, "refresh_token")

    lab.double.revoke_access("ann", "ownstream-test")
    [failed] = lab.ops.run(ann)
    assert failed.status == "failed"
    assert failed.error is not None and failed.error["code"] == "authorization_rejected"
    assert failed.error["recovery_hint"]["action"] == "reconnect"
    assert lab.refreshes_with(refresh_token) == 1  # tried once, then the run stopped

    command = f"ownstream connect spotify --oauth --connection {ann}"
    health = lab.ok("GET", f"/v1/owner/connections/{ann}/diagnostics")["health"]
    assert (health["state"], health["reason_code"]) == ("blocked", "reconnect_required")
    assert health["remediation"] == command
    listed = {c["connection_id"]: c for c in lab.ok("GET", "/v1/owner/connections")["data"]}
    assert listed[ann]["health"]["reason_code"] == "reconnect_required"
    assert listed[ben]["health"]["state"] == "unknown"  # the other account is untouched
    shown = lab.cli("connections", "diagnostics", ann).stdout
    assert "blocked (reconnect_required)" in shown and f"do: {command}" in shown
    assert f"do: {command}" in lab.cli("connections", "show", ann).stdout

    # the wrong account cannot take the connection over, nor touch its credentials
    sealed = lab.sealed_rows(ann)
    wrong = lab.callback(lab.approve(lab.start(connection_id=ann), "ben"))
    assert wrong.status_code == 409 and "proves a different spotify_user_id" in wrong.text
    assert lab.sealed_rows(ann) == sealed
    assert lab.ops.health(lab.store.connection(ann)).reason == "reconnect_required"

    runs_before = [r.run_id for r in lab.runs(ann)]
    page = lab.callback(lab.approve(lab.start(connection_id=ann), "ann"))
    assert page.status_code == 200 and "Reconnected spotify" in page.text
    lab.remember_secrets(ann)
    assert [c.connection_id for c in lab.store.connections()] == [ann, ben]
    [recovered] = lab.ops.run(ann)
    assert recovered.status == "succeeded" and recovered.collection_mode == "incremental"
    assert [r.run_id for r in lab.runs(ann)][1:] == runs_before
    assert lab.ops.health(lab.store.connection(ann)).state == "healthy"
    # the reconnect used the settings stored with the connection (the double's endpoints)
    assert lab.store.connection_config(ann, "spotify").settings == lab.oauth_settings()


def test_a_token_pasted_connection_is_told_to_reconnect_without_oauth(lab: OAuthLab) -> None:
    """A refresh token refused for a connection whose path does not connect by OAuth."""
    lab.register(
        {
            "protocol_version": "0.1.0",
            "connector_key": "spotify-pasted",
            "version": "1.0.0",
            "display_name": "Spotify (pasted tokens)",
            "source": "spotify",
            "acquisition_method": "provider_api",
            "run": {"python": "ownstream.connectors.spotify.connector:collect"},
            "identity": {"claim": "spotify_user_id"},
            "setup": {
                "secrets": [
                    {"name": "access_token", "env": "SPOTIFY_ACCESS_TOKEN"},
                    {"name": "refresh_token", "env": "SPOTIFY_REFRESH_TOKEN"},
                    {"name": "client_id", "env": "SPOTIFY_CLIENT_ID"},
                ],
                "settings": [
                    {"name": "api_base_url", "env": "SPOTIFY_API_BASE_URL"},
                    {"name": "token_url", "env": "SPOTIFY_TOKEN_URL"},
                ],
            },
            "streams": [{"definition": "profile"}],
        }
    )
    token = lab.issue("ann")
    refresh = lab.double.issue_refresh_token("ann", client_id="pasted", client_secret=None)
    result = lab.ops.connect(
        "spotify-pasted",
        secrets={"access_token": token, "refresh_token": refresh, "client_id": "pasted"},
        settings=lab.settings(),
    )
    connection_id = result.connection.connection_id
    lab.double.expire_token(token)
    lab.double.revoke_access("ann", "pasted")
    [failed] = lab.ops.run(connection_id)
    assert failed.status == "failed"
    health = lab.ops.health(lab.store.connection(connection_id))
    assert health.reason == "reconnect_required"
    assert health.remediation == f"ownstream connect spotify-pasted --connection {connection_id}"
