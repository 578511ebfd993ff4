"""`make demo`: the flagship scenario on a fresh machine, end to end.

Two Spotify accounts connect through the Web API (a local test double) by OAuth, as an owner
would: the authorization code flow with PKCE, the consent step driven the way a browser would
drive it, and the provider's redirect completed exactly as `serve`'s callback completes it. An
archive of the first account is imported and joins its connection by the `spotify-account`
identity rule, an archive with no identity becomes its own connection, a client is granted
`listening_history`, and `ownstream serve` starts. The owner console's sign-in link is printed
first, then the curl lines to try.

Set DEMO_NO_SERVE=1 to stop after setting up (the smoke test does).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ownstream.auth.console import PUBLIC_URL_SETTING, mint_link
from ownstream.dev import mail_demo
from ownstream.dev.spotify_data import generate_catalog, generate_user, write_archive
from ownstream.dev.spotify_double import SpotifyDouble
from ownstream.home import Home
from ownstream.owner import AccessOperations, ProviderOAuth
from ownstream.owner.provider_oauth import CALLBACK_PATH

DEMO_DIR = Path(os.environ.get("OWNSTREAM_DEMO_DIR", ".demo"))
SERVE_PORT = int(os.environ.get("OWNSTREAM_DEMO_PORT", "8765"))
DEMO_CLIENT_ID = "ownstream-demo"  # the app "registered" at the Spotify double


def _free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
            return port


def connect_by_oauth(
    flow: ProviderOAuth, double: SpotifyDouble, user_id: str, label: str, server: str
) -> str:
    """Connect one account of the double by OAuth; its connection id."""
    started = flow.start(
        "spotify",
        redirect_base=server,
        client_id=DEMO_CLIENT_ID,
        settings={
            "api_base_url": double.base_url,
            "token_url": f"{double.base_url}/api/token",
            "authorization_url": f"{double.base_url}/authorize",
        },
        display_name=label,
    )
    # the owner approves at Spotify, which redirects the browser to the server's callback
    callback = parse_qs(urlsplit(double.consent(started.authorization_url, user_id)).query)
    authorization = flow.complete(
        state=callback.get("state", [None])[0],
        code=callback.get("code", [None])[0],
        error=callback.get("error", [None])[0],
    )
    assert authorization.connection_id is not None
    return authorization.connection_id


def build(
    demo_dir: Path = DEMO_DIR, port: int = SERVE_PORT, *, keep_double: bool = False
) -> dict[str, object]:
    """Set up the whole scenario in `demo_dir`; returns what the banner prints. With
    `keep_double` the Spotify double keeps running (as `result["double"]`), so "run now" works
    while the demo serves; the caller stops it."""
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    archives = demo_dir / "archives"
    catalog = generate_catalog(seed=7)
    alice = generate_user("alice.k", seed=11, plays=4000, years=4.0, catalog=catalog)
    bob = generate_user("bob-listens", seed=12, plays=3000, years=3.0, catalog=catalog)
    carol = generate_user("carol.old", seed=13, plays=2500, years=5.0, catalog=catalog)
    alice_archive = write_archive(alice, archives / "alice", kind="extended")
    anonymous_archive = write_archive(carol, archives / "unknown", include_identity=False)

    home = Home(demo_dir / "home")
    runtime = home.runtime()
    double = SpotifyDouble([alice, bob], rotate_refresh_tokens=True)
    double.start()
    server = f"http://127.0.0.1:{port}"
    double.register_client(DEMO_CLIENT_ID, [server + CALLBACK_PATH])
    flow = ProviderOAuth(home)
    try:
        connections = {}
        for user, label in ((alice, "Alice's Spotify"), (bob, "Bob's Spotify")):
            connection_id = connect_by_oauth(flow, double, user.id, label, server)
            connections[user.id] = connection_id
            runtime.run_connection(connection_id)
        merged = runtime.import_artifact("spotify-export", alice_archive)
        separate = runtime.import_artifact("spotify-export", anonymous_archive)
        home.store.rename_connection(separate.receipt.connection_id, "Old archive (owner unknown)")
    except BaseException:
        double.stop()
        raise
    if not keep_double:
        double.stop()

    grant, token = AccessOperations(home).issue_grant(
        "demo-app",
        {
            "purpose_code": "https://ownstream.dev/purposes/listening_insights",
            "access_mode": "continuous",
            "streams": [
                {
                    "name": "listening_history",
                    "fields": ["played_at", "track_name", "artist_name", "album_name", "ms_played"],
                }
            ],
        },
    )
    return {
        "home": home,
        "double": double,
        "connections": connections,
        "merged": merged,
        "separate": separate,
        "grant_id": grant.grant_id,
        "client_token": token,
        "search_term": alice.plays[-1].track.artists[0].name.split()[-1],
    }


def banner(result: dict[str, object], port: int) -> str:
    home = result["home"]
    assert isinstance(home, Home)
    store = home.store
    lines = ["", "ownstream demo: what was collected", ""]
    counts = {(c.connection_id, c.stream): c.record_count for c in store.stream_counts()}
    for connection in store.connections():
        paths = ", ".join(f"{p.connector_key} ({p.acquisition_method})" for p in connection.paths)
        identity = (
            f"{connection.identity.claim}={connection.identity.value}"
            if connection.identity
            else "no proven identity"
        )
        plays = counts.get((connection.connection_id, "listening_history"), 0)
        lines.append(f"  {connection.connection_id}  {connection.display_name}")
        lines.append(f"      identity: {identity}")
        lines.append(f"      paths:    {paths}")
        lines.append(f"      listening_history: {plays} plays")
    merged, separate = result["merged"], result["separate"]
    lines += [
        "",
        f"  alice's archive → {merged.receipt.connection_id} (joined by rule spotify-account)",  # type: ignore[attr-defined]
        f"  unidentified archive → {separate.receipt.connection_id} (its own connection)",  # type: ignore[attr-defined]
        "",
        "  (Spotify's Web API exposes only the 50 most recent plays; years of history come from",
        "  the archive, and plays both paths report are one record, enriched by both.)",
        "",
        f"Client grant {result['grant_id']} (demo-app) reads listening_history from all three.",
        "Try, while the server runs:",
        "",
        f"  export TOKEN={result['client_token']}",
        f'  curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:{port}/v1/streams',
        f'  curl -s -H "Authorization: Bearer $TOKEN" '
        f"'http://127.0.0.1:{port}/v1/streams/listening_history/records?limit=5'",
        f'  curl -s -H "Authorization: Bearer $TOKEN" '
        f"'http://127.0.0.1:{port}/v1/streams/listening_history/records?limit=5&connection_id="
        f"{merged.receipt.connection_id}'",  # type: ignore[attr-defined]
        f'  curl -s -H "Authorization: Bearer $TOKEN" '
        f"'http://127.0.0.1:{port}/v1/search?q={result['search_term']}&limit=5'",
        f'  curl -s -H "Authorization: Bearer $TOKEN" '
        f"'http://127.0.0.1:{port}/v1/streams/listening_history/records?changes_since=beginning"
        "&limit=3'",
        "",
        "As the owner (provenance, paths, coverage):",
        f"  export OWNSTREAM_HOME={home.path.resolve()}",
        "  .venv/bin/ownstream connections list",
        f"  .venv/bin/ownstream connections show {merged.receipt.connection_id}",  # type: ignore[attr-defined]
        "  .venv/bin/ownstream runs list",
        "  OWNER=$(.venv/bin/ownstream token owner --ttl 3600 --label demo)  # expires in an hour",
        f'  curl -s -H "Authorization: Bearer $OWNER" http://127.0.0.1:{port}/v1/owner/connections',
        "",
    ]
    return "\n".join(lines)


def console_link(home: Home, url: str) -> str:
    """The owner console's one-time sign-in link, minted as `ownstream serve` does."""
    home.store.put_auth_setting(PUBLIC_URL_SETTING, url)
    return mint_link(home.store, url)


def main() -> None:
    port = _free_port(SERVE_PORT)
    url = f"http://127.0.0.1:{port}"
    serving = not os.environ.get("DEMO_NO_SERVE")
    result = build(port=port, keep_double=serving)
    home, double = result["home"], result["double"]
    assert isinstance(home, Home) and isinstance(double, SpotifyDouble)
    print(
        f"\nOwner console: {console_link(home, url)}\n"
        "  (one-time sign-in link; `ownstream console-link` mints a fresh one)",
        flush=True,
    )
    print(banner(result, port), flush=True)
    print(mail_demo.add_mailbox(home, DEMO_DIR / "mail", port=port), flush=True)
    if not serving:
        return
    import uvicorn

    from ownstream.api.app import create_app

    print(f"Serving on {url} (Ctrl-C to stop); the Spotify double stays up for runs", flush=True)
    try:
        uvicorn.run(create_app(home, url), host="127.0.0.1", port=port, log_level="warning")
    finally:
        double.stop()


if __name__ == "__main__":
    main()
