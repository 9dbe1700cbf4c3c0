"""Runs alike but for their seed, pooled on the compare page: the groups (algorithm,
task set and config equal, the seed aside), what labels them, and the mean and
Student-t 95% CI of their final metrics."""

from __future__ import annotations

import math
import re

import pytest
from django.urls import reverse
from scipy import stats

from apps.experiments.analysis.seeds import SeedRun, seed_groups
from apps.experiments.models import RunStatus
from tests.factories import ExperimentFactory, RunFactory, TaskSetVersionFactory, metric_points_add


def _seed_run(run_id, *, lr=0.01, seed=0, algorithm="maml", taskset="Sines v1", loss=None, acc=None):
    return SeedRun(
        run_id=run_id,
        algorithm=algorithm,
        taskset=taskset,
        config={"inner_lr": lr, "seed": seed, "family": {"name": "sinusoid"}},
        finals={"val_loss": loss, "val_accuracy": acc},
    )


def test_runs_alike_but_for_the_seed_are_pooled_with_a_t_interval():
    runs = [
        _seed_run(1, seed=0, loss=1.0),
        _seed_run(2, lr=0.1, seed=0, loss=4.0),
        _seed_run(3, seed=1, loss=2.0),
        _seed_run(4, lr=0.1, seed=1, loss=None),  # failed before its last evaluation
        _seed_run(5, seed=2, loss=3.0),
        _seed_run(6, algorithm="reptile", seed=0, loss=9.0),  # alone: not a group
    ]
    groups = seed_groups(runs, ["val_loss"])
    assert [g.run_ids for g in groups] == [[1, 3, 5], [2, 4]]
    assert [g.label for g in groups] == [
        {"algorithm": "maml", "inner_lr": "0.01"},
        {"algorithm": "maml", "inner_lr": "0.1"},
    ]
    pooled = groups[0].stats["val_loss"]
    assert pooled.n == 3 and pooled.mean == pytest.approx(2.0)
    assert pooled.half_width == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3))  # sd 1
    assert pooled.half_width == pytest.approx(2.4841, abs=1e-4)
    assert groups[1].stats["val_loss"] is None  # one value: no interval


def test_other_task_sets_are_other_groups_and_distinct_runs_make_none():
    runs = [_seed_run(i, seed=i % 2, taskset=f"Sines v{1 + i // 2}", loss=float(i)) for i in range(4)]
    groups = seed_groups(runs, ["val_loss"])
    assert [g.run_ids for g in groups] == [[0, 1], [2, 3]]
    assert [g.label for g in groups] == [{"taskset": "Sines v1"}, {"taskset": "Sines v2"}]
    assert seed_groups([_seed_run(1, lr=0.1), _seed_run(2, lr=0.2)], ["val_loss"]) == []


@pytest.mark.django_db
def test_the_compare_page_shows_the_groups(client, team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines")
    runs = []
    for lr, losses in ((0.01, (0.5, 0.7)), (0.1, (1.5, 2.5))):
        for seed, loss in enumerate(losses):
            run = RunFactory(
                experiment=experiment,
                taskset_version=version,
                status=RunStatus.SUCCEEDED,
                config={"inner_lr": lr, "seed": seed},
                seed=seed,
            )
            metric_points_add(run, [("val_loss", 10, loss)])
            runs.append(run)
    client.force_login(users["viewer"])
    url = reverse("experiments:run-compare", kwargs={"team_slug": team.slug})
    body = client.get(url, {"ids": ",".join(str(r.pk) for r in runs)}).content.decode()
    table = re.search(r'id="compare-seeds-table">(.*?)</table>', body, re.S).group(1)
    cells = re.findall(r'<td class="num" data-metric="val_loss">([^<]*)</td>', table)
    half = stats.t.ppf(0.975, 1) * (0.1 * math.sqrt(2)) / math.sqrt(2)  # t * sd / sqrt(n)
    assert cells == [f"0.6000 ± {half:.4f}", f"2.0000 ± {5 * half:.4f}"]
    assert "<code>inner_lr</code>" in table and "<code>0.1</code>" in table
    lone = client.get(url, {"ids": f"{runs[0].pk},{runs[2].pk}"}).content.decode()
    assert 'id="compare-seeds"' not in lone
