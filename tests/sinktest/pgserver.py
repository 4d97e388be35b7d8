"""A PostgreSQL server of a test's own (initdb + pg_ctl on a free port), to stop and restart at will.

The machine's main cluster is shared by every test, so outage tests never touch it.
As root, initdb refuses to run: the server is initialised and run as the `postgres`
system user (`runuser -u postgres`). It listens on 127.0.0.1 only, with trust
authentication, or scram-sha-256 over TCP when given a `password`; with `ssl_files`
(certificate, key) it also accepts TLS.

By default it runs with `synchronous_commit=off`: stopped in `immediate` mode, it
loses its last acknowledged commits, as a failover to an asynchronous replica would.
The sink must notice (its compare-and-set on stored offsets fails) and re-read what
the database no longer holds. `synchronous_commit=True` keeps every acknowledged commit.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from sinkframe.devservices import free_port


def server_bindir() -> Path | None:
    """Where initdb and pg_ctl are: $SINKFRAME_PG_BINDIR, the newest of Debian's, pg_config's, or PATH's."""
    given = os.environ.get("SINKFRAME_PG_BINDIR")
    if given:
        return Path(given)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
        if bindir and (Path(bindir) / "initdb").exists():
            return Path(bindir)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def skip_without_server_binaries() -> None:
    if server_bindir() is None:
        pytest.skip("no PostgreSQL server binaries (initdb/pg_ctl) on this machine")


class PrivatePostgres:
    """`with PrivatePostgres() as server:` (or init().start() ... destroy()); server.dsn() to connect."""

    def __init__(self, *, password: str | None = None, ssl_files: tuple[Path, Path] | None = None,
                 synchronous_commit: bool = False, bindir: Path | None = None,
                 settings: dict[str, str] | None = None):
        """`bindir`: another build's binaries (e.g. TimescaleDB's); `settings`: more server settings."""
        bindir = bindir or server_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl): install the Debian package "
                               "postgresql or set SINKFRAME_PG_BINDIR")
        self.bindir = bindir
        self.password = password
        self.ssl_files = ssl_files
        self.synchronous_commit = synchronous_commit
        self.settings = settings or {}
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="sinkframe-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._owner = None
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            self._owner = (entry.pw_uid, entry.pw_gid)
        self._give_to_postgres(self.root)

    def _give_to_postgres(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, *self._owner)

    def _run(self, program: str, *args: str) -> None:
        cmd = [str(self.bindir / program), *args]
        if self._owner is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                               f"\n{log}")

    def init(self) -> "PrivatePostgres":
        """initdb (the server is not started)."""
        args = ["-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync",
                "--auth-local=trust"]
        if self.password:
            pwfile = self.root / "pw"
            pwfile.write_text(self.password)
            self._give_to_postgres(pwfile)
            args += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            args += ["--auth-host=trust"]
        self._run("initdb", *args)
        if self.ssl_files:
            for src, name in zip(self.ssl_files, ("server.crt", "server.key")):
                shutil.copyfile(src, self.data / name)
                os.chmod(self.data / name, 0o600)
                self._give_to_postgres(self.data / name)
        return self

    def start(self) -> "PrivatePostgres":
        """Start, and return once a client can connect."""
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c shared_buffers=16MB -c max_connections=50 "
                   f"-c synchronous_commit={'on' if self.synchronous_commit else 'off'}")
        if self.ssl_files:
            options += " -c ssl=on"
        for name, value in self.settings.items():
            options += f" -c {name}={value}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "-o", options, "start")
        with psycopg.connect(self.dsn()):
            pass
        return self

    def stop(self, mode: str = "fast") -> None:
        """fast: disconnect clients and shut down cleanly; immediate: as a crash would."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "-m", mode, "stop")

    def destroy(self) -> None:
        """Stop (immediate) if running, and delete the server's files."""
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", **params: str) -> str:
        base = {"host": "127.0.0.1", "port": str(self.port), "user": "postgres", "dbname": dbname,
                "connect_timeout": "3"}
        if self.password:
            base["password"] = self.password
        return make_conninfo("", **{**base, **params})

    def __enter__(self) -> "PrivatePostgres":
        try:
            return self.init().start()
        except BaseException:
            self.destroy()
            raise

    def __exit__(self, *exc) -> None:
        self.destroy()
