"""Check that PostgreSQL and Redis answer, and say how to start them if not."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

START_HINTS = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": ('redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'),
}


class Command(BaseCommand):
    help = "Wait up to --timeout seconds for the database and Redis, then fail with a clear message."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--timeout", type=float, default=10.0)

    def handle(self, *args, timeout: float, **options) -> None:
        deadline = time.monotonic() + timeout
        problems = self._problems()
        while problems and time.monotonic() < deadline:
            time.sleep(0.5)
            problems = self._problems()
        if problems:
            lines = [
                f"{name} is unreachable at {where}: {err}\n  start it with: {START_HINTS[name]}"
                for name, where, err in problems
            ]
            raise CommandError("\n".join(lines))
        self.stdout.write("PostgreSQL and Redis are reachable.")

    def _problems(self) -> list[tuple[str, str, str]]:
        problems = []
        db = settings.DATABASES["default"]
        if db["ENGINE"].endswith("postgresql"):
            # The server, through its maintenance database: the named database may
            # not exist yet (pytest creates its own test database).
            import psycopg

            try:
                psycopg.connect(
                    dbname="postgres",
                    host=db.get("HOST") or None,
                    port=db.get("PORT") or None,
                    user=db.get("USER") or None,
                    password=db.get("PASSWORD") or None,
                    connect_timeout=3,
                ).close()
            except Exception as exc:  # noqa: BLE001 - report whatever stops the connection
                problems.append(("PostgreSQL", f"{db.get('HOST')}:{db.get('PORT')}", str(exc).strip()))
        if settings.REDIS_URL:
            import redis

            try:
                redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
            except Exception as exc:  # noqa: BLE001
                problems.append(("Redis", settings.REDIS_URL, str(exc).strip()))
        return problems
