"""Per-connection secrets sealed at rest with AES-GCM.

The key lives in OWNSTREAM_SECRET_KEY (urlsafe base64 of 32 bytes), in the file named by
OWNSTREAM_SECRET_KEY_FILE, or in `secret.key` under the data directory, created on first use
with mode 0600. Processes sharing one PostgreSQL database must all read the same key: the same
variable, or the same file. Each sealed value is bound (as associated
data) to its connection, connector and name, so a value copied to a sibling's row won't open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ownstream.errors import CredentialUnavailable, InvalidRequest

KEY_ENV = "OWNSTREAM_SECRET_KEY"
KEY_FILE_ENV = "OWNSTREAM_SECRET_KEY_FILE"
NONCE_BYTES = 12


def fingerprint(value: str) -> str:
    """A short, non-reversible tag so an owner can tell two credentials apart."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]


class Vault:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise InvalidRequest("the secret key must be 32 bytes")
        self._aead = AESGCM(key)
        # a separate key for opaque read cursors, so a cursor can never open a credential
        self._cursors = AESGCM(hmac.new(key, b"ownstream cursors", hashlib.sha256).digest())

    @classmethod
    def for_home(cls, home: Path) -> Vault:
        from_env = os.environ.get(KEY_ENV)
        if from_env:
            return cls(base64.urlsafe_b64decode(from_env))
        named = os.environ.get(KEY_FILE_ENV)
        if named:
            return cls(base64.urlsafe_b64decode(Path(named).read_bytes().strip()))
        key_file = home / "secret.key"
        if not key_file.exists():
            home.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)))
        return cls(base64.urlsafe_b64decode(key_file.read_bytes().strip()))

    def seal_token(self, kind: str, payload: bytes) -> str:
        """Encrypt a cursor: clients can neither read its position nor forge one."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = nonce + self._cursors.encrypt(nonce, payload, kind.encode())
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open_token(self, kind: str, token: str) -> bytes | None:
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            return self._cursors.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], kind.encode())
        except (ValueError, InvalidTag):
            return None

    @staticmethod
    def _aad(connection_id: str, connector_key: str, name: str) -> bytes:
        return f"{connection_id}\n{connector_key}\n{name}".encode()

    def seal(self, connection_id: str, connector_key: str, name: str, value: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        aad = self._aad(connection_id, connector_key, name)
        return nonce + self._aead.encrypt(nonce, value.encode(), aad)

    def open(self, connection_id: str, connector_key: str, name: str, sealed: bytes) -> str:
        aad = self._aad(connection_id, connector_key, name)
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad).decode()
        except InvalidTag as exc:
            raise CredentialUnavailable(
                f"the stored {name!r} of connection {connection_id} cannot be opened with this "
                "server's key",
                connection_id=connection_id,
            ) from exc
