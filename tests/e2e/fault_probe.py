"""The fault tests' hands on a stack whose database is not the test database.

``tests/e2e/test_faults.py`` runs the stack on a PostgreSQL of its own (it restarts
it), which pytest-django's test database is not. So the test launches its run and
reads the outcome through this script, run as a subprocess with the stack's
environment (settings, ``DATABASE_URL``, ``REDIS_URL``), through the services and
selectors like any other caller:

* ``python -m tests.e2e.fault_probe launch SLUG ITERATIONS`` makes a team ``SLUG``,
  its member, a sinusoid task set and an experiment, launches a MAML run of
  ``ITERATIONS`` iterations on the CPU queue (``run_create``: queued, sent to the
  worker on commit), and prints ``{"run_id": ...}``;
* ``python -m tests.e2e.fault_probe report RUN_ID`` prints the run's status,
  attempts, step, error, event kinds and, per metric series (``run_metrics``), how
  many points it has, how many distinct steps, and the first and last step.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def launch(slug: str, iterations: int) -> dict[str, Any]:
    from apps.experiments.services import run_create
    from tests.factories import (
        SMALL_CONFIG,
        ExperimentFactory,
        MembershipFactory,
        TaskSetVersionFactory,
        TeamFactory,
        UserFactory,
    )

    team = TeamFactory(name=slug.title(), slug=slug)
    user = UserFactory(username=f"{slug}-member")
    MembershipFactory(team=team, user=user, role="member")
    version = TaskSetVersionFactory(taskset__team=team, taskset__created_by=user, taskset__name="Sines")
    experiment = ExperimentFactory(team=team, created_by=user, name="Faults")
    config = {
        **SMALL_CONFIG,
        "iterations": iterations,
        "eval_interval": iterations // 2,
        "eval_tasks": 10,
        "checkpoint_interval": 250,
        "device": "cpu",
    }
    run = run_create(experiment=experiment, actor=user, taskset_version=version, config=config, queue="cpu")
    return {"run_id": run.pk}


def report(run_id: int) -> dict[str, Any]:
    from apps.experiments.models import Run
    from apps.experiments.selectors import run_events, run_metrics

    run = Run.objects.get(pk=run_id)
    series = {
        name: {
            "points": len(points),
            "distinct_steps": len({int(step) for step, _ in points}),
            "first": int(points[0][0]) if points else None,
            "last": int(points[-1][0]) if points else None,
        }
        for name, points in run_metrics(run).items()
    }
    return {
        "status": run.status,
        "attempt": run.attempt,
        "step": run.step,
        "total_steps": run.total_steps,
        "error": run.error,
        "events": [event.kind for event in run_events(run=run)],
        "series": series,
    }


def main(argv: list[str]) -> None:
    import django

    django.setup()
    command, *args = argv
    if command == "launch":
        result = launch(args[0], int(args[1]))
    elif command == "report":
        result = report(int(args[0]))
    else:
        raise SystemExit(f"unknown command {command!r}: launch SLUG ITERATIONS | report RUN_ID")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
