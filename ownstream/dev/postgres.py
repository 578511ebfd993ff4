"""A throw-away PostgreSQL cluster from the system's server binaries, for tests and bench.

`initdb` into a temporary folder, then `postgres` on a free loopback port (its socket in the
same folder). PostgreSQL refuses to run as root, so run as root the cluster belongs to the
`postgres` user the Debian package creates; run as anyone else it runs as that user. The
superuser `ownstream` connects from loopback without a password; the role `ownstream_pw`
(created by `add_password_role`) must give a SCRAM password, so the password-file path of
`OWNSTREAM_DATABASE_URL` can be tested for real.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

from ownstream.dev.processes import stop_process

START_TIMEOUT_SECONDS = 30.0
SUPERUSER = "ownstream"
PASSWORD_ROLE = "ownstream_pw"
# Throw-away data: nothing survives a crash, so nothing is flushed (tests and the scale bench
# compare processes against each other on the same cluster, not against a durable baseline).
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def find_bindir() -> Path | None:
    """The folder holding `initdb` and `postgres` (the newest installed major version)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresUnavailable(Exception):
    """PostgreSQL is not installed here, or would not start; the message says which."""


class PostgresCluster:
    """One running throw-away cluster. Use as a context manager, or `start()` and `stop()`."""

    def __init__(
        self, *, settings: dict[str, str] | None = None, max_connections: int = 300
    ) -> None:
        self.bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="ownstream-postgres-"))
        self.data = self.root / "data"
        self.host = "127.0.0.1"
        self.port = 0
        self.settings = {
            **FAST_SETTINGS,
            "max_connections": str(max_connections),
            **(settings or {}),
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._user: str | None = None

    # lifecycle --------------------------------------------------------------------------------
    def start(self) -> PostgresCluster:
        if self.bindir is None:
            raise PostgresUnavailable("no initdb (apt-get install postgresql)")
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable(
                    "running as root and there is no `postgres` user to run the server as"
                ) from exc
            self._user = "postgres"
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.port = _free_port()
        initdb = self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        )
        if initdb.returncode != 0:
            raise PostgresUnavailable(f"initdb failed:\n{initdb.stdout.decode(errors='replace')}")
        (self.data / "pg_hba.conf").write_text(
            f"local all {SUPERUSER} trust\n"
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        options = [f"-c{name}={value}" for name, value in self.settings.items()]
        log = (self.root / "server.log").open("wb")
        self._process = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                f"unix_socket_directories={self.root}",
                *options,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self._user,
        )
        log.close()
        self._wait_ready()
        return self

    def _run(self, command: list[str]) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, user=self._user,
            check=False, cwd=self.root,
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            # SIGTERM is postgres' "fast" shutdown ("smart" would wait for its clients)
            stop_process(process, grace=20)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
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
                raise PostgresUnavailable(f"postgres exited at start:\n{self.log_tail()}")
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.stop()
        raise PostgresUnavailable(f"postgres did not answer within {START_TIMEOUT_SECONDS:.0f} s")

    def log_tail(self, lines: int = 30) -> str:
        path = self.root / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # databases ---------------------------------------------------------------------------------
    def url(self, database: str, user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str, *, owner: str = SUPERUSER) -> str:
        """A new empty database; its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return self.url(name, owner)

    def drop_database(self, name: str) -> None:
        """Drop a database, cutting off whoever is still connected to it."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def add_password_role(self, password: str) -> str:
        """The role `ownstream_pw`, which must log in with this password; its name."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP ROLE IF EXISTS {PASSWORD_ROLE}")
            admin.execute(
                psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    psycopg.sql.Identifier(PASSWORD_ROLE), psycopg.sql.Literal(password)
                )
            )
        return PASSWORD_ROLE
