"""The side-by-side page and the leaderboard: the permission matrix, full pages and
htmx partials, errors shown on the page, and other teams' ids answered 404 (never
leaked)."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from apps.reviews.models import Verdict
from tests.factories import MetaModelFactory, ReviewFactory, TaskSetVersionFactory
from tests.reviews.test_comparison import evaluate, losses_for, single

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
ROLES = ["anonymous", "outsider", "viewer", "member", "admin"]


@pytest.fixture
def world(team_roles):
    team, users = team_roles
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines <b>bold</b>", params={})
    metas = [
        MetaModelFactory(experiment__team=team, taskset_version=version, name=name, algorithm=algorithm)
        for name, algorithm in [("sine-maml", "maml"), ("sine-reptile", "reptile"), ("sine-anil", "anil")]
    ]
    evaluations = [evaluate(meta, losses_for(i, level=1.0 - 0.2 * i)) for i, meta in enumerate(metas)]
    ReviewFactory(meta_model=metas[1], team=team, verdict=Verdict.APPROVE, author=users["member"])
    # Another team's evaluated meta-model, on the same kind of tasks.
    beta = users["outsider"].memberships.get().team
    foreign_meta = MetaModelFactory(experiment__team=beta, name="their-maml")
    foreign = evaluate(foreign_meta)
    return {
        "team": team,
        "users": users,
        "version": version,
        "metas": metas,
        "evaluations": evaluations,
        "beta": beta,
        "foreign_meta": foreign_meta,
        "foreign": foreign,
    }


def login(client, world, who):
    if who != "anonymous":
        client.force_login(world["users"][who])
    return client


def compare_url(team, *, a=(), m=()) -> str:
    query = "&".join([f"a={pk}" for pk in a] + [f"m={pk}" for pk in m])
    return reverse("reviews:compare", kwargs={"team_slug": team.slug}) + (f"?{query}" if query else "")


def _expect(response, who):
    if who == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")
        return False
    if who == "outsider":
        assert response.status_code == 404
        return False
    assert response.status_code == 200
    return True


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize("who", ROLES)
def test_compare_permission_matrix(client, world, who, htmx):
    login(client, world, who)
    m1, m2, _ = world["metas"]
    headers = HTMX if htmx else {}
    response = client.get(compare_url(world["team"], m=[m1.pk, m2.pk]), **headers)
    if not _expect(response, who):
        assert b"sine-maml" not in response.content
        return
    html = response.content.decode()
    assert 'id="compare-result"' in html
    assert html.count('data-testid="compare-row"') == 2
    assert response["Vary"] and "HX-Request" in response["Vary"]
    if htmx:
        assert "<html" not in html and 'id="compare-picker"' not in html
    else:
        assert "<html" in html and 'id="compare-picker"' in html


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize("who", ROLES)
def test_leaderboard_permission_matrix(client, world, who, htmx):
    login(client, world, who)
    url = reverse("reviews:leaderboard", kwargs={"taskset_id": world["version"].taskset_id})
    response = client.get(url, **(HTMX if htmx else {}))
    if not _expect(response, who):
        return
    html = response.content.decode()
    assert html.count('data-testid="leaderboard-row"') == 3
    assert ("<html" in html) is not htmx
    ranks = re.findall(r'data-meta-model-id="(\d+)" data-rank="(\d)"', html)
    # losses_for(i, level=1 - 0.2 i): the third meta-model has the lowest loss.
    assert [int(pk) for pk, _ in ranks] == [m.pk for m in reversed(world["metas"])]


def test_full_page_picker_and_result(client, world):
    login(client, world, "viewer")
    m1, m2, m3 = world["metas"]
    a1 = world["evaluations"][0]
    response = client.get(compare_url(world["team"], a=[a1.pk], m=[m2.pk, m3.pk]))
    html = response.content.decode()
    # The picker: this team's evaluated meta-models only, grouped by task set, checked as picked.
    assert f'data-testid="pick-m-{m2.pk}" checked' in html
    assert f'data-testid="pick-m-{m1.pk}">' in html
    assert "their-maml" not in html
    assert "Sines &lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert reverse("reviews:leaderboard", kwargs={"taskset_id": world["version"].taskset_id}) in html
    # The result: the table, the charts' data, the box plots.
    rows = re.findall(r'data-testid="compare-row" data-adapted-id="(\d+)"', html)
    assert [int(pk) for pk in rows] == [a1.pk, world["evaluations"][1].pk, world["evaluations"][2].pk]
    assert html.count('data-testid="boxplot"') == 3
    assert reverse("adaptations:adapted-detail", kwargs={"run_id": a1.adaptation.run_id}) in html
    assert reverse("registry:metamodel-detail", kwargs={"meta_model_id": m2.pk}) in html
    assert 'data-verdict="approve"' in html
    assert "significant, better" in html  # lower loss levels: clearly better than the first
    data = json.loads(
        re.search(r'<script id="compare-data" type="application/json">(.*?)</script>', html).group(1)
    )
    assert data["kind"] == "batch" and len(data["curves"]) == 3 and len(data["hist"]) == 3
    assert len(data["steps"]) == 11 and len(data["bin_edges"]) == 31


def test_single_task_adaptations_show_curves_without_tests(client, world):
    login(client, world, "member")
    m1, m2, _ = world["metas"]
    s1, s2 = single(m1, task_index=4), single(m2, task_index=4)
    html = client.get(compare_url(world["team"], a=[s1.pk, s2.pk])).content.decode()
    assert html.count('data-testid="compare-row"') == 2
    assert "meta-test task 4" in html and "t-test / Wilcoxon" not in html
    # Single-task picks are not in the picker's list: they stay picked, shown apart.
    assert f'data-testid="pick-a-{s1.pk}"' in html


@pytest.mark.parametrize("htmx", [False, True])
def test_errors_are_shown_on_the_page(client, world, htmx):
    login(client, world, "member")
    m1, m2, _ = world["metas"]
    lonely = MetaModelFactory(
        experiment__team=world["team"], taskset_version=world["version"], name="no-eval"
    )
    extra = [
        MetaModelFactory(experiment__team=world["team"], taskset_version=world["version"]).pk
        for _ in range(4)
    ]
    headers = HTMX if htmx else {}
    cases = [
        (compare_url(world["team"], m=[m.pk for m in world["metas"]] + extra), "at most 6"),
        (compare_url(world["team"], m=[m1.pk, lonely.pk]), "no-eval v1 has no finished evaluation"),
        (compare_url(world["team"]) + "?a=abc&a=1", "Not a model id"),
        (compare_url(world["team"], a=[single(m2).pk], m=[m1.pk]), "single-task adaptation"),
    ]
    for url, message in cases:
        response = client.get(url, **headers)
        assert response.status_code == 200, url
        html = response.content.decode()
        error = re.search(r'data-testid="compare-error">(.*?)</div>', html, re.S)
        assert error and message in error.group(1), (url, html[:500])
        assert "compare-data" not in html


def test_nothing_picked_shows_a_hint(client, world):
    login(client, world, "viewer")
    html = client.get(compare_url(world["team"])).content.decode()
    assert 'id="compare-empty"' in html and 'id="compare-error"' not in html


@pytest.mark.parametrize("htmx", [False, True])
def test_one_pick_asks_for_another(client, world, htmx):
    """The meta-model page's Compare button opens the page with that model ticked."""
    login(client, world, "viewer")
    m1 = world["metas"][0]
    html = client.get(compare_url(world["team"], m=[m1.pk]), **(HTMX if htmx else {})).content.decode()
    assert 'data-testid="compare-hint">Pick at least 1 more model' in html
    assert 'id="compare-error"' not in html and "compare-data" not in html
    if not htmx:
        assert f'data-testid="pick-m-{m1.pk}" checked' in html


