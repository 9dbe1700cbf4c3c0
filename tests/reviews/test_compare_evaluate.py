"""The compare page for models it cannot compare yet: they are listed with an
"Evaluate on the 600 test tasks" button, which queues the batch adaptation through
``evaluation_start``; the page polls while evaluations run and reloads when they end.
Adaptations carry their run id everywhere."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.adaptations.models import Adaptation, AdaptationTarget
from apps.adaptations.selectors import meta_model_facts
from apps.adaptations.services import ADAPT_TASK, DEFAULT_ADAPT_STEPS
from apps.experiments.models import Run, RunStatus
from tests.adaptations.test_services import register_trained
from tests.factories import MetaModelFactory, TaskSetVersionFactory
from tests.reviews.test_comparison import evaluate

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
POLL = {**HTMX, "HTTP_HX_TRIGGER": "compare-pending"}


@pytest.fixture
def world(team_roles, sent):
    team, users = team_roles
    trained = register_trained(team=team, launched_by=users["member"])
    version = trained.taskset_version
    evaluated = [
        MetaModelFactory(experiment=trained.experiment, taskset_version=version, name=f"done-{i}")
        for i in (1, 2)
    ]
    evaluations = [evaluate(meta) for meta in evaluated]
    return {"team": team, "users": users, "trained": trained, "evaluations": evaluations}


def compare_url(team, query: str = "") -> str:
    return reverse("reviews:compare", kwargs={"team_slug": team.slug}) + query


def evaluate_url(meta_model) -> str:
    return reverse("reviews:evaluation-start", kwargs={"meta_model_id": meta_model.pk})


def test_unevaluated_models_are_listed_with_the_button(client, world):
    client.force_login(world["users"]["member"])
    trained = world["trained"]
    html = client.get(compare_url(world["team"])).content.decode()
    assert f'data-testid="unevaluated-{trained.pk}"' in html
    assert f'data-testid="evaluate-{trained.pk}"' in html and "Evaluate on the 600 test tasks" in html
    assert f'action="{evaluate_url(trained)}"' in html
    assert f'data-testid="pick-m-{trained.pk}"' not in html  # not comparable yet
    assert 'id="compare-pending"' not in html  # nothing under way: no polling


def test_viewers_see_the_model_but_no_button(client, world):
    client.force_login(world["users"]["viewer"])
    html = client.get(compare_url(world["team"])).content.decode()
    assert f'data-testid="unevaluated-{world["trained"].pk}"' in html
    assert f'data-testid="evaluate-{world["trained"].pk}"' not in html
    assert "a member can evaluate it" in html


def test_evaluate_queues_the_batch_adaptation_and_returns_to_the_page(
    client, world, sent, django_capture_on_commit_callbacks
):
    client.force_login(world["users"]["member"])
    trained = world["trained"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(evaluate_url(trained))
    assert response.status_code == 302 and response["Location"] == compare_url(world["team"])
    adaptation = Adaptation.objects.get(meta_model=trained)
    assert adaptation.target == AdaptationTarget.BATCH and adaptation.steps == DEFAULT_ADAPT_STEPS
    assert adaptation.lr == pytest.approx(meta_model_facts(trained).inner_lr)
    assert [name for name, _, _ in sent] == [ADAPT_TASK]
    run_id = adaptation.run_id

    html = client.get(compare_url(world["team"])).content.decode()
    assert f"the 600-task evaluation is queued as adaptation #{run_id}" in html
    row = re.search(rf'data-testid="evaluating-{trained.pk}">(.*?)</span>', html, re.S).group(1)
    assert "Queued" in row and f"adaptation #{run_id}" in row
    assert reverse("adaptations:adapted-detail", kwargs={"run_id": run_id}) in row
    assert f'data-testid="evaluate-{trained.pk}"' not in html  # no second one while it runs
    assert 'id="compare-pending"' in html and 'hx-trigger="every 2s"' in html

    # The poll: nothing to do while it runs, a reload once it has finished.
    poll = client.get(compare_url(world["team"]), **POLL)
    assert poll.status_code == 204
    Run.objects.filter(pk=run_id).update(status=RunStatus.FAILED)
    poll = client.get(compare_url(world["team"]), **POLL)
    assert poll.status_code == 200 and poll["HX-Refresh"] == "true"


def test_evaluate_from_htmx_redirects_the_page(client, world, sent):
    client.force_login(world["users"]["member"])
    response = client.post(evaluate_url(world["trained"]), **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == compare_url(world["team"])


@pytest.mark.parametrize("who, status", [("viewer", 403), ("outsider", 404)])
def test_evaluate_needs_a_member_of_the_team(client, world, sent, who, status):
    client.force_login(world["users"][who])
    assert client.post(evaluate_url(world["trained"])).status_code == status
    assert not Adaptation.objects.filter(meta_model=world["trained"]).exists()


def test_evaluate_needs_login_and_post(client, world):
    response = client.post(evaluate_url(world["trained"]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    client.force_login(world["users"]["member"])
    assert client.get(evaluate_url(world["trained"])).status_code == 405


def test_a_model_without_weights_says_why_on_the_page(client, world, sent):
    """A meta-model whose files are not in storage cannot be evaluated: the message names it."""
    bare = MetaModelFactory(experiment=world["trained"].experiment, name="no-files")
    client.force_login(world["users"]["member"])
    page = client.post(evaluate_url(bare), follow=True).content.decode()
    assert re.search(r'class="msg msg-error">no-files v\d+ could not be evaluated \(meta_model: ', page)
    assert not Adaptation.objects.filter(meta_model=bare).exists() and sent == []


def test_adaptations_carry_their_run_id_in_the_picker_and_the_result(client, world):
    client.force_login(world["users"]["viewer"])
    first, second = world["evaluations"]
    assert first.pk != first.adaptation.run_id  # two numbering schemes: the page shows the run's
    query = f"?a={first.pk}&a={second.pk}"
    html = client.get(compare_url(world["team"], query)).content.decode()
    for adapted in (first, second):
        run_id = adapted.adaptation.run_id
        picker = re.search(rf'data-testid="pick-a-{adapted.pk}"[^>]*>\s*adaptation #(\d+)', html)
        assert int(picker.group(1)) == run_id
        link = reverse("adaptations:adapted-detail", kwargs={"run_id": run_id})
        assert f'href="{link}" data-testid="adapted-link">adaptation #{run_id}</a>' in html


def test_an_empty_leaderboard_points_to_the_compare_page(client, world):
    version = TaskSetVersionFactory(taskset__team=world["team"])
    client.force_login(world["users"]["viewer"])
    url = reverse("reviews:leaderboard", kwargs={"taskset_id": version.taskset_id})
    html = client.get(url).content.decode()
    assert 'id="leaderboard-empty"' in html and f'href="{compare_url(world["team"])}"' in html
