"""apps.reviews.selectors (comparison, picker, leaderboard) on PostgreSQL and SQLite: side-by-side
comparisons built from real float32 matrices, their errors, visibility, the number
of queries, the picker and the leaderboard."""

from __future__ import annotations

import numpy as np
import pytest
from django.http import Http404

from apps.adaptations.models import AdaptationTarget
from apps.experiments.models import RunStatus
from apps.reviews.comparison.analysis import mean_ci95, paired_comparison
from apps.reviews.models import Verdict
from apps.reviews.selectors import (
    ComparisonError,
    comparison_build,
    comparison_choices,
    leaderboard_for_taskset,
    pending_evaluations_exist,
)
from tests.factories import (
    AdaptedModelFactory,
    MetaModelFactory,
    ReviewFactory,
    TaskSetVersionFactory,
    TeamFactory,
)

pytestmark = pytest.mark.django_db

N_TASKS = 600
N_STEPS = 10


def losses_for(
    seed: int, *, level: float = 1.0, n_tasks: int = N_TASKS, n_steps: int = N_STEPS
) -> np.ndarray:
    """A [tasks, steps+1] query-loss matrix that falls with the inner steps."""
    rng = np.random.default_rng(seed)
    start = rng.gamma(2.0, 1.0, size=(n_tasks, 1)) + 1.0
    decay = np.exp(-0.3 * np.arange(n_steps + 1))[None, :]
    return (start * decay * level + rng.gamma(1.5, 0.05, size=(n_tasks, n_steps + 1))).astype(np.float32)


def evaluate(
    meta_model,
    losses: np.ndarray | None = None,
    *,
    scores: np.ndarray | None = None,
    task_ids: np.ndarray | None = None,
    status: str = RunStatus.SUCCEEDED,
    metric: str = "mse",
    id_dtype: str = "<i8",
):
    """A stored batch evaluation of ``meta_model``, as the worker writes it."""
    losses = losses_for(meta_model.pk) if losses is None else losses
    n_tasks, columns = losses.shape
    scores = losses[:, -1] if scores is None else scores
    task_ids = np.arange(n_tasks) if task_ids is None else task_ids
    return AdaptedModelFactory(
        adaptation__meta_model=meta_model,
        adaptation__run__status=status,
        adaptation__target=AdaptationTarget.BATCH,
        adaptation__steps=columns - 1,
        metric=metric,
        n_tasks=n_tasks,
        n_steps=columns - 1,
        losses=losses.astype("<f4").tobytes(),
        scores=np.asarray(scores, dtype="<f4").tobytes(),
        task_ids=np.asarray(task_ids).astype(id_dtype).tobytes(),
        after=float(np.mean(scores)),
        ci95=0.0,
    )


def single(meta_model, *, task_index: int | None = 3, curve=None, **target):
    curve = curve or [{"support_loss": 2.0 - 0.1 * i, "query_loss": 2.5 - 0.1 * i} for i in range(6)]
    return AdaptedModelFactory(
        adaptation__meta_model=meta_model,
        adaptation__run__status=RunStatus.SUCCEEDED,
        adaptation__target=AdaptationTarget.TEST_TASK if task_index is not None else AdaptationTarget.CUSTOM,
        adaptation__task_index=task_index,
        adaptation__steps=len(curve) - 1,
        n_tasks=1,
        n_steps=len(curve) - 1,
        curve=curve,
        before=curve[0]["query_loss"],
        after=curve[-1]["query_loss"],
        **{f"adaptation__{k}": v for k, v in target.items()},
    )


@pytest.fixture
def world(team_roles):
    team, users = team_roles
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", params={})
    metas = [
        MetaModelFactory(
            experiment__team=team,
            experiment__created_by=users["member"],
            taskset_version=version,
            name=name,
            algorithm=algorithm,
        )
        for name, algorithm in [("sine-maml", "maml"), ("sine-reptile", "reptile"), ("sine-anil", "anil")]
    ]
    return {"team": team, "users": users, "version": version, "metas": metas}


