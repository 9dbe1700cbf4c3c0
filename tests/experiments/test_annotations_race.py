"""Two members add the same new tag at once (PostgreSQL: SQLite serialises
writers, so the race cannot happen there). The second ``tag_add`` waits on the
unique index while the first is uncommitted, then reuses the committed tag
instead of failing. The test waits on the database's own lock state, never on
a sleep."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction

from apps.experiments import services
from apps.experiments.models import Tag
from tests.factories import ExperimentFactory, RunFactory, TaskSetVersionFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs concurrent writers (PostgreSQL)"),
]


def wait_until_a_backend_waits_on_a_lock(timeout_s: float = 10.0) -> None:
    """Poll ``pg_stat_activity`` until another session of this database is blocked
    on a lock. The caller is inside a transaction, where the statistics are a
    snapshot: it is cleared before each look."""
    deadline = time.monotonic() + timeout_s
    with connections["default"].cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return
            assert time.monotonic() < deadline, "the second tag_add never waited on the first"


def test_the_same_new_tag_added_twice_at_once_is_created_once(team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    version = TaskSetVersionFactory(taskset__team=team)
    first, second = (RunFactory(experiment=experiment, taskset_version=version) for _ in range(2))
    outcome: dict[str, object] = {}

    def add_in_another_session() -> None:
        try:
            outcome["tag"] = services.tag_add(target=second, actor=users["admin"], name="race")
        except Exception as exc:  # reported below, with its type
            outcome["error"] = exc
        finally:
            connections.close_all()

    holder = threading.Thread(target=add_in_another_session)
    with transaction.atomic():  # the first member's tag_add, not yet committed
        created = services.tag_add(target=first, actor=users["member"], name="race")
        holder.start()
        wait_until_a_backend_waits_on_a_lock()
    holder.join(timeout=10)
    assert not holder.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["tag"].pk == created.pk
    assert Tag.objects.filter(team=team, name="race").count() == 1
    assert list(second.tags.all()) == [created]
