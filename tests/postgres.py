"""A throwaway PostgreSQL server for tests: ``initdb`` in a temporary folder, ``pg_ctl`` on a
loopback port, trust authentication, removed afterwards. Debian's server binaries live in the
package's own folder (``/usr/lib/postgresql/<version>/bin``), not on PATH."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def server_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (PATH first, then Debian's versioned folders)."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """``start()`` a server in ``folder``; ``url(database)`` for SQLAlchemy / MLflow / Optuna; ``stop()``."""

    def __init__(self, user: str = "lm"):
        self.bin = server_binaries()
        if self.bin is None:
            raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        # its own folder in /tmp: pytest's temporary folders are private to root, and initdb refuses to
        # run as root, so the server runs as the `postgres` account then and must reach its folder
        self.folder = Path(tempfile.mkdtemp(prefix="lmtransfer-pg-", dir="/tmp"))
        self.user, self.port = user, _free_port()
        self.data = self.folder / "data"
        self.run_as = "postgres" if os.geteuid() == 0 else None

    def _run(self, *cmd: str) -> str:
        full = [str(self.bin / cmd[0]), *cmd[1:]]
        if self.run_as:
            full = ["runuser", "-u", self.run_as, "--", *full]
        done = subprocess.run(full, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> "PostgresServer":
        if self.run_as:
            account = pwd.getpwnam(self.run_as)
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "--no-sync", "-E", "UTF8")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"), "-w", "start")
        return self

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:  # CREATE DATABASE: no transaction
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)