def test_batch_comparison_figures(world):
    member = world["users"]["member"]
    m1, m2, m3 = world["metas"]
    l1, l2, l3 = losses_for(1), losses_for(2, level=0.8), losses_for(3, level=1.0)
    a1, a2, a3 = evaluate(m1, l1), evaluate(m2, l2), evaluate(m3, l3)
    ReviewFactory(
        meta_model=None, adapted_model=a2, team=world["team"], verdict=Verdict.REJECT, author=member
    )
    ReviewFactory(
        meta_model=None, adapted_model=a2, team=world["team"], verdict=Verdict.APPROVE, author=member
    )

    comparison = comparison_build(user=member, adapted_ids=[a1.pk, a2.pk, a3.pk])

    assert comparison.kind == "batch" and comparison.metric == "mse"
    assert [item.adapted_id for item in comparison.items] == [a1.pk, a2.pk, a3.pk]
    assert comparison.n_tasks == N_TASKS and comparison.max_steps == N_STEPS
    first, second, third = comparison.items
    assert first.label == f"{m1.name} v1" and first.algorithm == "maml"
    assert first.paired is None
    for item, losses in zip(comparison.items, (l1, l2, l3), strict=True):
        scores = losses[:, -1]
        assert item.mean_ci == mean_ci95(scores)
        assert item.curve == pytest.approx(losses.mean(axis=0, dtype=np.float64).tolist())
        assert item.before == pytest.approx(losses[:, 0].mean(dtype=np.float64))
        assert sum(item.hist_counts) + item.overflow == N_TASKS
        q1, median, q3 = np.percentile(scores.astype(np.float64), [25, 50, 75])
        assert (item.box.q1, item.box.median, item.box.q3) == pytest.approx((q1, median, q3))
        assert 0 <= item.box.x_whisker_low <= item.box.x_q1 <= item.box.x_median <= item.box.x_q3
        assert item.box.x_q3 <= item.box.x_whisker_high <= 1000
    expected = paired_comparison(l1[:, -1], l2[:, -1])
    assert second.paired == expected
    assert second.paired.mean_diff < 0 and second.paired.significant  # level 0.8: clearly better
    # Shared bins: one set of edges, the 99th percentile of the pooled scores on the right.
    pooled = np.concatenate([l1[:, -1], l2[:, -1], l3[:, -1]])
    assert len(comparison.bin_edges) == 31
    assert comparison.bin_edges[0] == pytest.approx(pooled.min())
    assert comparison.bin_edges[-1] == pytest.approx(np.quantile(pooled, 0.99))
    assert sum(item.overflow for item in comparison.items) == np.count_nonzero(
        pooled > comparison.bin_edges[-1]
    )
    assert second.verdict == Verdict.APPROVE and second.verdict_label == "Approve"
    assert first.verdict is None
    data = comparison.chart_data()
    assert data["steps"] == list(range(N_STEPS + 1))
    assert len(data["curves"]) == len(data["hist"]) == 3


def test_tasks_are_paired_by_id_whatever_the_stored_order(world):
    member = world["users"]["member"]
    m1, m2, _ = world["metas"]
    l1, l2 = losses_for(11), losses_for(12, level=0.9)
    perm = np.random.default_rng(0).permutation(N_TASKS)
    a1 = evaluate(m1, l1)
    a2 = evaluate(m2, l2[perm], task_ids=np.arange(N_TASKS)[perm], id_dtype="<i4")

    comparison = comparison_build(user=member, adapted_ids=[a1.pk, a2.pk])

    assert comparison.items[1].paired == paired_comparison(l1[:, -1], l2[:, -1])
    assert comparison.items[1].curve == pytest.approx(l2.mean(axis=0, dtype=np.float64).tolist())


def test_a_meta_model_stands_for_its_latest_successful_batch_evaluation(world):
    member = world["users"]["member"]
    m1, m2, _ = world["metas"]
    evaluate(m1, losses_for(20))
    newest_ok = evaluate(m1, losses_for(21, level=0.5))
    evaluate(m1, losses_for(22), status=RunStatus.FAILED)  # newer, but failed
    single(m1)  # newer, but one task
    other = evaluate(m2)

    comparison = comparison_build(user=member, meta_model_ids=[m1.pk, m2.pk])

    assert [(i.adapted_id, i.picked) for i in comparison.items] == [
        (newest_ok.pk, "meta"),
        (other.pk, "meta"),
    ]


def test_verdict_of_a_meta_model_pick_is_the_meta_models(world):
    member = world["users"]["member"]
    m1, m2, _ = world["metas"]
    evaluate(m1), evaluate(m2)
    ReviewFactory(meta_model=m1, team=world["team"], verdict=Verdict.NEEDS_WORK, author=member)
    comparison = comparison_build(user=member, meta_model_ids=[m1.pk, m2.pk])
    assert [item.verdict for item in comparison.items] == [Verdict.NEEDS_WORK, None]


