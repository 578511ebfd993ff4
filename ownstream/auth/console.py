"""The owner's browser sign-in: one-time sign-in links, server-side sessions, CSRF tokens.

`ownstream serve` prints a link at start-up and `ownstream console-link` mints a fresh one (the
way Jupyter does it). Opening a link once turns it into a session whose id lives only in an
HttpOnly cookie; the database keeps hashes of links and session ids, so every serve process
recognises them and a stolen database reveals neither. A form's CSRF token is derived from the
session id, so it needs no storage and cannot be guessed without the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from urllib.parse import quote

from ownstream.clock import iso, now_iso, utc_now
from ownstream.grants.tokens import token_hash
from ownstream.store.base import Store

LINK_SECONDS = 3600
SESSION_SECONDS = 12 * 3600
SESSION_COOKIE = "ownstream_session"
PUBLIC_URL_SETTING = "public_url"
LOGIN_PATH = "/console/login"


def mint_link(store: Store, base_url: str, next_path: str | None = None) -> str:
    """A one-time sign-in URL, valid for `LINK_SECONDS`."""
    secret = secrets.token_urlsafe(32)
    store.save_console_link(token_hash(secret), iso(utc_now() + timedelta(seconds=LINK_SECONDS)))
    url = f"{base_url}{LOGIN_PATH}?token={secret}"
    if next_path:
        url += f"&next={quote(next_path, safe='/')}"
    return url


def sign_in(store: Store, link_secret: str) -> str | None:
    """Consume a sign-in link; the new session id, or None for an unknown or used link."""
    if not store.use_console_link(token_hash(link_secret), now_iso()):
        return None
    session_id = secrets.token_urlsafe(32)
    store.create_console_session(
        token_hash(session_id), iso(utc_now() + timedelta(seconds=SESSION_SECONDS))
    )
    return session_id


def session_is_valid(store: Store, session_id: str | None) -> bool:
    if not session_id:
        return False
    found = store.console_session(token_hash(session_id))
    return found is not None and found.ended_at is None and found.expires_at > now_iso()


def sign_out(store: Store, session_id: str) -> None:
    store.end_console_session(token_hash(session_id))


def csrf_token(session_id: str) -> str:
    return hmac.new(session_id.encode(), b"ownstream-csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_id: str, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(csrf_token(session_id), submitted)


def safe_next(path: str | None) -> str | None:
    """Only a local path may follow sign-in: never another site (no open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return None
    return path
