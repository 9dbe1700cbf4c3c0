"""Saved views of the run list: members create them from the list ("Save this
view"), everyone in the team sees them as chips, the creator or an admin deletes
them; names are unique per team (a field error), and a view must hold a query,
columns, a sort and filters that the list can read. Permissions for viewer, member, admin,
another team and anonymous, with and without htmx."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from apps.experiments import services
from apps.experiments.listing.selectors import saved_view_list_for_team
from apps.experiments.models import RunStatus, SavedView
from tests.factories import ExperimentFactory, RunFactory, TaskSetFactory

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
LIST = reverse("experiments:run-list", kwargs={"team_slug": "alpha"})
CREATE = reverse("experiments:saved-view-create", kwargs={"team_slug": "alpha"})


def _post(**fields):
    view = {"name": "Best MAML", "q": "algorithm:maml", "cols": "metric.val_loss", "sort": "metric.val_loss"}
    return {**view, **fields}


def _delete_url(view):
    return reverse("experiments:saved-view-delete", kwargs={"team_slug": "alpha", "view_id": view.pk})


@pytest.mark.parametrize("headers", [{}, HTMX])
@pytest.mark.parametrize(("role", "status"), [("viewer", 403), ("outsider", 404), (None, 302)])
def test_only_members_and_admins_create(client, team_roles, headers, role, status):
    _team, users = team_roles
    if role:
        client.force_login(users[role])
    response = client.post(CREATE, _post(), **headers)
    assert response.status_code == status and not SavedView.objects.exists()
    if role is None:
        assert response["Location"].startswith(reverse("login") + "?next=")


@pytest.mark.parametrize("headers", [{}, HTMX])
@pytest.mark.parametrize("role", ["member", "admin"])
def test_members_save_the_list_and_everyone_sees_the_chip(client, team_roles, headers, role):
    team, users = team_roles
    client.force_login(users[role])
    response = client.post(CREATE, _post(kind="all"), **headers)
    view = SavedView.objects.get()
    assert (view.name, view.query, view.columns, view.sort, view.kind) == (
        "Best MAML",
        "algorithm:maml",
        ["metric.val_loss"],
        "metric.val_loss",
        "all",
    )
    target = response["HX-Redirect"] if headers else response["Location"]
    assert target.startswith(LIST) and "cols=metric.val_loss" in target and "q=algorithm%3Amaml" in target
    client.force_login(users["viewer"])
    body = html.unescape(client.get(LIST).content.decode())
    assert f'data-saved-view="{view.pk}"' in body and "Best MAML" in body
    chips = body[body.index('id="saved-views"') :].split("</nav>")[0]
    assert chips.count("chip-active") == 1 and 'chip chip-active" href="/t/alpha/runs/"' in chips
    opened = html.unescape(client.get(target).content.decode())
    chip = opened[opened.index(f'data-saved-view="{view.pk}"') :]
    assert 'class="chip chip-active"' in chip.split("</a>")[0]
    assert f'data-delete-view="{view.pk}"' not in body  # a viewer deletes nothing
    assert 'id="saved-view-form"' not in body  # nor saves
    client.force_login(users["outsider"])
    assert (
        client.get(reverse("experiments:run-list", kwargs={"team_slug": "beta"})).content.count(
            b"data-saved-view="
        )
        == 0
    )


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_a_taken_name_is_a_field_error(client, team_roles, headers):
    team, users = team_roles
    services.saved_view_create(team=team, actor=users["admin"], name="Best MAML", columns=[])
    client.force_login(users["member"])
    response = client.post(CREATE, _post(name="best maml"), **headers)
    body = html.unescape(response.content.decode())
    assert response.status_code == 200 and SavedView.objects.count() == 1
    assert 'id="saved-view-name-error"' in body and "The team has a view called 'best maml' already." in body
    assert ("<html" in body) != bool(headers)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"q": "status:"}, "position 8"),
        ({"cols": "colour"}, "cols: unknown column 'colour'"),
        ({"sort": "-nope"}, "sort: unknown column 'nope'"),
        ({"name": "  "}, "This field is required."),
    ],
)
def test_a_view_the_list_cannot_read_is_refused_with_the_reason(client, team_roles, fields, message):
    _team, users = team_roles
    client.force_login(users["member"])
    response = client.post(CREATE, _post(**fields), **HTMX)
    assert response.status_code == 200 and message in html.unescape(response.content.decode())
    assert not SavedView.objects.exists()


def test_the_name_is_unique_per_team_not_across_teams(team_roles):
    team, users = team_roles
    other = users["outsider"].memberships.get().team
    services.saved_view_create(team=team, actor=users["member"], name="Mine", columns=[])
    services.saved_view_create(team=other, actor=users["outsider"], name="Mine", columns=[])
    with pytest.raises(ValidationError) as caught:
        services.saved_view_create(team=team, actor=users["admin"], name="MINE", columns=[])
    assert "name" in caught.value.message_dict


@pytest.mark.parametrize("headers", [{}, HTMX])
@pytest.mark.parametrize(
    ("role", "status", "deleted"),
    [("member", 302, True), ("admin", 302, True), ("viewer", 403, False), ("outsider", 404, False)],
)
def test_the_creator_or_an_admin_deletes(client, team_roles, headers, role, status, deleted):
    team, users = team_roles
    view = services.saved_view_create(team=team, actor=users["member"], name="Mine", columns=[])
    client.force_login(users[role])
    response = client.post(_delete_url(view), **headers)
    assert response.status_code == (200 if headers and status == 302 else status)
    assert SavedView.objects.filter(pk=view.pk).exists() != deleted


def test_another_member_may_not_delete_and_anonymous_is_sent_to_sign_in(client, team_roles):
    team, users = team_roles
    view = services.saved_view_create(team=team, actor=users["admin"], name="Admin's", columns=[])
    with pytest.raises(PermissionDenied):
        services.saved_view_delete(saved_view=view, actor=users["member"])
    response = client.post(_delete_url(view))
    assert response["Location"].startswith(reverse("login") + "?next=")
    assert SavedView.objects.filter(pk=view.pk).exists()
    assert client.get(reverse("experiments:run-list", kwargs={"team_slug": "alpha"})).status_code == 302


def test_saved_views_are_one_query(team_roles, django_assert_num_queries):
    team, users = team_roles
    for name in ("a", "b", "c"):
        services.saved_view_create(team=team, actor=users["member"], name=name, columns=[])
    with django_assert_num_queries(1):
        views = saved_view_list_for_team(team=team)
        assert [v.created_by.username for v in views] == ["member"] * 3


def _save_form_filters(body: str) -> str:
    """The value of the "Save this view" form's hidden ``filters`` field."""
    form = body[body.index('id="saved-view-form"') :].split("</form>")[0]
    return html.unescape(re.search(r'name="filters" value="([^"]*)"', form).group(1))


