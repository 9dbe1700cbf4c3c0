"""Start the real MetaWeb stack as subprocesses: daphne, Celery workers, Celery beat.

Shared by the end-to-end tests (``tests/e2e/conftest.py``) and the benchmarks
(``benchmarks/live_latency.py``, ``benchmarks/dispatch_latency.py``). Everything
listens on 127.0.0.1 only. Each process writes its stdout and stderr to one log
file, kept as an artifact; ``Proc.stop`` terminates, then kills, and never
leaves a process behind.

The processes run with the settings module ``tests.e2e.settings``: the test
settings, with ``DATA_DIR`` (checkpoints, uploads) taken from
``METAWEB_DATA_DIR`` so that the test process and every subprocess agree on it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SETTINGS_MODULE = "tests.e2e.settings"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(settings_dict: Mapping[str, object]) -> str:
    """A DATABASE_URL for a Django ``settings_dict`` (PostgreSQL)."""
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


_CLAIM = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('FLUSHDB')
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
LOCK_KEY = "metaweb:stack-lock"


@dataclass
class RedisClaim:
    """A Redis database held by one stack (one test session or benchmark) at a time."""

    url: str
    owner: str

    def release(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            client.eval(_RELEASE, 1, LOCK_KEY, self.owner)
        finally:
            client.close()


def claim_redis_db(
    candidates: tuple[int, ...], *, base: str = "redis://127.0.0.1:6379", ttl_s: int = 1800
) -> RedisClaim:
    """Take the first free Redis db of ``candidates`` and flush it, atomically.

    Several people (and CI) may run the e2e tests or a benchmark at once on one
    Redis: each stack gets a db of its own, so no worker takes another stack's
    tasks and no flush empties another stack's queues. The claim is a key in the
    db itself, expiring after ``ttl_s`` in case its holder dies.
    """
    import redis

    owner = f"{socket.gethostname()}:{os.getpid()}:{time.monotonic_ns()}"
    for db in candidates:
        if db == 0:
            raise ValueError("Redis db 0 belongs to the test settings; give the stack another")
        url = f"{base}/{db}"
        client = redis.Redis.from_url(url)
        try:
            if client.eval(_CLAIM, 1, LOCK_KEY, owner, ttl_s):
                return RedisClaim(url=url, owner=owner)
        finally:
            client.close()
    raise RuntimeError(f"every Redis db of {candidates} is held by another stack ({LOCK_KEY}); try later")


def stack_env(
    *, database_url: str, redis_url: str, data_dir: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of every stack process."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "METAWEB_DATA_DIR": str(data_dir),
            "METAWEB_DEV": "1",
            "PYTHONUNBUFFERED": "1",
            # The machine has 2 cores; one torch thread keeps the web process responsive.
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    env.pop("DJANGO_DEBUG", None)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set in the e2e test process only
    env.update(extra or {})
    return env


@dataclass
class Proc:
    """One stack process and its log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    _log_file: object = field(repr=False, default=None)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, *, timeout: float, start: int = 0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears in the log after offset ``start``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log(), start)
            if match:
                return match
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; log:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no {pattern!r} after {timeout:.0f} s; log:\n{self.tail()}")
            time.sleep(0.1)

    def tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def kill(self) -> None:
        """SIGKILL, as a crash would: no cleanup, no acknowledgement."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._close()

    def stop(self, *, grace: float = 5.0) -> None:
        """Terminate, then kill after ``grace`` seconds."""
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None


def spawn(name: str, argv: list[str], *, env: Mapping[str, str], log_dir: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log_file = open(log_path, "w", buffering=1)  # noqa: SIM115 - closed by Proc.stop
    popen = subprocess.Popen(
        argv, cwd=ROOT, env=dict(env), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    return Proc(name=name, popen=popen, log_path=log_path, _log_file=log_file)


def start_daphne(
    *,
    env: Mapping[str, str],
    log_dir: Path,
    app: str = "metaweb.asgi:application",
    port: int | None = None,
    name: str = "daphne",
) -> tuple[Proc, str]:
    """Start daphne on 127.0.0.1; returns the process and its base URL (not yet ready)."""
    port = port or free_port()
    argv = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), app]
    return spawn(name, argv, env=env, log_dir=log_dir), f"http://127.0.0.1:{port}"


def start_worker(
    *, env: Mapping[str, str], log_dir: Path, name: str = "worker", queues: str = "gpu,cpu"
) -> Proc:
    """Start one solo Celery worker (not yet ready: see :func:`wait_worker_ready`)."""
    argv = [
        str(BIN / "celery"),
        "-A",
        "metaweb",
        "worker",
        "-Q",
        queues,
        "-P",
        "solo",
        "--concurrency",
        "1",
        "-l",
        "INFO",
        "-n",
        f"{name}@%h",
        "--without-mingle",
        "--without-gossip",
    ]
    return spawn(name, argv, env=env, log_dir=log_dir)


def start_beat(*, env: Mapping[str, str], log_dir: Path, schedule_dir: Path, name: str = "beat") -> Proc:
    """Start Celery beat (the watchdog's schedule), its schedule file under ``schedule_dir``."""
    schedule_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(BIN / "celery"),
        "-A",
        "metaweb",
        "beat",
        "-l",
        "INFO",
        "--schedule",
        str(schedule_dir / "celerybeat-schedule"),
    ]
    return spawn(name, argv, env=env, log_dir=log_dir)