def test_adapted_models_come_first_and_duplicates_count_once(world):
    member = world["users"]["member"]
    m1, m2, m3 = world["metas"]
    a1, a2, a3 = evaluate(m1), evaluate(m2), evaluate(m3)

    comparison = comparison_build(user=member, adapted_ids=[a2.pk, a1.pk], meta_model_ids=[m3.pk, m1.pk])

    assert [item.adapted_id for item in comparison.items] == [a2.pk, a1.pk, a3.pk]
    assert any("picked twice" in note for note in comparison.notes)
    with pytest.raises(ComparisonError, match="at least 2 different"):
        comparison_build(user=member, adapted_ids=[a1.pk], meta_model_ids=[m1.pk])


@pytest.mark.parametrize("count", [0, 1, 7])
def test_item_count_is_checked(world, count):
    member = world["users"]["member"]
    metas = [
        MetaModelFactory(experiment__team=world["team"], taskset_version=world["version"]) for _ in range(7)
    ]
    with pytest.raises(ComparisonError, match="at least 2" if count < 2 else "at most 6"):
        comparison_build(user=member, meta_model_ids=[m.pk for m in metas[:count]])


def test_a_meta_model_without_batch_evaluation_is_named(world):
    member = world["users"]["member"]
    m1, m2, _ = world["metas"]
    evaluate(m1)
    single(m2)
    with pytest.raises(ComparisonError) as error:
        comparison_build(user=member, meta_model_ids=[m1.pk, m2.pk])
    assert f"{m2.name} v1" in str(error.value)
    assert "run the 600-task evaluation first" in str(error.value)


def test_different_family_parameters_are_refused(world):
    member = world["users"]["member"]
    m1 = world["metas"][0]
    other_version = TaskSetVersionFactory(taskset=world["version"].taskset, params={"amplitude_max": 2.0})
    m2 = MetaModelFactory(
        experiment__team=world["team"],
        taskset_version=other_version,
        config={"family": {"name": "sinusoid", "params": {"amplitude_max": 2.0}}, "shots": 5, "query": 10},
    )
    a1, a2 = evaluate(m1), evaluate(m2)
    with pytest.raises(ComparisonError, match="not evaluated on the same tasks"):
        comparison_build(user=member, adapted_ids=[a1.pk, a2.pk])


def test_different_shots_are_refused(world):
    member = world["users"]["member"]
    m1 = world["metas"][0]
    m2 = MetaModelFactory(
        experiment__team=world["team"],
        taskset_version=world["version"],
        config={"family": {"name": "sinusoid"}, "shots": 10, "query": 10},
    )
    with pytest.raises(ComparisonError, match="shots 10"):
        comparison_build(user=member, adapted_ids=[evaluate(m1).pk, evaluate(m2).pk])


def test_different_task_ids_are_refused(world):
    member = world["users"]["member"]
    m1, m2, _ = world["metas"]
    a1 = evaluate(m1)
    a2 = evaluate(m2, task_ids=np.arange(N_TASKS) + 600)
    with pytest.raises(ComparisonError, match="not the same ones"):
        comparison_build(user=member, adapted_ids=[a1.pk, a2.pk])
    a3 = evaluate(m2, losses_for(5, n_tasks=100))
    with pytest.raises(ComparisonError, match="600 tasks and .* on 100 tasks"):
        comparison_build(user=member, adapted_ids=[a1.pk, a3.pk])


def test_batch_and_single_task_do_not_mix(world):
    member = world["users"]["member"]
    m1, m2, _ = world["metas"]
    with pytest.raises(ComparisonError, match="single-task adaptation"):
        comparison_build(user=member, adapted_ids=[evaluate(m1).pk, single(m2).pk])


def test_an_unfinished_evaluation_is_refused(world):
    member = world["users"]["member"]
    m1, m2, _ = world["metas"]
    running = AdaptedModelFactory(
        adaptation__meta_model=m2, adaptation__run__status=RunStatus.RUNNING, n_tasks=N_TASKS
    )
    with pytest.raises(ComparisonError, match="has no results yet"):
        comparison_build(user=member, adapted_ids=[evaluate(m1).pk, running.pk])


def test_metrics_must_agree(world):
    member = world["users"]["member"]
    m1, m2, _ = world["metas"]
    accuracy = evaluate(m2, scores=np.full(N_TASKS, 0.5), metric="accuracy")
    with pytest.raises(ComparisonError, match="scored by mse"):
        comparison_build(user=member, adapted_ids=[evaluate(m1).pk, accuracy.pk])


