"""The rows the run search tests search: three runs of one team and one of
another. Shared by test_search_compile and test_search_hostile."""

from __future__ import annotations

import datetime as dt
from typing import Any

from apps.experiments.models import Run, RunKind, RunStatus
from apps.experiments.search import run_search
from tests.factories import (
    SMALL_CONFIG,
    ExperimentFactory,
    RunFactory,
    TaskSetFactory,
    TaskSetVersionFactory,
    TeamFactory,
    UserFactory,
)

UTC = dt.UTC


def make_run(*, created: dt.datetime, config: dict[str, Any] | None = None, **fields: Any) -> Run:
    run = RunFactory(config={**SMALL_CONFIG, **(config or {})}, **fields)
    Run.objects.filter(pk=run.pk).update(created_at=created)
    run.refresh_from_db()
    return run


def make_runs() -> dict[str, Run]:
    """Three runs of one team, plus one of another team, by name."""
    team = TeamFactory()
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    sine = TaskSetVersionFactory(taskset=TaskSetFactory(team=team, name="Sine waves"))
    glyphs = TaskSetVersionFactory(taskset=TaskSetFactory(team=team, name="Glyphs 5-way"))
    baseline = ExperimentFactory(team=team, name="Sine baseline 100%", created_by=alice)
    ablation = ExperimentFactory(team=team, name="Glyph_ablation", created_by=bob)
    succeeded = make_run(
        experiment=baseline,
        taskset_version=sine,
        launched_by=alice,
        status=RunStatus.SUCCEEDED,
        seed=7,
        step=20,
        config={"inner_lr": 0.01, "first_order": False, "family": {"name": "sinusoid"}, "note": "alpha"},
        summary={"metrics": {"loss": 0.2}, "val": {"val_loss": 0.25}, "step": 20},
        created=dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        started_at=dt.datetime(2026, 11, 2, 9, 1, tzinfo=UTC),
        finished_at=dt.datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
    )
    failed = make_run(
        experiment=ablation,
        taskset_version=glyphs,
        launched_by=bob,
        algorithm="protonet",
        status=RunStatus.FAILED,
        seed=8,
        step=5,
        config={"inner_lr": 0.1, "first_order": True, "family": {"name": "glyphs"}, "note": "beta"},
        error="CUDA out of memory at step 5",
        created=dt.datetime(2026, 11, 1, 0, 0, tzinfo=UTC),
        started_at=dt.datetime(2026, 11, 1, 0, 5, tzinfo=UTC),
        finished_at=dt.datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC),
    )
    queued = make_run(
        experiment=baseline,
        taskset_version=sine,
        launched_by=alice,
        kind=RunKind.ADAPT,
        queue="gpu",
        seed=9,
        config={"inner_lr": "fast", "contains": 3, "isnull": 1},
        summary={"final": {"query_loss": 0.1}},
        created=dt.datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC),
    )
    outsider = make_run(
        experiment=ExperimentFactory(name="Sine baseline elsewhere"),
        status=RunStatus.SUCCEEDED,
        created=dt.datetime(2026, 11, 2, tzinfo=UTC),
    )
    return {"succeeded": succeeded, "failed": failed, "queued": queued, "outsider": outsider}


def names(runs: dict[str, Run], query: str) -> set[str]:
    """Which of the team's runs match ``query``."""
    team_runs = Run.objects.filter(team_id=runs["succeeded"].team_id)
    found = set(run_search(queryset=team_runs, query=query).values_list("pk", flat=True))
    return {name for name, run in runs.items() if run.pk in found}


ALL = {"succeeded", "failed", "queued"}
