"""Two runs of a sweep end at once (PostgreSQL: SQLite serialises writers). Each
end calls ``sweep_advance``; the second waits on the sweep's row lock while the
first launches, then counts the runs again: the sweep never has more than
``max_concurrent`` runs queued or running. The test waits on the database's lock
state, never on a sleep."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from apps.experiments import services
from apps.experiments.models import Run, RunStatus
from tests.experiments.test_annotations_race import wait_until_a_backend_waits_on_a_lock
from tests.factories import SMALL_CONFIG, ExperimentFactory, TaskSetVersionFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs concurrent writers (PostgreSQL)"),
]


def test_two_runs_ending_at_once_launch_within_the_limit(team_roles, sent):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    version = TaskSetVersionFactory(taskset__team=team, taskset__family="sinusoid", params={})
    sweep = services.sweep_create(
        experiment=experiment,
        actor=users["member"],
        taskset_version=version,
        base_config={k: v for k, v in SMALL_CONFIG.items() if k != "family"},
        dimensions={"seed": "1..6 step 1"},
        strategy="grid",
        metric="val_loss",
        max_concurrent=2,
    )
    first, second = Run.objects.filter(sweep=sweep).order_by("pk")
    Run.objects.filter(pk__in=[first.pk, second.pk]).update(status=RunStatus.SUCCEEDED)
    outcome: dict[str, object] = {}

    def advance_in_another_session() -> None:
        try:
            outcome["launched"] = services.sweep_advance(sweep_id=sweep.pk)
        except Exception as exc:  # reported below, with its type
            outcome["error"] = exc
        finally:
            connections.close_all()

    other = threading.Thread(target=advance_in_another_session)
    with transaction.atomic():  # the first end's advance, holding the sweep's lock
        launched = services.sweep_advance(sweep_id=sweep.pk)
        other.start()
        wait_until_a_backend_waits_on_a_lock()
    other.join(timeout=10)
    assert not other.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert len(launched) == 2 and outcome["launched"] == []
    active = Run.objects.filter(sweep=sweep, status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
    assert active.count() == 2
    sweep.refresh_from_db()
    assert sweep.next_index == 4