def test_single_task_adaptations_to_the_same_task_compare_on_curves(world):
    member = world["users"]["member"]
    m1, m2, _ = world["metas"]
    short = [{"support_loss": 1.0, "query_loss": 1.5}, {"support_loss": 0.5, "query_loss": 0.7}]
    s1, s2 = single(m1, task_index=7), single(m2, task_index=7, curve=short)

    comparison = comparison_build(user=member, adapted_ids=[s1.pk, s2.pk])

    assert comparison.kind == "single" and comparison.max_steps == 5
    assert comparison.items[0].curve == pytest.approx([2.5 - 0.1 * i for i in range(6)])
    assert comparison.items[1].curve[:2] == [1.5, 0.7] and comparison.items[1].curve[2:] == [None] * 4
    assert comparison.items[1].before == 1.5 and comparison.items[1].after == 0.7
    assert all(item.paired is None and item.mean_ci is None for item in comparison.items)
    assert comparison.items[0].target == "meta-test task 7"

    with pytest.raises(ComparisonError, match="different tasks"):
        comparison_build(user=member, adapted_ids=[s1.pk, single(m2, task_index=8).pk])


def test_typed_tasks_compare_when_their_data_is_the_same(world):
    member = world["users"]["member"]
    m1, m2, _ = world["metas"]
    data = {"support": {"x": [0.0, 1.0], "y": [0.5, 0.2]}, "query": {"x": [0.5], "y": [0.3]}}
    t1, t2 = single(m1, task_index=None, **data), single(m2, task_index=None, **data)
    assert comparison_build(user=member, adapted_ids=[t1.pk, t2.pk]).kind == "single"
    t3 = single(m2, task_index=None, support={"x": [0.0, 1.0], "y": [0.5, 0.9]}, query=data["query"])
    with pytest.raises(ComparisonError, match="different tasks"):
        comparison_build(user=member, adapted_ids=[t1.pk, t3.pk])


def test_others_models_are_404_and_never_compared(world):
    users = world["users"]
    m1, m2, _ = world["metas"]
    a1, a2 = evaluate(m1), evaluate(m2)
    foreign_meta = MetaModelFactory()  # another team
    foreign = evaluate(foreign_meta)
    with pytest.raises(Http404):
        comparison_build(user=users["member"], adapted_ids=[a1.pk, foreign.pk])
    with pytest.raises(Http404):
        comparison_build(user=users["member"], meta_model_ids=[m1.pk, foreign_meta.pk])
    with pytest.raises(Http404):
        comparison_build(user=users["member"], adapted_ids=[a1.pk, 10**9])
    with pytest.raises(Http404):
        comparison_build(user=users["outsider"], adapted_ids=[a1.pk, a2.pk])
    # With a team, only that team's models count, even for someone in both teams.
    with pytest.raises(Http404):
        comparison_build(user=users["outsider"], adapted_ids=[foreign.pk, a1.pk], team=foreign_meta.team)
    assert (
        len(comparison_build(user=users["viewer"], adapted_ids=[a1.pk, a2.pk], team=world["team"]).items) == 2
    )


def test_constant_queries_for_two_and_six_models(world, django_assert_num_queries):
    member = world["users"]["member"]
    metas = world["metas"] + [
        MetaModelFactory(experiment__team=world["team"], taskset_version=world["version"]) for _ in range(3)
    ]
    evaluations = [evaluate(meta) for meta in metas]
    for evaluation in evaluations:
        ReviewFactory(meta_model=evaluation.meta_model, team=world["team"], author=member)
    # team ids, adapted models, meta-models, their latest evaluations, verdicts
    with django_assert_num_queries(5):
        comparison_build(user=member, adapted_ids=[evaluations[0].pk], meta_model_ids=[metas[1].pk])
    with django_assert_num_queries(5):
        comparison = comparison_build(
            user=member, adapted_ids=[e.pk for e in evaluations[:3]], meta_model_ids=[m.pk for m in metas[3:]]
        )
    assert len(comparison.items) == 6
    assert [item.verdict for item in comparison.items] == [None, None, None, "approve", "approve", "approve"]


