"""Two writers of one run's metric at once (PostgreSQL: SQLite serialises writers):
the second waits on the series' row lock until the first commits, then sees its
highest step and stores only what is new. The test waits on the database's lock
state, never on a sleep."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from apps.experiments.metric_store import points_append
from tests.experiments.test_annotations_race import wait_until_a_backend_waits_on_a_lock
from tests.factories import RunFactory, metric_points

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs concurrent writers (PostgreSQL)"),
]


def test_a_replay_written_at_the_same_time_neither_duplicates_nor_overwrites():
    run = RunFactory()
    points_append(run_id=run.pk, points=[("loss", 0, 1.0)])
    outcome: dict[str, object] = {}

    def the_new_attempt() -> None:  # steps 50..150 again, with other values
        try:
            outcome["stored"] = points_append(
                run_id=run.pk, points=[("loss", s, -1.0) for s in range(50, 151)]
            )
        except Exception as exc:  # reported below, with its type
            outcome["error"] = exc
        finally:
            connections.close_all()

    other = threading.Thread(target=the_new_attempt)
    with transaction.atomic():  # the old attempt's batch, holding the series' lock
        assert points_append(run_id=run.pk, points=[("loss", s, float(s)) for s in range(1, 101)]) == 100
        other.start()
        wait_until_a_backend_waits_on_a_lock()
    other.join(timeout=10)
    assert not other.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["stored"] == 50  # 101..150: the rest were the old attempt's
    stored = metric_points(run, "loss")
    assert sorted(stored) == list(range(151))
    assert stored[100] == 100.0 and stored[101] == -1.0
