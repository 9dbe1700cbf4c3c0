"""Tags and notes on runs and experiments: the services, the htmx panels (with and
without ``HX-Request``), the permission matrix of every endpoint, and the query
count of the run lists that show tags."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.experiments import selectors, services
from apps.experiments.models import NOTE_MAX_LENGTH, Experiment, Run, Tag
from apps.experiments.services.annotations import MAX_TAGS_PER_OBJECT
from tests.factories import ExperimentFactory, RunFactory, TaskSetVersionFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def world(team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"], name="Sine study")
    version = TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", params={})
    run = RunFactory(experiment=experiment, taskset_version=version)
    return {"team": team, "users": users, "experiment": experiment, "run": run}


def target_of(world, kind: str) -> Run | Experiment:
    return world[kind]


# -- services ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["run", "experiment"])
def test_tag_add_creates_the_team_tag_once_and_reuses_it(world, kind):
    target, member = target_of(world, kind), world["users"]["member"]
    tag = services.tag_add(target=target, actor=member, name="  Baseline ")
    assert (tag.name, tag.team_id) == ("baseline", world["team"].pk)
    again = services.tag_add(target=target, actor=member, name="BASELINE")
    assert again.pk == tag.pk
    other = RunFactory(experiment=world["experiment"], taskset_version=world["run"].taskset_version)
    assert services.tag_add(target=other, actor=member, name="baseline").pk == tag.pk
    assert Tag.objects.filter(team=world["team"]).count() == 1
    assert list(target.tags.values_list("name", flat=True)) == ["baseline"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Give the tag a name."),
        ("   ", "Give the tag a name."),
        ("two words", "without spaces"),
        ("a/b", "without spaces"),
        ("<script>", "without spaces"),
        ("x" * 41, "at most 40"),
    ],
)
def test_tag_add_refuses_a_bad_name_on_the_name_field(world, name, message):
    with pytest.raises(ValidationError) as caught:
        services.tag_add(target=world["run"], actor=world["users"]["member"], name=name)
    assert message in " ".join(caught.value.message_dict["name"])
    assert not Tag.objects.exists()


def test_tag_names_allow_letters_digits_dots_dashes_and_unicode(world):
    member = world["users"]["member"]
    for name in ("paper-v2.1", "lr_0.01", "Ébauche"):
        services.tag_add(target=world["run"], actor=member, name=name)
    assert sorted(world["run"].tags.values_list("name", flat=True)) == ["lr_0.01", "paper-v2.1", "ébauche"]


def test_tag_add_caps_the_tags_of_one_object(world):
    member = world["users"]["member"]
    for number in range(MAX_TAGS_PER_OBJECT):
        services.tag_add(target=world["run"], actor=member, name=f"t{number}")
    with pytest.raises(ValidationError) as caught:
        services.tag_add(target=world["run"], actor=member, name="one-more")
    assert f"at most {MAX_TAGS_PER_OBJECT} tags" in caught.value.message_dict["name"][0]
    services.tag_add(target=world["run"], actor=member, name="t0")  # already there: fine


def test_tag_remove_takes_it_off_one_object_and_keeps_the_team_vocabulary(world):
    member = world["users"]["member"]
    tag = services.tag_add(target=world["run"], actor=member, name="baseline")
    services.tag_add(target=world["experiment"], actor=member, name="baseline")
    services.tag_remove(target=world["run"], actor=member, tag_id=tag.pk)
    services.tag_remove(target=world["run"], actor=member, tag_id=tag.pk)  # twice: nothing happens
    assert not world["run"].tags.exists()
    assert list(world["experiment"].tags.all()) == [tag]
    assert Tag.objects.filter(pk=tag.pk).exists()


def test_tag_remove_ignores_another_teams_tag(world):
    member = world["users"]["member"]
    services.tag_add(target=world["run"], actor=member, name="baseline")
    foreign = Tag.objects.create(team=world["users"]["outsider"].memberships.get().team, name="baseline")
    services.tag_remove(target=world["run"], actor=member, tag_id=foreign.pk)
    assert world["run"].tags.count() == 1


@pytest.mark.parametrize("kind", ["run", "experiment"])
def test_note_update_records_text_author_and_time(world, kind):
    target, admin = target_of(world, kind), world["users"]["admin"]
    services.note_update(target=target, actor=admin, text="# Result\r\n\r\nLoss fell.  \n\n")
    target.refresh_from_db()
    assert target.note == "# Result\n\nLoss fell."
    assert target.note_updated_by == admin
    assert target.note_updated_at is not None
    services.note_update(target=target, actor=admin, text="")
    target.refresh_from_db()
    assert target.note == ""


def test_note_update_refuses_a_note_too_long(world):
    with pytest.raises(ValidationError) as caught:
        services.note_update(
            target=world["run"], actor=world["users"]["member"], text="x" * (NOTE_MAX_LENGTH + 1)
        )
    assert "at most 20,000 characters" in caught.value.message_dict["note"][0]
    world["run"].refresh_from_db()
    assert world["run"].note == ""


@pytest.mark.parametrize(
    "write",
    [
        lambda target, user: services.tag_add(target=target, actor=user, name="x"),
        lambda target, user: services.tag_remove(target=target, actor=user, tag_id=1),
        lambda target, user: services.note_update(target=target, actor=user, text="x"),
    ],
    ids=["tag_add", "tag_remove", "note_update"],
)
@pytest.mark.parametrize("kind", ["run", "experiment"])
def test_viewers_and_other_teams_may_not_write(world, write, kind):
    target = target_of(world, kind)
    with pytest.raises(PermissionDenied):
        write(target, world["users"]["viewer"])
    with pytest.raises(Http404):
        write(target, world["users"]["outsider"])
    assert not Tag.objects.exists()
    target.refresh_from_db()
    assert target.note == ""


# -- the permission matrix of the endpoints ---------------------------------------------------

ENDPOINTS = ["tag-add", "tag-remove", "note"]
EXPECTED = {"viewer": 403, "member": 302, "admin": 302, "outsider": 404}


def endpoint(world, kind: str, name: str) -> tuple[str, dict[str, str]]:
    target = target_of(world, kind)
    if name == "tag-add":
        return reverse(f"experiments:{kind}-tag-add", kwargs={"pk": target.pk}), {"name": "fresh"}
    if name == "tag-remove":
        tag = services.tag_add(target=target, actor=world["users"]["admin"], name="old")
        url = reverse(f"experiments:{kind}-tag-remove", kwargs={"pk": target.pk, "tag_id": tag.pk})
        return url, {}
    return reverse(f"experiments:{kind}-note", kwargs={"pk": target.pk}), {"note": "*hello*"}


def written(world, kind: str) -> tuple[list[str], str]:
    target = target_of(world, kind)
    target.refresh_from_db()
    return sorted(target.tags.values_list("name", flat=True)), target.note


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize("who", ["anonymous", "outsider", "viewer", "member", "admin"])
@pytest.mark.parametrize("name", ENDPOINTS)
@pytest.mark.parametrize("kind", ["run", "experiment"])
def test_permission_matrix(client, world, kind, name, who, htmx):
    url, data = endpoint(world, kind, name)
    before = written(world, kind)
    if who != "anonymous":
        client.force_login(world["users"][who])
    response = client.post(url, data, **(HTMX if htmx else {}))
    if who == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")
    elif EXPECTED[who] == 302:
        assert response.status_code == (200 if htmx else 302)
        assert written(world, kind) != before
        return
    else:
        assert response.status_code == EXPECTED[who]
        if htmx:  # the htmx error toast shows this text
            assert response["Content-Type"].startswith("text/plain")
            expected = "member role" if who == "viewer" else "No such"
            assert expected in response.content.decode()
    assert written(world, kind) == before


@pytest.mark.parametrize("name", ENDPOINTS)
def test_the_endpoints_refuse_get(client, world, name):
    client.force_login(world["users"]["member"])
    url, _ = endpoint(world, "run", name)
    assert client.get(url).status_code == 405


# -- the panels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["run", "experiment"])
def test_a_member_sees_the_edit_controls_and_the_team_tags(client, world, kind):
    target = target_of(world, kind)
    services.tag_add(target=world["run"], actor=world["users"]["member"], name="baseline")
    services.tag_add(target=world["experiment"], actor=world["users"]["member"], name="ablation")
    client.force_login(world["users"]["member"])
    page = client.get(reverse(f"experiments:{kind}-detail", args=[target.pk])).content.decode()
    assert 'id="tags-panel"' in page and 'id="note-panel"' in page
    assert 'list="team-tags"' in page
    assert '<option value="ablation">' in page and '<option value="baseline">' in page
    assert 'id="note-text"' in page and 'data-testid="remove-tag-' in page
    own = "baseline" if kind == "run" else "ablation"
    assert f'href="/t/alpha/runs/?q=tag%3A{own}"' in page


@pytest.mark.parametrize("kind", ["run", "experiment"])
def test_a_viewer_sees_tags_and_note_but_no_controls(client, world, kind):
    target = target_of(world, kind)
    services.tag_add(target=target, actor=world["users"]["member"], name="baseline")
    services.note_update(target=target, actor=world["users"]["member"], text="**kept**")
    client.force_login(world["users"]["viewer"])
    page = client.get(reverse(f"experiments:{kind}-detail", args=[target.pk])).content.decode()
    assert 'data-tag="baseline"' in page and "<strong>kept</strong>" in page
    assert "Edited by member" in page
    for control in ('id="tag-name"', 'id="note-text"', "remove-tag-", "team-tags"):
        assert control not in page


def test_the_live_refresh_partial_leaves_the_panels_out(client, world):
    """The run page's status card is re-read while a run trains: the panels stay out of it."""
    client.force_login(world["users"]["member"])
    url = reverse("experiments:run-detail", args=[world["run"].pk])
    response = client.get(url, **HTMX)
    assert 'id="tags-panel"' not in response.content.decode()