def test_picker_lists_the_teams_batch_evaluations_by_task_set(world, django_assert_num_queries):
    m1, m2, m3 = world["metas"]
    old, new = evaluate(m1), evaluate(m1)
    evaluate(m2, status=RunStatus.FAILED)
    single(m3)
    foreign = evaluate(MetaModelFactory(), status=RunStatus.RUNNING)  # another team's
    other_set = MetaModelFactory(
        experiment__team=world["team"], taskset_version__taskset__name="Another set", name="zz"
    )
    evaluate(other_set)

    running = evaluate(m3, status=RunStatus.RUNNING)
    never = MetaModelFactory(experiment__team=world["team"], taskset_version__taskset__name="New set")

    with django_assert_num_queries(2):
        groups = comparison_choices(team=world["team"])

    assert [g.taskset_name for g in groups] == ["Another set", "New set", "Sines"]
    sines = groups[2]
    assert [model.meta_model_id for model in sines.models] == [m1.pk]
    assert [e.adapted_id for e in sines.models[0].evaluations] == [new.pk, old.pk]
    assert [e.run_id for e in sines.models[0].evaluations] == [new.adaptation.run_id, old.adaptation.run_id]
    assert sines.models[0].latest.adapted_id == new.pk
    # Models without a finished 600-task evaluation are listed apart, with the one under way.
    waiting = {model.meta_model_id: model for model in sines.unevaluated}
    assert set(waiting) == {m2.pk, m3.pk}
    assert waiting[m2.pk].pending_run_id is None
    assert waiting[m3.pk].pending_run_id == running.adaptation.run_id
    assert waiting[m3.pk].pending_label == "Running"
    assert [(m.meta_model_id, m.pending_run_id) for m in groups[1].unevaluated] == [(never.pk, None)]
    assert groups[1].models == [] and groups[0].unevaluated == []
    assert pending_evaluations_exist(team=world["team"])
    assert pending_evaluations_exist(team=foreign.team)
    assert not pending_evaluations_exist(team=TeamFactory())


# -- leaderboard ---------------------------------------------------------------------------


def test_leaderboard_ranks_by_mean_and_compares_with_the_best(world, django_assert_max_num_queries):
    member = world["users"]["member"]
    m1, m2, m3 = world["metas"]
    l1, l2, l3 = losses_for(31, level=1.0), losses_for(32, level=0.6), losses_for(33, level=1.3)
    evaluate(m1, losses_for(30, level=0.1))  # older: the latest evaluation counts
    evaluate(m1, l1), evaluate(m2, l2), evaluate(m3, l3)
    # A second version with the same parameters joins the board.
    same = TaskSetVersionFactory(taskset=world["version"].taskset, params={})
    m4 = MetaModelFactory(experiment__team=world["team"], taskset_version=same, name="sine-fomaml")
    l4 = losses_for(34, level=0.8)
    evaluate(m4, l4)
    MetaModelFactory(experiment__team=world["team"], taskset_version=world["version"])  # never evaluated
    ReviewFactory(meta_model=m2, team=world["team"], verdict=Verdict.APPROVE, author=member)

    with django_assert_max_num_queries(4):
        page = leaderboard_for_taskset(user=member, taskset_id=world["version"].taskset_id)

    assert page.taskset == world["version"].taskset
    (board,) = page.boards
    assert [row.meta_model_id for row in board.rows] == [m2.pk, m4.pk, m1.pk, m3.pk]
    assert [row.rank for row in board.rows] == [1, 2, 3, 4]
    assert board.versions == sorted({world["version"].number, same.number})
    best = board.rows[0]
    assert best.versus_best is None and best.verdict == Verdict.APPROVE
    assert best.mean_ci == mean_ci95(l2[:, -1])
    assert board.rows[3].versus_best == paired_comparison(l2[:, -1], l3[:, -1])
    assert board.rows[3].versus_best.mean_diff > 0


def test_leaderboard_splits_versions_with_other_tasks_and_ranks_accuracy_high_first(world):
    member = world["users"]["member"]
    team = world["team"]
    version = world["version"]
    other = TaskSetVersionFactory(taskset=version.taskset, params={"amplitude_max": 2.0})
    config = {"family": {"name": "sinusoid", "params": {"amplitude_max": 2.0}}, "shots": 5, "query": 10}
    lone = MetaModelFactory(experiment__team=team, taskset_version=other, config=config)
    evaluate(lone)
    m1, m2, _ = world["metas"]
    evaluate(m1, scores=np.full(N_TASKS, 0.4) + np.linspace(0, 0.1, N_TASKS), metric="accuracy")
    evaluate(m2, scores=np.full(N_TASKS, 0.7) + np.linspace(0, 0.1, N_TASKS), metric="accuracy")

    page = leaderboard_for_taskset(user=member, taskset_id=version.taskset_id)

    assert len(page.boards) == 2
    accuracy, separate = page.boards
    assert accuracy.metric == "accuracy" and accuracy.higher_is_better
    assert [row.meta_model_id for row in accuracy.rows] == [m2.pk, m1.pk]
    assert accuracy.rows[1].versus_best.mean_diff == pytest.approx(-0.3)
    assert [row.meta_model_id for row in separate.rows] == [lone.pk]
    assert separate.versions == [other.number]
    assert "amplitude_max" in separate.description


def test_leaderboard_of_another_team_is_404(world):
    with pytest.raises(Http404):
        leaderboard_for_taskset(user=world["users"]["outsider"], taskset_id=world["version"].taskset_id)