def wait_worker_ready(worker: Proc, *, timeout: float = 90.0) -> None:
    worker.wait_for_log(r"\bready\.", timeout=timeout)


def wait_http_ready(
    proc: Proc, base_url: str, *, path: str = "/accounts/login/", timeout: float = 60.0
) -> None:
    """Wait for HTTP 200 on ``path``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; log tail:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(base_url + path, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
                last = response.status
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{proc.name}: {base_url}{path} not 200 in {timeout:.0f} s ({last}):\n{proc.tail()}")


def stop_all(procs: list[Proc], *, grace: float = 5.0) -> None:
    """Terminate every process (workers first, so no task touches the database after
    this returns), wait up to ``grace`` seconds for them together, then kill the rest."""
    ordered = sorted(procs, key=lambda p: 0 if p.name.startswith("worker") else 1)
    for proc in ordered:
        if proc.alive():
            proc.popen.terminate()
    deadline = time.monotonic() + grace
    for proc in ordered:
        try:
            proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(timeout=10)
        proc._close()


# -- benchmarks: a database and a Django of their own --------------------------------

#: A benchmark's own database, one per process (created, then dropped at the end).
BENCH_DB_URL = os.environ.get(
    "METAWEB_BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/metaweb_bench_{os.getpid()}"
)
#: Redis dbs the benchmarks may claim (the e2e tests use 9, 12, 13; reporter_overhead.py 11).
BENCH_REDIS_DBS = (10, 14, 15)


def recreate_database(url: str) -> None:
    """Drop and create the database named by ``url`` (a benchmark's own, never a shared one)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[a-z0-9_]+", name) or "bench" not in name:
        raise ValueError(f"refusing to recreate database {name!r}: benchmarks use a *_bench* database")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def drop_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def setup_django(env: Mapping[str, str], *, migrate: bool = False) -> None:
    """Configure this process like the stack processes (same settings and env), then
    ``django.setup()``; optionally apply migrations."""
    for key in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "METAWEB_DATA_DIR", "METAWEB_DEV"):
        os.environ[key] = env[key]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)


def teardown(work: Path, *, ok: bool, database_url: str = BENCH_DB_URL) -> None:
    """After a benchmark: close Django's connections, drop its database, and remove its
    work folder (kept, with the processes' logs, when it failed)."""
    if "django" in sys.modules:
        from django.db import connections

        connections.close_all()
    drop_database(database_url)
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"logs kept in {work / 'logs'}", file=sys.stderr)


@contextmanager
def bench_django(prefix: str, *, redis_url: str) -> Iterator[Path]:
    """A fresh benchmark database (``BENCH_DB_URL``), migrated, with Django set up on
    it in this process; yields the work folder. Afterwards the database is dropped and
    the folder removed (kept, with its logs, when the block raised)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    env = stack_env(database_url=BENCH_DB_URL, redis_url=redis_url, data_dir=work)
    recreate_database(BENCH_DB_URL)
    ok = False
    try:
        setup_django(env, migrate=True)
        yield work
        ok = True
    finally:
        teardown(work, ok=ok)


def session_cookie(user) -> tuple[str, str]:
    """A logged-in session for ``user``, as (cookie name, value)."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# -- one benchmark's stack, from set-up to clean-up ------------------------------------------


@dataclass
class BenchStack:
    """What :func:`bench_stack` sets up: a work folder (logs), the environment for the
    stack's processes, and the processes started so far (stopped at the end). Set
    ``ok`` once the benchmark succeeded: the work folder is then removed."""

    work: Path
    env: dict[str, str]
    redis_url: str
    procs: list[Proc] = field(default_factory=list)
    ok: bool = False


@contextmanager
def bench_stack(name: str) -> Iterator[BenchStack]:
    """A fresh benchmark database and a Redis db of its own for the benchmark ``name``;
    at the end every process is stopped, the database dropped and the Redis db freed."""
    work = Path(tempfile.mkdtemp(prefix=f"metaweb-{name}-"))
    redis_db = claim_redis_db(BENCH_REDIS_DBS)
    env = stack_env(database_url=BENCH_DB_URL, redis_url=redis_db.url, data_dir=work)
    recreate_database(BENCH_DB_URL)
    stack = BenchStack(work=work, env=dict(env), redis_url=redis_db.url)
    try:
        yield stack
    finally:
        stop_all(stack.procs)
        teardown(work, ok=stack.ok)
        redis_db.release()


def bench_member(slug: str = "bench", *, username: str = "bench", role: str = "member"):
    """A team ``slug`` and its user ``username`` with ``role`` (a member by default;
    password: the factories'), in the benchmark's database (call after :func:`setup_django`)."""
    from tests.factories import MembershipFactory, TeamFactory, UserFactory

    team = TeamFactory(name="Bench", slug=slug)
    user = UserFactory(username=username)
    MembershipFactory(team=team, user=user, role=role)
    return team, user


def bench_experiment(*, team, user):
    """The team's task set "Sines" (its version) and experiment "Scale", made by ``user``."""
    from apps.experiments.models import Experiment
    from tests.factories import TaskSetVersionFactory

    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", created_by=user)
    return version, Experiment.objects.create(team=team, name="Scale", created_by=user)