def test_htmx_add_returns_the_panel_with_the_new_chip(client, world):
    client.force_login(world["users"]["member"])
    url = reverse("experiments:run-tag-add", kwargs={"pk": world["run"].pk})
    response = client.post(url, {"name": "Paper-v2"}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith("<div") and 'id="tags-panel"' in body
    assert 'data-tag="paper-v2"' in body and "<html" not in body


def test_htmx_add_shows_the_error_on_the_field_and_keeps_the_text(client, world):
    client.force_login(world["users"]["member"])
    url = reverse("experiments:experiment-tag-add", kwargs={"pk": world["experiment"].pk})
    response = client.post(url, {"name": "two words"}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="tag-name-error"' in body and "without spaces" in body
    assert 'aria-invalid="true"' in body and 'value="two words"' in body
    assert not Tag.objects.exists()


def test_a_plain_post_with_an_error_redirects_with_the_message(client, world):
    client.force_login(world["users"]["member"])
    url = reverse("experiments:run-tag-add", kwargs={"pk": world["run"].pk})
    response = client.post(url, {"name": "a b"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("experiments:run-detail", args=[world["run"].pk])
    assert "Tag: A tag is at most 40" in response.content.decode()


def test_htmx_remove_returns_the_panel_without_the_chip(client, world):
    tag = services.tag_add(target=world["run"], actor=world["users"]["member"], name="baseline")
    client.force_login(world["users"]["admin"])
    url = reverse("experiments:run-tag-remove", kwargs={"pk": world["run"].pk, "tag_id": tag.pk})
    body = client.post(url, **HTMX).content.decode()
    assert 'data-tag="baseline"' not in body and 'id="no-tags"' in body
    assert '<option value="baseline">' in body  # still suggested


def test_htmx_note_returns_the_rendered_note(client, world):
    client.force_login(world["users"]["member"])
    url = reverse("experiments:run-note", kwargs={"pk": world["run"].pk})
    body = client.post(url, {"note": "## Findings\n\n- fast\n- `lr=0.01`"}, **HTMX).content.decode()
    assert "<h2>Findings</h2>" in body and "<li><code>lr=0.01</code></li>" in body
    assert "Edited by member" in body


def test_htmx_note_too_long_keeps_the_text_and_names_the_field(client, world):
    client.force_login(world["users"]["member"])
    url = reverse("experiments:run-note", kwargs={"pk": world["run"].pk})
    text = "y" * (NOTE_MAX_LENGTH + 5)
    body = client.post(url, {"note": text}, **HTMX).content.decode()
    assert 'id="note-text-error"' in body and "at most 20,000 characters" in body
    assert '<details id="note-edit" open>' in body and text in body


# -- run lists: tags without N+1 ----------------------------------------------------------------


def list_queries(client, url) -> int:
    client.get(url)  # a first visit records the team as last used (once per switch): not counted
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


def add_tagged_runs(world, count: int) -> None:
    member = world["users"]["member"]
    for number in range(count):
        run = RunFactory(experiment=world["experiment"], taskset_version=world["run"].taskset_version)
        services.tag_add(target=run, actor=member, name=f"tag-{number}")
        services.tag_add(target=run, actor=member, name="shared")


@pytest.mark.parametrize(
    "url",
    [
        lambda w: reverse("experiments:run-list", kwargs={"team_slug": "alpha"}),
        lambda w: reverse("experiments:experiment-detail", args=[w["experiment"].pk]),
    ],
    ids=["run-list", "experiment-detail"],
)
def test_run_rows_show_tags_in_constant_queries(client, world, url):
    client.force_login(world["users"]["member"])
    add_tagged_runs(world, 2)
    few = list_queries(client, url(world))
    add_tagged_runs(world, 6)
    many = list_queries(client, url(world))
    assert many == few
    page = client.get(url(world)).content.decode()
    assert page.count('class="chip chip-tag" data-tag="shared"') == 8
    assert 'href="/t/alpha/runs/?q=tag%3Ashared"' in page


def test_run_list_selector_prefetches_tags_in_one_query(world, django_assert_num_queries):
    add_tagged_runs(world, 5)
    runs = selectors.run_list_for_experiment(experiment=world["experiment"])
    with django_assert_num_queries(0):
        names = [sorted(tag.name for tag in run.tags.all()) for run in runs]
    assert names.count([]) == 1 and ["shared", "tag-0"] in names


# -- two people editing one note ------------------------------------------------------------------


def test_note_update_refuses_to_overwrite_a_note_saved_meanwhile(world):
    run, member, admin = world["run"], world["users"]["member"], world["users"]["admin"]
    opened = services.note_version(run)
    assert opened == ""
    services.note_update(target=run, actor=admin, text="admin's findings", base_version=opened)
    stale = Run.objects.get(pk=run.pk)
    fresh_version = services.note_version(stale)
    with pytest.raises(ValidationError) as caught:
        services.note_update(target=stale, actor=member, text="member's", base_version=opened)
    assert "admin saved this note at " in caught.value.message_dict["note"][0]
    assert Run.objects.get(pk=run.pk).note == "admin's findings"
    services.note_update(target=stale, actor=member, text="merged", base_version=fresh_version)
    services.note_update(target=stale, actor=member, text="no version: last write wins")
    assert Run.objects.get(pk=run.pk).note == "no version: last write wins"


def test_the_form_shows_theirs_keeps_mine_and_a_second_save_goes_through(client, world):
    experiment, member = world["experiment"], world["users"]["member"]
    client.force_login(member)
    page = client.get(reverse("experiments:experiment-detail", args=[experiment.pk])).content.decode()
    opened = re.search(r'name="base_version" value="([^"]*)"', page).group(1)
    services.note_update(target=experiment, actor=world["users"]["admin"], text="**theirs**")
    url = reverse("experiments:experiment-note", kwargs={"pk": experiment.pk})
    body = client.post(url, {"note": "mine", "base_version": opened}, **HTMX).content.decode()
    assert 'id="note-text-error"' in body and "admin saved this note" in body
    assert "<strong>theirs</strong>" in body and ">mine</textarea>" in body
    newer = re.search(r'name="base_version" value="([^"]*)"', body).group(1)
    assert newer != opened
    body = client.post(url, {"note": "theirs and mine", "base_version": newer}, **HTMX).content.decode()
    assert 'id="note-text-error"' not in body
    experiment.refresh_from_db()
    assert experiment.note == "theirs and mine"


# -- the experiment list: tag chips and the tag filter ----------------------------------------------


def tagged_experiments(world, count: int, *, start: int = 0) -> list[Experiment]:
    made = []
    for number in range(start, start + count):
        experiment = ExperimentFactory(team=world["team"], created_by=world["users"]["member"])
        RunFactory(experiment=experiment, taskset_version=world["run"].taskset_version)
        services.tag_add(target=experiment, actor=world["users"]["member"], name=f"tag-{number % 2}")
        made.append(experiment)
    return made


def test_experiment_list_shows_tags_in_constant_queries(client, world):
    client.force_login(world["users"]["viewer"])
    url = reverse("experiments:experiment-list", kwargs={"team_slug": "alpha"})
    tagged_experiments(world, 2)
    few = list_queries(client, url)
    tagged_experiments(world, 6, start=2)
    assert list_queries(client, url) == few
    page = client.get(url).content.decode()
    assert page.count('class="chip chip-tag" data-tag="tag-0"') == 4
    assert 'href="?tag=tag-1"' in page


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_experiment_list_filters_by_tag_without_multiplying_run_counts(client, world, htmx):
    made = tagged_experiments(world, 4)
    services.tag_add(target=made[0], actor=world["users"]["member"], name="extra")
    RunFactory(experiment=made[0], taskset_version=world["run"].taskset_version)
    client.force_login(world["users"]["member"])
    url = reverse("experiments:experiment-list", kwargs={"team_slug": "alpha"})
    body = client.get(url, {"tag": " TAG-0 "}, **(HTMX if htmx else {})).content.decode()
    shown = {int(pk) for pk in re.findall(r'id="experiment-row-(\d+)"', body)}
    assert shown == {made[0].pk, made[2].pk}
    assert 'id="tag-filter"' in body and "?q=tag%3Atag-0" in body
    row = body[body.index(f'id="experiment-row-{made[0].pk}"') :]
    assert re.search(r'data-testid="run-count">2<', row)
    assert ("<html" in body) is not htmx


def test_experiment_list_names_a_bad_tag_and_lists_nothing_filtered(client, world):
    tagged_experiments(world, 1)
    client.force_login(world["users"]["member"])
    url = reverse("experiments:experiment-list", kwargs={"team_slug": "alpha"})
    body = client.get(url, {"tag": "no such/tag"}).content.decode()
    assert 'id="tag-filter-error"' in body and "Tag: A tag is at most 40" in body
    assert 'id="tag-filter"' not in body
    body = client.get(url, {"tag": "unused"}).content.decode()
    assert "No experiment is tagged unused." in body
