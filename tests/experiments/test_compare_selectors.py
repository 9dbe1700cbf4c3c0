"""The compare page's reads, on PostgreSQL and SQLite: one team's runs, summaries
and curves in a fixed number of queries, only the requested range read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.experiments import compare_selectors as compare
from apps.experiments.models import Run, RunStatus
from apps.experiments.search import QueryError
from tests.factories import ExperimentFactory, RunFactory, metric_points_add

pytestmark = pytest.mark.django_db


def _runs(count, *, team=None, steps=50, spike=None):
    experiment = ExperimentFactory(team=team) if team else ExperimentFactory()
    start = timezone.now() - timedelta(seconds=100)
    runs = []
    for i in range(count):
        run = RunFactory(
            experiment=experiment,
            config={"inner_lr": 0.01 * (i + 1), "ways": 5},
            status=RunStatus.SUCCEEDED,
            started_at=start,
            finished_at=start + timedelta(seconds=steps * 2),
            step=steps,
            summary={"metrics": {"loss": 1.0 / (i + 1)}, "val": {"accuracy": 0.5 + 0.1 * i}},
        )
        metric_points_add(
            run,
            [("loss", s, 500.0 if (i, s) == spike else 10.0 / (s + i + 1)) for s in range(1, steps + 1)]
            + [("val_accuracy", s, s / steps) for s in range(10, steps + 1, 10)],
        )
        runs.append(run)
    return experiment.team, runs


def test_ids_parse_keeps_order_and_names_the_problem():
    assert compare.compare_ids_parse("3, 1,2,3") == [3, 1, 2]
    with pytest.raises(compare.CompareError, match="at least 2"):
        compare.compare_ids_parse("4")
    with pytest.raises(compare.CompareError, match="at most 20"):
        compare.compare_ids_parse(",".join(str(i) for i in range(1, 22)))
    with pytest.raises(compare.CompareError, match="'x1' is not a run number"):
        compare.compare_ids_parse("1,x1")
    with pytest.raises(compare.CompareError) as error:
        compare.compare_ids_parse("")
    assert error.value.field == "ids"


def test_runs_get_keeps_order_and_treats_other_teams_as_missing(django_assert_num_queries):
    team, runs = _runs(3)
    _, (foreign,) = _runs(1)
    with django_assert_num_queries(1):
        got = compare.compare_runs_get(team=team, ids=[runs[2].pk, runs[0].pk])
    assert got == [runs[2], runs[0]]
    with pytest.raises(compare.CompareError, match=f"no run #{foreign.pk} in this team"):
        compare.compare_runs_get(team=team, ids=[runs[0].pk, foreign.pk])


@pytest.mark.parametrize("count", [2, 6])
def test_summaries_take_one_query_whatever_the_number_of_runs(count, django_assert_num_queries):
    team, runs = _runs(count)
    with django_assert_num_queries(1):
        names, summaries = compare.compare_summaries(runs=runs)
    assert names == ["loss", "val_accuracy"]
    first = summaries[0].metrics
    assert first["loss"].final == pytest.approx(10.0 / 51)
    assert first["loss"].best == pytest.approx(10.0 / 51)  # loss falls: the lowest
    assert first["val_accuracy"].best == 1.0 and first["val_accuracy"].higher_is_better
    assert summaries[0].duration == pytest.approx(100.0)


def test_summaries_of_runs_without_metrics():
    team, runs = _runs(2, steps=0)
    names, summaries = compare.compare_summaries(runs=runs)
    assert names == [] and all(item.metrics == {} for item in summaries)


@pytest.mark.parametrize("count", [2, 5])
def test_series_is_two_queries_and_reads_only_the_range(count, django_assert_num_queries):
    team, runs = _runs(count)
    with django_assert_num_queries(2):  # the chunks' sizes, then their bytes
        data = compare.compare_series(runs=runs, metric="loss", lo=10, hi=19, points=4)
    assert [item["id"] for item in data["runs"]] == [run.pk for run in runs]
    first = data["runs"][0]
    assert first["total"] == 10  # steps 10..19 read, nothing else
    assert len(first["x"]) <= 4
    assert min(first["x"]) >= 10 and max(first["x"]) <= 19
    assert max(first["y"]) == pytest.approx(10.0 / 11) and min(first["y"]) == pytest.approx(10.0 / 20)


def test_series_keeps_a_spike_when_downsampled():
    team, runs = _runs(2, steps=2000, spike=(1, 1234))
    data = compare.compare_series(runs=runs, metric="loss", points=100)
    spiky = data["runs"][1]
    assert len(spiky["x"]) <= 100 and spiky["total"] == 2000
    assert max(spiky["y"]) == 500.0 and spiky["x"][spiky["y"].index(500.0)] == 1234.0


def test_series_on_the_time_axis_estimates_seconds_from_the_run():
    team, runs = _runs(2)  # 50 steps in 100 s: 2 s a step
    data = compare.compare_series(runs=runs, metric="loss", x="time", lo=20, hi=40)
    first = data["runs"][0]
    assert first["x"] == [float(s * 2) for s in range(10, 21)]
    never = RunFactory(experiment=runs[0].experiment)
    data = compare.compare_series(runs=[runs[0], never], metric="loss", x="time")
    assert data["runs"][1] == {"id": never.pk, "x": [], "y": [], "total": 0, "dropped": 0}


def test_config_diff_includes_the_runs_own_facts():
    team, runs = _runs(2)
    runs[1].seed = 7
    rows = compare.compare_config_diff(runs=runs)
    differing = [row.key for row in rows if row.differs]
    assert {"inner_lr", "run.seed"} <= set(differing) and "ways" not in differing
    assert [row.key for row in rows][: len(differing)] == differing
    assert {"run.taskset", "run.launched_by", "run.code_version", "ways"} <= {row.key for row in rows}
    for run in runs:
        run.config["seed"] = run.seed  # the config carries it: shown once
    keys = [row.key for row in compare.compare_config_diff(runs=runs)]
    assert "seed" in keys and "run.seed" not in keys


def test_parallel_coordinates_rows():
    team, runs = _runs(3)
    data = compare.parallel_coordinates(runs=runs)
    assert data["keys"] == ["inner_lr"]
    assert data["metrics"] == ["metrics.loss", "val.accuracy"]
    assert data["default_metric"] == "val.accuracy"
    assert data["rows"][2]["config"] == {"inner_lr": pytest.approx(0.03)}
    assert data["rows"][2]["metrics"]["val.accuracy"] == pytest.approx(0.7)


def test_which_config_keys_go_with_each_final_metric():
    team, runs = _runs(4)
    Run.objects.filter(pk=runs[3].pk).update(status=RunStatus.FAILED)  # its summary is not a final one
    runs[3].refresh_from_db()
    found = compare.parallel_importance(compare.parallel_coordinates(runs=runs))
    assert list(found) == ["metrics.loss", "val.accuracy"]
    (accuracy,) = found["val.accuracy"]
    assert (accuracy.setting, accuracy.test, accuracy.n) == ("inner_lr", "spearman", 3)
    assert accuracy.effect == pytest.approx(1.0) and accuracy.p == pytest.approx(0.0, abs=1e-9)
    assert accuracy.reading == "higher inner_lr, higher val.accuracy (better)"
    (loss,) = found["metrics.loss"]  # falls as inner_lr grows: better, for a loss
    assert loss.effect == pytest.approx(1.0)
    assert loss.reading == "higher inner_lr, lower metrics.loss (better)"


def test_search_runs_are_the_teams_and_capped(monkeypatch, django_assert_num_queries):
    team, runs = _runs(4)
    _runs(2)  # another team's
    monkeypatch.setattr(compare, "MAX_SEARCH_RUNS", 3)
    with django_assert_num_queries(1):
        found = compare.compare_search_runs(team=team, query="status:succeeded")
    assert len(found) == 3 and all(run.team_id == team.pk for run in found)
    with pytest.raises(QueryError):
        compare.compare_search_runs(team=team, query="nosuchfield:1")
