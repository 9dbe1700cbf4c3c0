"""``GET /teams/{team}/comparison``: the compare page's comparison as JSON, figures
equal to the analysis on the stored float32 matrices, the page's words on 422,
404 for other teams' models, constant queries."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.experiments.models import RunStatus
from apps.reviews.comparison.analysis import mean_ci95, paired_comparison
from apps.reviews.models import Verdict
from tests.api.conftest import bearer
from tests.factories import (
    AdaptationFactory,
    MetaModelFactory,
    ReviewFactory,
    TaskSetVersionFactory,
    TeamFactory,
)
from tests.reviews.test_comparison import N_STEPS, N_TASKS, evaluate, losses_for, single

pytestmark = pytest.mark.django_db

URL = "/api/v1/teams/alpha/comparison"


@pytest.fixture
def metas(api_world):
    team, member = api_world["team"], api_world["users"]["member"]
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Waves", params={})
    return [
        MetaModelFactory(
            experiment__team=team,
            experiment__created_by=member,
            taskset_version=version,
            name=name,
            algorithm=algo,
        )
        for name, algo in [("w-maml", "maml"), ("w-reptile", "reptile"), ("w-anil", "anil")]
    ]


def get(client, world, params, who="viewer"):
    return client.get(URL, params, **bearer(world["tokens"][who]))


def test_batch_comparison_as_json(api_world, client, metas):
    m1, m2, m3 = metas
    l1, l2, l3 = losses_for(1), losses_for(2, level=0.8), losses_for(3)
    a1, a2 = evaluate(m1, l1), evaluate(m2, l2)
    evaluate(m3, l3)
    ReviewFactory(
        meta_model=None,
        adapted_model=a2,
        team=api_world["team"],
        verdict=Verdict.APPROVE,
        author=api_world["users"]["member"],
    )
    response = get(
        client, api_world, {"adaptation": [a1.adaptation.run_id, a2.adaptation.run_id], "model": [m3.pk]}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["kind"] == "batch" and body["metric"] == "mse" and body["higher_is_better"] is False
    assert body["n_tasks"] == N_TASKS and body["max_steps"] == N_STEPS and len(body["bin_edges"]) == 31
    first, second, third = body["items"]
    assert [i["picked"] for i in body["items"]] == ["adapted", "adapted", "meta"]
    assert first["run_id"] == a1.adaptation.run_id and third["meta_model_id"] == m3.pk
    assert first["paired"] is None and first["outcome"] == ""
    assert first["mean"]["mean"] == pytest.approx(mean_ci95(l1[:, -1]).mean)
    assert first["mean"]["half_width"] == pytest.approx(mean_ci95(l1[:, -1]).half_width)
    expected = paired_comparison(l1[:, -1], l2[:, -1])
    assert second["paired"]["mean_diff"] == pytest.approx(expected.mean_diff)
    assert second["paired"]["t"] == pytest.approx(expected.t)
    assert second["paired"]["p_value"] == pytest.approx(expected.p_value)
    assert second["paired"]["wilcoxon_p"] == pytest.approx(expected.wilcoxon_p)
    assert second["paired"]["significant"] is True and second["outcome"] == "better"
    assert second["verdict"] == Verdict.APPROVE
    assert second["curve"] == pytest.approx(l2.mean(axis=0, dtype=np.float64).tolist())
    q1, median, q3 = np.percentile(l3[:, -1].astype(np.float64), [25, 50, 75])
    assert (third["box"]["q1"], third["box"]["median"], third["box"]["q3"]) == pytest.approx((q1, median, q3))
    assert sum(third["hist_counts"]) + third["overflow"] == N_TASKS


def test_a_constant_shift_has_no_finite_t(api_world, client, metas):
    m1, m2, _ = metas
    base = losses_for(5)
    scores = np.round(base[:, -1] * 8) / 8  # exact in float32, and so is the shift
    a1 = evaluate(m1, base, scores=scores)
    a2 = evaluate(m2, base, scores=scores + 0.5)
    response = get(client, api_world, {"adaptation": [a1.adaptation.run_id, a2.adaptation.run_id]})
    assert response.status_code == 200, response.content
    paired = response.json()["items"][1]["paired"]
    assert paired["t"] is None and paired["p_value"] == 0 and paired["significant"] is True


def test_single_task_adaptations_compare_on_curves(api_world, client, metas):
    s1, s2 = single(metas[0]), single(metas[1])
    response = get(client, api_world, {"adaptation": [s1.adaptation.run_id, s2.adaptation.run_id]})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["kind"] == "single" and body["bin_edges"] == []
    assert all(
        item["paired"] is None and item["mean"] is None and item["box"] is None for item in body["items"]
    )
    assert body["items"][0]["target"] == "meta-test task 3"
    assert body["items"][0]["curve"] == pytest.approx([2.5 - 0.1 * i for i in range(6)])


@pytest.mark.parametrize(
    "params,message",
    [
        ({}, "Pick at least 2 models to compare (you picked 0)."),
        ({"model": ["{m1}"]}, "Pick at least 2 models to compare (you picked 1)."),
        (
            {"model": ["{m1}", "{m2}", "{m3}"], "adaptation": ["{a1}", "{a2}", "{a3}", "{a4}"]},
            "Pick at most 6",
        ),
        ({"model": ["{m1}", "{bare}"]}, "has no finished evaluation on the meta-test tasks"),
        ({"adaptation": ["{a1}", "{queued}"]}, "has no result yet: it has not succeeded."),
    ],
)
def test_incomparable_picks_are_422_with_the_pages_words(api_world, client, metas, params, message):
    m1, m2, m3 = metas
    a = [evaluate(m, losses_for(i)) for i, m in enumerate([m1, m2, m3, m1])]
    bare = MetaModelFactory(
        experiment=api_world["experiment"], taskset_version=m1.taskset_version, name="bare"
    )
    queued = AdaptationFactory(meta_model=m1, run__status=RunStatus.QUEUED)
    names = {"m1": m1.pk, "m2": m2.pk, "m3": m3.pk, "bare": bare.pk, "queued": queued.run_id}
    names.update({f"a{i + 1}": e.adaptation.run_id for i, e in enumerate(a)})
    filled = {k: [str(v).format(**names) for v in values] for k, values in params.items()}
    response = get(client, api_world, filled)
    assert response.status_code == 422, response.content
    [item] = response.json()["detail"]
    assert item["loc"] == ["query"] and message in item["msg"]


def test_other_teams_models_are_404(api_world, client, metas):
    a1 = evaluate(metas[0], losses_for(1))
    other = MetaModelFactory(experiment__team=TeamFactory(slug="gamma"), name="theirs")
    theirs = evaluate(other, losses_for(2))
    for params in (
        {"model": [metas[0].pk, other.pk]},
        {"adaptation": [a1.adaptation.run_id, theirs.adaptation.run_id]},
    ):
        response = get(client, api_world, params)
        assert response.status_code == 404, response.content
    response = client.get(
        URL, {"model": [metas[0].pk, metas[1].pk]}, **bearer(api_world["tokens"]["other_team"])
    )
    assert response.status_code == 404


def test_bad_ids_are_422_on_the_parameter(api_world, client):
    response = get(client, api_world, {"model": ["x", "0"]})
    assert response.status_code == 422
    assert all(item["loc"][:2] == ["query", "model"] for item in response.json()["detail"])
    response = get(client, api_world, {"model": [str(i) for i in range(1, 52)]})
    assert response.status_code == 422


def test_constant_queries_for_two_and_six_models(api_world, client, metas):
    evaluations = [evaluate(metas[i % 3], losses_for(i)) for i in range(6)]
    run_ids = [e.adaptation.run_id for e in evaluations]
    get(client, api_world, {"adaptation": run_ids[:2]})  # the token's last-used time is written once
    counts = []
    for picked in (run_ids[:2], run_ids):
        with CaptureQueriesContext(connection) as queries:
            assert get(client, api_world, {"adaptation": picked}).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]
