"""The run list's saved views from scripts: list, save (the page's rules, errors
naming the field), delete (the creator or an admin), and ``runs?view=``, which lists
what the view shows on the run list, in its order."""

from __future__ import annotations

import pytest

from apps.experiments.models import RunStatus, SavedView
from tests.api.conftest import bearer
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def _url(world, tail=""):
    return f"/api/v1/teams/{world['team'].slug}/saved-views{tail}"


def _post(client, world, who="member", **body):
    return client.post(
        _url(world), data=body, content_type="application/json", **bearer(world["tokens"][who])
    )


def test_a_view_saved_from_a_script_is_the_pages_view(client, api_world):
    response = _post(
        client,
        api_world,
        name="Good MAML",
        query="algorithm:maml",
        columns=["config.inner_lr"],
        sort="-metric.val_loss",
        filters={"status": "succeeded", "archived": "include"},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    view = SavedView.objects.get(pk=body["id"])
    assert (view.query, view.columns, view.sort, view.filters) == (
        "algorithm:maml",
        ["config.inner_lr"],
        "-metric.val_loss",
        {"status": "succeeded", "archived": "include"},
    )
    assert body["created_by"] == "member"
    assert body["list_url"] == (
        "/t/alpha/runs/?q=algorithm%3Amaml&cols=config.inner_lr&sort=-metric.val_loss"
        "&status=succeeded&archived=include"
    )
    names = [v["name"] for v in client.get(_url(api_world), **bearer(api_world["tokens"]["viewer"])).json()]
    assert names == ["Failed MAML", "Good MAML"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": "failed maml"}, "name", "The team has a view called 'failed maml' already."),
        ({"name": "x", "query": "status:"}, "query", "query: "),
        ({"name": "x", "filters": {"status": "bogus"}}, "filters.status", "Select a valid choice"),
        ({"name": "x", "filters": {"colour": "red"}}, "filters", "'colour' is not one of status"),
        ({"name": "x", "sort": "-nonsense key"}, "sort", ""),
        ({"name": "x", "kind": "both"}, "kind", "kind: 'both' is not one of train"),
        ({"name": "  "}, "name", "Give the view a name."),
    ],
)
def test_bad_views_are_refused_naming_the_field(client, api_world, body, field, message):
    response = _post(client, api_world, **body)
    assert response.status_code == 422, response.content
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", field] and message in detail["msg"]
    assert SavedView.objects.count() == 1


def test_only_the_creator_or_an_admin_deletes(client, api_world):
    theirs = SavedView.objects.create(
        team=api_world["team"], name="Admin's", created_by=api_world["users"]["admin"]
    )
    url = _url(api_world, f"/{theirs.pk}")
    response = client.delete(url, **bearer(api_world["tokens"]["member"]))
    assert response.status_code == 403 and "creator or a team admin" in response.json()["detail"]
    mine = _url(api_world, f"/{api_world['saved_view'].pk}")
    assert client.delete(mine, **bearer(api_world["tokens"]["member"])).json() == {
        "detail": "Deleted the saved view 'Failed MAML'."
    }
    assert client.delete(url, **bearer(api_world["tokens"]["admin"])).status_code == 200
    assert not SavedView.objects.exists()


def test_runs_of_a_view_are_those_the_run_list_shows(client, api_world):
    world = api_world
    kept = [
        RunFactory(experiment=world["experiment"], taskset_version=world["version"], status=RunStatus.FAILED)
        for _ in range(3)
    ]
    RunFactory(experiment=world["experiment"], taskset_version=world["version"], status=RunStatus.SUCCEEDED)
    RunFactory(
        experiment=world["experiment"],
        taskset_version=world["version"],
        status=RunStatus.FAILED,
        kind="adapt",
    )
    RunFactory(  # failed, but not MAML
        experiment=world["experiment"],
        taskset_version=world["version"],
        status=RunStatus.FAILED,
        algorithm="reptile",
    )
    url = f"/api/v1/teams/{world['team'].slug}/runs"
    auth = bearer(world["tokens"]["viewer"])
    page = client.get(url, {"view": "FAILED maml", "limit": 2}, **auth).json()
    assert page["count"] == 3 and [r["id"] for r in page["results"]] == [kept[2].pk, kept[1].pk]
    rest = client.get(url, {"view": "Failed MAML", "cursor": page["next_cursor"]}, **auth).json()
    assert [r["id"] for r in rest["results"]] == [kept[0].pk]
    for params, message in [
        ({"view": "Nope"}, "This team has no saved view called 'Nope'."),
        ({"view": "Failed MAML", "q": "status:failed"}, "A saved view sets the search, sort and archived"),
    ]:
        response = client.get(url, params, **auth)
        assert response.status_code == 422
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["query", "view"] and detail["msg"].startswith(message)
