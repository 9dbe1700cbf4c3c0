"""End-to-end harness: the real stack, driven by headless Chromium.

``live_stack`` commits data through pytest-django's test database
(``transactional_db``, so other processes see it) and starts, as subprocesses
pointed at that database and at a Redis db of their own (flushed first):

* daphne serving ``metaweb.asgi.application`` (wrapped to serve /static/,
  see ``tests/e2e/asgi_static.py``), ready when /accounts/login/ answers 200;
* one solo Celery worker on the ``gpu`` and ``cpu`` queues, ready when its log
  says so, with 1 s heartbeats and a short heartbeat timeout;
* on request (``live_stack.start_beat()``), Celery beat for the watchdog.

Teardown stops them (terminate, then kill) before ``transactional_db`` flushes
the database: the fixture depends on it, so it is torn down first. Their logs,
the browser's console and screenshots (each major step, and on failure) are kept
under ``artifacts/e2e/<test name>/``.

Run with ``pytest -m e2e tests/e2e``. Needs PostgreSQL, Redis and
``/usr/bin/chromium`` (Debian's ``chromium``); tests skip without Chromium.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks._stack import (
    ROOT,
    Proc,
    claim_redis_db,
    database_url,
    stack_env,
    start_beat,
    start_daphne,
    start_worker,
    stop_all,
    wait_http_ready,
    wait_worker_ready,
)

ARTIFACTS = ROOT / "artifacts" / "e2e"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Redis dbs an e2e stack may claim (Celery broker and channel layer): the first free
#: one is taken and flushed, so concurrent test sessions on one Redis never meet.
E2E_REDIS_DBS = (9, 12, 13)
#: Heartbeats every second; a worker silent for this long is presumed dead (a busy
#: 2-core machine can delay a beat by a second or two: no false requeue before the kill).
HEARTBEAT_TIMEOUT_SECONDS = 5
PASSWORD = "pw-for-tests-1"  # tests.factories.UserFactory's


def _slug(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::")[-1])[:80]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell a failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@dataclass
class Shots:
    """Numbered screenshots of one test, in ``artifacts/e2e/<test>/``."""

    folder: Path
    count: int = 0

    def take(self, page, step: str, *, full_page: bool = True) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{step}.png"
        try:
            page.screenshot(path=str(path), full_page=full_page)
        except Exception as exc:  # a screenshot must never hide the real failure
            (self.folder / f"{self.count:02d}-{step}.error.txt").write_text(repr(exc))
        return path


@dataclass
class LiveStack:
    base_url: str
    env: dict[str, str]
    log_dir: Path
    data_dir: Path
    procs: list[Proc] = field(default_factory=list)
    worker: Proc | None = None
    _workers_started: int = 0

    @property
    def ws_base(self) -> str:
        return self.base_url.replace("http://", "ws://", 1)

    def start_worker(self, *, wait: bool = True) -> Proc:
        self._workers_started += 1
        worker = start_worker(env=self.env, log_dir=self.log_dir, name=f"worker{self._workers_started}")
        self.procs.append(worker)
        self.worker = worker
        if wait:
            wait_worker_ready(worker)
        return worker

    def start_beat(self) -> Proc:
        beat = start_beat(env=self.env, log_dir=self.log_dir, schedule_dir=self.data_dir / "beat")
        self.procs.append(beat)
        beat.wait_for_log(r"beat: Starting", timeout=60)
        return beat

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.kill()


@pytest.fixture
def e2e_artifacts(request) -> Path:
    folder = ARTIFACTS / _slug(request.node.nodeid)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def live_stack(transactional_db, settings, e2e_artifacts) -> Iterator[LiveStack]:
    """daphne + one Celery worker on the committed test database. See the module docstring."""
    from django.db import connection

    redis_db = claim_redis_db(E2E_REDIS_DBS)
    data_dir = Path(settings.DATA_DIR)  # the per-test folder from the root conftest
    data_dir.mkdir(parents=True, exist_ok=True)
    env = stack_env(
        database_url=database_url(connection.settings_dict),
        redis_url=redis_db.url,
        data_dir=data_dir,
        extra={
            "METAWEB_HEARTBEAT_SECONDS": "1",
            "METAWEB_HEARTBEAT_TIMEOUT_SECONDS": str(HEARTBEAT_TIMEOUT_SECONDS),
            "METAWEB_WATCHDOG_INTERVAL_SECONDS": "1",
        },
    )
    # The test process reads the same timeout (services compare heartbeats with it).
    settings.HEARTBEAT_TIMEOUT_SECONDS = HEARTBEAT_TIMEOUT_SECONDS

    daphne, base_url = start_daphne(env=env, log_dir=e2e_artifacts, app="tests.e2e.asgi_static:application")
    stack = LiveStack(base_url=base_url, env=env, log_dir=e2e_artifacts, data_dir=data_dir, procs=[daphne])
    try:
        stack.start_worker(wait=False)  # both import in parallel
        wait_http_ready(daphne, base_url)
        assert stack.worker is not None
        wait_worker_ready(stack.worker)
        yield stack
    finally:
        # Before transactional_db's flush: no process may hold a connection or a lock then.
        stop_all(stack.procs)
        redis_db.release()


@pytest.fixture(scope="package")
def chromium():
    """One browser for the e2e package, closed when the package ends: while it is
    open an event loop runs in this thread, which would break later synchronous
    tests that use ``async_to_sync`` (the root conftest also runs e2e tests last)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread while it lives. The
    # test's ORM calls (and pytest-django's flushes) are still plain synchronous
    # code, so Django's guard against async contexts is lifted meanwhile, in this
    # process only (stack_env drops the variable from the subprocesses).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def e2e_page(request, chromium, e2e_artifacts):
    """A fresh browser context and page. Console messages and page errors are written
    to ``console.log``; a failing test leaves a ``failure.png``."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{time.strftime('%H:%M:%S')} {msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"{time.strftime('%H:%M:%S')} PAGEERROR: {exc}"))
    page.console_log = console  # type: ignore[attr-defined]
    page.shots = Shots(e2e_artifacts)  # type: ignore[attr-defined]
    yield page
    reports = [getattr(request.node, f"rep_{when}", None) for when in ("setup", "call")]
    failed = any(report is not None and report.failed for report in reports)
    if failed:
        try:
            page.screenshot(path=str(e2e_artifacts / "failure.png"), full_page=True)
            (e2e_artifacts / "failure.html").write_text(page.content())
        except Exception as exc:
            (e2e_artifacts / "failure.error.txt").write_text(repr(exc))
    (e2e_artifacts / "console.log").write_text("\n".join(console) + "\n")
    context.close()


@pytest.fixture
def e2e_user(transactional_db):
    """A member of team ``lab`` (committed, so daphne sees it)."""
    from apps.teams.models import Role
    from tests.factories import MembershipFactory, TeamFactory, UserFactory

    team = TeamFactory(name="Lab", slug="lab")
    user = UserFactory(username="ada")
    MembershipFactory(team=team, user=user, role=Role.ADMIN)
    return user, team