def test_the_filters_in_force_are_saved_and_the_view_opens_with_them(client, team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    failed = RunFactory(experiment=experiment, status=RunStatus.FAILED, archived_at=timezone.now())
    RunFactory(experiment=experiment, status=RunStatus.FAILED)
    RunFactory(experiment=experiment, status=RunStatus.FAILED, algorithm="reptile")
    RunFactory(experiment=experiment, status=RunStatus.SUCCEEDED)
    client.force_login(users["member"])
    state = "status=failed&algorithm=maml&archived=only&date_from=2000-01-01&launched_by=bogus"
    filters = _save_form_filters(client.get(f"{LIST}?{state}").content.decode())
    assert parse_qs(filters) == {  # the bad launched_by is not in force, so not kept
        "status": ["failed"], "algorithm": ["maml"], "date_from": ["2000-01-01"], "archived": ["only"]
    }  # fmt: skip
    response = client.post(f"{CREATE}?{state}", _post(q="", cols="", sort="", filters=filters))
    view = SavedView.objects.get()
    kept = {"status": "failed", "algorithm": "maml", "date_from": "2000-01-01", "archived": "only"}
    assert view.filters == kept
    target = response["Location"]
    assert parse_qs(urlsplit(target).query) == {key: [value] for key, value in view.filters.items()}
    opened = html.unescape(client.get(target).content.decode())
    assert re.findall(r'data-run-id="(\d+)"', opened) == [str(failed.pk)]
    chip = opened[opened.index(f'data-saved-view="{view.pk}"') :].split("</a>")[0]
    assert "chip-active" in chip
    plain = html.unescape(client.get(f"{LIST}?status=failed").content.decode())
    assert "chip-active" not in plain[plain.index(f'data-saved-view="{view.pk}"') :].split("</a>")[0]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ("status=bogus", "status: Select a valid choice. bogus is not one of the available choices."),
        ("colour=red", "filters: 'colour' is not one of status, algorithm, taskset"),
        ("date_to=yesterday", "To: Enter a valid date."),
        ("archived=all", "Archived: Select a valid choice."),
    ],
)
def test_a_filter_the_list_would_not_apply_is_refused_naming_it(client, team_roles, filters, message):
    _team, users = team_roles
    client.force_login(users["member"])
    response = client.post(CREATE, _post(filters=filters), **HTMX)
    assert response.status_code == 200 and message in html.unescape(response.content.decode())
    assert not SavedView.objects.exists()


def test_another_teams_task_set_is_not_a_filter(team_roles):
    team, users = team_roles
    mine, theirs = TaskSetFactory(team=team), TaskSetFactory(team=users["outsider"].memberships.get().team)
    with pytest.raises(ValidationError) as caught:
        services.saved_view_create(
            team=team, actor=users["member"], name="x", columns=[], filters={"taskset": str(theirs.pk)}
        )
    assert caught.value.message_dict["taskset"][0].startswith("Task set: Select a valid choice.")
    filters = {"taskset": str(mine.pk), "status": ""}
    view = services.saved_view_create(team=team, actor=users["member"], name="x", columns=[], filters=filters)
    assert view.filters == {"taskset": str(mine.pk)}
