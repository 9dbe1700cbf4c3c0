"""A PostgreSQL and a Redis of a test's own, to restart mid-run.

The machine's shared PostgreSQL and Redis serve everyone (other test sessions, CI),
so a fault test never restarts them: it starts its own on a free port in a temporary
folder, points the stack at them, and restarts those.

* :class:`PrivatePostgres`: ``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/*/bin``
  (run as the ``postgres`` user when this process is root: PostgreSQL refuses to run
  as root), trust authentication, listening on 127.0.0.1 only, durability off (a test
  cluster). :meth:`PrivatePostgres.restart` is ``pg_ctl restart -m fast``: every
  connection is ended ("terminating connection due to administrator command").
* :class:`PrivateRedis`: ``redis-server`` with no persistence (``save ""``, no AOF);
  :meth:`PrivateRedis.restart` shuts it down without saving and starts it empty on
  the same port.

:func:`missing_binaries` says why a test must skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._stack import free_port

PG_USER = "postgres"


def _pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def missing_binaries(*, postgres: bool = False, redis: bool = False) -> str | None:
    """Why a private server cannot be started here, or None."""
    if postgres:
        if _pg_bin() is None:
            return "PostgreSQL server binaries (initdb, pg_ctl) not in /usr/lib/postgresql/*/bin"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(PG_USER)
            except KeyError:
                return f"running as root and there is no {PG_USER!r} user to run PostgreSQL as"
    if redis and shutil.which("redis-server") is None:
        return "redis-server not installed"
    return None


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster in a temporary folder, on a free port of 127.0.0.1."""

    port: int = field(default_factory=free_port)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="metaweb-pg-")))
    _options: str = ""

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    def url(self, database: str) -> str:
        return f"postgres://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        """Run a PostgreSQL tool; its output (and a server it starts: it inherits the
        descriptors) goes to the cluster's log file, never to a pipe we would wait on."""
        with open(self.folder / "tools.log", "a") as out:
            if os.geteuid() == 0:
                shutil.chown(self.folder / "tools.log", user=PG_USER)
            subprocess.run(
                _as_postgres(list(argv)),
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                cwd="/",
            )

    def start(self) -> PrivatePostgres:
        bin_dir = _pg_bin()
        assert bin_dir is not None, missing_binaries(postgres=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, user=PG_USER)
        self._run(str(bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", PG_USER, "-E", "UTF8")
        self._options = options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start"
        )
        return self

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` (a copy of ``template`` if given); its URL."""
        import psycopg
        from psycopg import sql

        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(query)
        return self.url(name)

    def restart(self, *, down_for: float = 0.0) -> float:
        """``pg_ctl restart -m fast``: every connection is ended ("terminating connection
        due to administrator command"); with ``down_for``, the server stays down that
        many seconds first (stop, wait, start), as a slower restart or a failover
        would. Waits until it accepts connections again; returns the seconds it took."""
        bin_dir = _pg_bin()
        assert bin_dir is not None
        started = time.monotonic()
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w"]
        if down_for <= 0:
            self._run(*pg_ctl, "-m", "fast", "restart")
        else:
            self._run(*pg_ctl, "-m", "fast", "stop")
            time.sleep(down_for)
            self._run(*pg_ctl, "-o", self._options, "start")
        return time.monotonic() - started

    def stop(self) -> None:
        bin_dir = _pg_bin()
        if bin_dir is not None and (self.data / "postmaster.pid").exists():
            try:
                self._run(str(bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except subprocess.SubprocessError:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class PrivateRedis:
    """A redis-server without persistence on a free port of 127.0.0.1."""

    port: int = field(default_factory=free_port)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="metaweb-redis-")))
    _proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        log = open(self.folder / "redis.log", "a")  # noqa: SIM115 - closed with the process
        self._proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 20) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while True:
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
            try:
                if client.ping():
                    return
            except redis.exceptions.ConnectionError:
                pass
            finally:
                client.close()
            assert self._proc is not None and self._proc.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, f"redis-server not ready on port {self.port}"
            time.sleep(0.05)

    def _shutdown(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()  # no persistence configured: nothing is saved
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)

    def restart(self) -> float:
        """Stop the server (its data is gone) and start an empty one on the same port."""
        started = time.monotonic()
        self._shutdown()
        self.start()
        return time.monotonic() - started

    def stop(self) -> None:
        self._shutdown()
        shutil.rmtree(self.folder, ignore_errors=True)
