"""A throw-away Dovecot IMAP server from the system's packages, for tests, the demo and bench.

It runs as its own process with a configuration in a temporary folder: IMAP over TLS (a
self-signed certificate made with `cryptography`) on a free loopback port and IMAP with
STARTTLS on another, users in a passwd-file, Maildir storage. Run as root it uses the
`dovecot` and `dovenull` users the Debian package creates; run as anyone else it runs
entirely as that user.
"""

from __future__ import annotations

import datetime as dt
import grp
import ipaddress
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ownstream.dev.processes import stop_process

BINARY_CANDIDATES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")
START_TIMEOUT_SECONDS = 20.0
PASSWD_RELOAD_SECONDS = 1.1


def find_binary() -> str | None:
    """The dovecot binary, or None when Dovecot is not installed."""
    found = shutil.which("dovecot")
    if found:
        return found
    return next((c for c in BINARY_CANDIDATES if os.access(c, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_certificate(folder: Path, *, name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for `name` and 127.0.0.1, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class DovecotUnavailable(Exception):
    """Dovecot is not installed here, or would not start; the message says which."""


class Dovecot:
    """One running Dovecot. Use as a context manager, or `start()` and `stop()`."""

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or find_binary()
        self.root = Path(tempfile.mkdtemp(prefix="ownstream-dovecot-"))
        self.port = 0
        self.starttls_port = 0
        self.host = "127.0.0.1"
        self.certificate = self.root / "server.pem"
        self._process: subprocess.Popen[bytes] | None = None
        self._passwd = self.root / "passwd"
        self._mail_user = self._service_user = self._login_user = ""

    # lifecycle --------------------------------------------------------------------------------
    def start(self) -> Dovecot:
        if self.binary is None:
            raise DovecotUnavailable("the dovecot binary is not installed (apt: dovecot-imapd)")
        self.root.chmod(0o755)  # the mail and login users must reach their files
        if os.geteuid() == 0:
            self._mail_user, self._service_user, self._login_user = "dovecot", "dovecot", "dovenull"
        else:
            me = pwd.getpwuid(os.geteuid()).pw_name
            self._mail_user = self._service_user = self._login_user = me
        for name in ("run", "state", "mail"):
            (self.root / name).mkdir()
        mail_owner = pwd.getpwnam(self._mail_user)
        os.chown(self.root / "mail", mail_owner.pw_uid, mail_owner.pw_gid)
        write_certificate(self.root)
        self._passwd.write_text("")
        self.port, self.starttls_port = _free_port(), _free_port()
        config = self.root / "dovecot.conf"
        config.write_text(self._config(mail_owner.pw_uid, mail_owner.pw_gid))
        log = (self.root / "stderr.log").open("wb")
        self._process = subprocess.Popen(
            [self.binary, "-F", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self._wait_ready()
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, grace=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DovecotUnavailable(f"dovecot exited at start:\n{self.log_tail()}")
            try:
                with (
                    socket.create_connection((self.host, self.port), timeout=1) as raw,
                    self.ssl_context().wrap_socket(raw, server_hostname=self.host) as tls,
                ):
                    if tls.recv(64).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise DovecotUnavailable(f"dovecot did not answer within {START_TIMEOUT_SECONDS:.0f} s")

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for name in ("stderr.log", "dovecot.log"):
            path = self.root / name
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # users and clients ------------------------------------------------------------------------
    def add_user(self, username: str, password: str) -> None:
        """Add a mailbox user. Dovecot looks at its passwd-file at most once a second, so a
        user added after the first login may take a second to be known: add users first."""
        with self._passwd.open("a") as handle:
            handle.write(f"{username}:{{PLAIN}}{password}\n")

    def set_password(self, username: str, password: str) -> None:
        """Change a user's password, as when the owner changes it at their provider; returns
        once Dovecot must have noticed (it re-reads the passwd-file at most once a second)."""
        lines = self._passwd.read_text().splitlines()
        kept = [line for line in lines if not line.startswith(f"{username}:")]
        self._passwd.write_text("\n".join([*kept, f"{username}:{{PLAIN}}{password}"]) + "\n")
        time.sleep(PASSWD_RELOAD_SECONDS)

    def imap_settings(self, username: str) -> dict[str, str]:
        """The settings of an `imap` connection to this server for `username`."""
        return {
            "host": self.host,
            "port": str(self.port),
            "username": username,
            "ca_file": str(self.certificate),
        }

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.certificate))

    def _config(self, uid: int, gid: int) -> str:
        root = self.root
        return f"""
base_dir = {root}/run
state_dir = {root}/state
instance_name = ownstream-{os.getpid()}-{self.port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.key
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
auth_failure_delay = 0
disable_plaintext_auth = yes
default_internal_user = {self._service_user}
default_internal_group = {grp.getgrgid(pwd.getpwnam(self._service_user).pw_gid).gr_name}
default_login_user = {self._login_user}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:~/Maildir:LAYOUT=fs
mail_plugins =
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self._passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""