@pytest.mark.parametrize("htmx", [False, True])
def test_other_teams_ids_are_404_like_missing_ones(client, world, htmx):
    login(client, world, "member")
    a1 = world["evaluations"][0]
    headers = HTMX if htmx else {}
    foreign = client.get(compare_url(world["team"], a=[a1.pk, world["foreign"].pk]), **headers)
    missing = client.get(compare_url(world["team"], a=[a1.pk, 10**9]), **headers)
    foreign_meta = client.get(
        compare_url(world["team"], m=[world["metas"][0].pk, world["foreign_meta"].pk]), **headers
    )
    assert foreign.status_code == missing.status_code == foreign_meta.status_code == 404
    assert foreign.content == missing.content
    assert b"their-maml" not in foreign.content + foreign_meta.content


def test_a_member_of_both_teams_compares_only_within_the_pages_team(client, world):
    from apps.teams.models import Membership, Role

    outsider = world["users"]["outsider"]
    Membership.objects.create(team=world["team"], user=outsider, role=Role.VIEWER)
    client.force_login(outsider)
    mixed = compare_url(world["beta"], a=[world["foreign"].pk, world["evaluations"][0].pk])
    assert client.get(mixed).status_code == 404
    assert (
        client.get(compare_url(world["team"], a=[e.pk for e in world["evaluations"][:2]])).status_code == 200
    )


def test_compare_page_queries_do_not_grow_with_models(client, world, django_assert_max_num_queries):
    login(client, world, "member")
    metas = world["metas"] + [
        MetaModelFactory(experiment__team=world["team"], taskset_version=world["version"]) for _ in range(3)
    ]
    for meta in metas[3:]:
        evaluate(meta)
    client.get(compare_url(world["team"], m=[m.pk for m in metas[:2]]))  # warm the session
    with django_assert_max_num_queries(10) as two:
        client.get(compare_url(world["team"], m=[m.pk for m in metas[:2]]))
    with django_assert_max_num_queries(10) as six:
        response = client.get(compare_url(world["team"], m=[m.pk for m in metas]))
    assert response.content.decode().count('data-testid="compare-row"') == 6
    assert len(six.captured_queries) == len(two.captured_queries)


def test_task_set_page_links_to_its_leaderboard(client, world):
    login(client, world, "viewer")
    taskset_id = world["version"].taskset_id
    html = client.get(reverse("tasksets:taskset-detail", kwargs={"taskset_id": taskset_id})).content.decode()
    assert reverse("reviews:leaderboard", kwargs={"taskset_id": taskset_id}) in html


def test_leaderboard_links_to_a_comparison_of_its_top_models(client, world):
    login(client, world, "viewer")
    url = reverse("reviews:leaderboard", kwargs={"taskset_id": world["version"].taskset_id})
    html = client.get(url).content.decode()
    link = re.search(r'data-testid="compare-top" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert link == compare_url(world["team"], m=[m.pk for m in reversed(world["metas"])])
    assert client.get(link).content.decode().count('data-testid="compare-row"') == 3
