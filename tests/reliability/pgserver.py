"""A PostgreSQL server of a test's own (initdb + pg_ctl), to stop and restart at will.

The machine's main cluster is shared by every test running concurrently, so the
outage tests never touch it. As root, initdb refuses to run: the server is
initialised and run as the `postgres` system user (`runuser -u postgres`).

It runs with `synchronous_commit=off`: stopped in `immediate` mode, it loses its
last acknowledged commits, as a failover to an asynchronous replica would. The
sink must notice (its compare-and-set on stored offsets fails) and re-read what
the database no longer holds.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from psycopg.conninfo import make_conninfo

from sinkframe.devservices import free_port


def server_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    def __init__(self, *, password: str | None = None, ssl_files: tuple[Path, Path] | None = None):
        bindir = server_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) found")
        self.bindir = bindir
        self.password = password
        self.ssl_files = ssl_files
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="sinkframe-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> None:
        cmd = ["runuser", "-u", "postgres", "--", *args] if self._as_postgres else list(args)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                               f"\n{self.log.read_text() if self.log.exists() else ''}")

    def init(self) -> "PrivatePostgres":
        args = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                "--locale=C", "--no-sync", "--auth-local=trust"]
        if self.password:
            pwfile = self.root / "pw"
            pwfile.write_text(self.password)
            self._give_to_postgres(pwfile)
            args += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            args += ["--auth-host=trust"]
        self._run(*args)
        if self.ssl_files:
            for src, name in zip(self.ssl_files, ("server.crt", "server.key")):
                shutil.copyfile(src, self.data / name)
                os.chmod(self.data / name, 0o600)
                self._give_to_postgres(self.data / name)
        return self

    def _give_to_postgres(self, path: Path) -> None:
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> "PrivatePostgres":
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c shared_buffers=16MB -c synchronous_commit=off "
                   "-c max_connections=30")
        if self.ssl_files:
            options += " -c ssl=on"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                  "-o", options, "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """fast: disconnect clients and shut down cleanly; immediate: as a crash would."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", "-m", mode, "stop")

    def dsn(self, dbname: str = "postgres", **params: str) -> str:
        base = {"host": "127.0.0.1", "port": str(self.port), "user": "postgres", "dbname": dbname,
                "connect_timeout": "3"}
        if self.password:
            base["password"] = self.password
        return make_conninfo("", **{**base, **params})

    def __enter__(self) -> "PrivatePostgres":
        return self.init().start()

    def __exit__(self, *exc) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
