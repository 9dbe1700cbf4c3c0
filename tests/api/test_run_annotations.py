"""Tags and notes of runs from scripts: the pages' rules (names, the cap per run, the
note's length and its guard against overwriting someone's newer note), all or none,
and run lists that read the tags without a query per run."""

from __future__ import annotations

import json

import pytest

from apps.experiments.models import NOTE_MAX_LENGTH
from apps.experiments.services.annotations import MAX_TAGS_PER_OBJECT
from tests.api.conftest import bearer
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def _url(world, tail=""):
    return f"/api/v1/teams/{world['team'].slug}/runs/{world['run'].pk}{tail}"


def _send(client, world, method, tail, body=None, who="member"):
    data = json.dumps(body) if body is not None else ""
    call = getattr(client, method)
    return call(_url(world, tail), data=data, content_type="application/json", **bearer(world["tokens"][who]))


def test_tags_are_added_found_by_the_search_and_removed(client, api_world):
    response = _send(client, api_world, "post", "/tags", {"tags": ["Baseline", "paper-v2", "baseline"]})
    assert response.status_code == 200 and response.json()["tags"] == ["baseline", "paper-v2"]
    found = client.get(
        f"/api/v1/teams/{api_world['team'].slug}/runs",
        {"q": "tag:baseline"},
        **bearer(api_world["tokens"]["viewer"]),
    ).json()
    assert [run["id"] for run in found["results"]] == [api_world["run"].pk]
    assert found["results"][0]["tags"] == ["baseline", "paper-v2"]
    assert _send(client, api_world, "delete", "/tags/Baseline").json()["tags"] == ["paper-v2"]
    assert _send(client, api_world, "delete", "/tags/never-there").json()["tags"] == ["paper-v2"]


def test_a_bad_name_refuses_every_tag_of_the_request(client, api_world):
    response = _send(client, api_world, "post", "/tags", {"tags": ["good", "no spaces!"]})
    assert response.status_code == 422
    (item,) = response.json()["detail"]
    assert item["loc"] == ["body", "tags.1"] and "letters, digits" in item["msg"]
    assert api_world["run"].tags.count() == 0


def test_the_cap_per_run_names_the_tag_that_went_over(client, api_world):
    names = [f"t{i}" for i in range(MAX_TAGS_PER_OBJECT - 1)]
    assert _send(client, api_world, "post", "/tags", {"tags": names}).status_code == 200
    response = _send(client, api_world, "post", "/tags", {"tags": ["one-more", "too-many"]})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "loc": ["body", "tags.1"],
            "msg": f"A run carries at most {MAX_TAGS_PER_OBJECT} tags; remove one first.",
        }
    ]
    assert api_world["run"].tags.count() == MAX_TAGS_PER_OBJECT - 1  # the first of the two is rolled back too


def test_a_note_is_not_written_over_a_newer_one(client, api_world):
    first = _send(client, api_world, "put", "/note", {"note": "Lr 0.01 *wins*."}).json()
    assert first["note"] == "Lr 0.01 *wins*." and first["note_version"]
    second = _send(
        client, api_world, "put", "/note", {"note": "Mine.", "note_version": first["note_version"]}
    )
    assert second.status_code == 200 and second.json()["note"] == "Mine."
    stale = _send(
        client, api_world, "put", "/note", {"note": "Theirs.", "note_version": first["note_version"]}
    )
    assert stale.status_code == 422
    (item,) = stale.json()["detail"]
    assert item["loc"] == ["body", "note"] and "member saved this note" in item["msg"]
    assert _send(client, api_world, "put", "/note", {"note": "Overwrite."}).json()["note"] == "Overwrite."
    too_long = _send(client, api_world, "put", "/note", {"note": "x" * (NOTE_MAX_LENGTH + 1)})
    assert too_long.status_code == 422 and "at most 20,000 characters" in too_long.json()["detail"][0]["msg"]


def test_viewers_read_tags_but_do_not_write_them(client, api_world):
    assert _send(client, api_world, "post", "/tags", {"tags": ["x"]}, who="viewer").status_code == 403
    assert _send(client, api_world, "put", "/note", {"note": "x"}, who="viewer").status_code == 403
    assert client.get(_url(api_world), **bearer(api_world["tokens"]["viewer"])).json()["tags"] == []


def test_the_run_list_reads_tags_without_a_query_per_run(client, api_world, django_assert_max_num_queries):
    auth = bearer(api_world["tokens"]["viewer"])
    url = f"/api/v1/teams/{api_world['team'].slug}/runs"
    _send(client, api_world, "post", "/tags", {"tags": ["a", "b"]})
    with django_assert_max_num_queries(30) as few:
        assert len(client.get(url, **auth).json()["results"]) == 3  # the run, an external one, an adaptation
    tagged = {api_world["run"].pk}
    for _ in range(8):
        run = RunFactory(experiment=api_world["experiment"], taskset_version=api_world["version"])
        run.tags.add(*api_world["run"].tags.all())
        tagged.add(run.pk)
    with django_assert_max_num_queries(len(few.captured_queries)):
        body = client.get(url, **auth).json()
    assert len(body["results"]) == 11
    assert {r["id"] for r in body["results"] if r["tags"] == ["a", "b"]} == tagged
