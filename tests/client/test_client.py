"""``metaweb.client.Client`` against the real app (Django's live server)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from apps.experiments.models import Experiment, Run, RunStatus
from metaweb.client import ApiError, Client, NetworkError
from tests.factories import SMALL_CONFIG

LIGHT = (
    "import metaweb.client, metaweb.cli, sys; "
    "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'django', 'celery', 'torch'}); "
    "assert not heavy, heavy"
)


def test_importing_the_client_and_cli_imports_no_django_celery_or_torch():
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-c", LIGHT]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=root)
    assert result.returncode == 0, result.stderr


def test_team_defaults_to_the_tokens_team(world, member_client, make_client):
    assert member_client.teams() == [{"slug": "alpha", "name": "Alpha", "role": "member"}]
    assert member_client.team == "alpha"
    read_only = make_client(world["tokens"]["read_only"])
    assert read_only.teams()[0]["role"] == "viewer"


def test_tasksets_and_experiments_by_name(world, member_client):
    assert member_client.taskset_id("sines") == world["version"].taskset_id
    assert member_client.experiment_id("SINE STUDY") == world["experiment"].pk
    with pytest.raises(ApiError) as missing:
        member_client.experiment_id("nope")
    assert missing.value.status == 404 and missing.value.field == "experiment"
    created = member_client.experiment_id("fresh idea", create=True)
    assert Experiment.objects.get(pk=created).name == "fresh idea"
    with pytest.raises(ApiError) as duplicate:
        member_client.experiment_create("Fresh Idea")
    assert duplicate.value.status == 422 and duplicate.value.field == "name"
    assert "already" in duplicate.value.message


def test_run_list_get_search_and_pages(world, member_client):
    run = world["run"]
    page = member_client.runs(q="status:succeeded")
    assert [r["id"] for r in page["results"]] == [run.pk]
    assert member_client.runs(q="status:running")["results"] == []
    assert member_client.run(run.pk)["summary"] == {"metrics": {"loss": 0.02}}
    with pytest.raises(ApiError) as bad_query:
        member_client.runs(q="status:")
    assert bad_query.value.status == 422 and bad_query.value.loc == ["query", "q"]
    assert [r["id"] for r in member_client.iter_runs()] == [run.pk]


def test_metrics_events_csv_and_checkpoint(world, member_client, tmp_path):
    run = world["run"]
    series = member_client.run_metrics(run.pk, "loss", points=10)
    assert series["total"] == 50 and len(series["x"]) <= 10
    text = member_client.run_metrics_csv(run.pk)
    lines = text.strip().splitlines()
    assert lines[0] == "step,name,value" and len(lines) == 51 and lines[1] == "0,loss,1.0"
    assert member_client.run_events(run.pk)[0]["message"] == "Started on cpu."
    sha = member_client.run_checkpoint(run.pk, tmp_path / "ckpt.safetensors")
    assert sha == hashlib.sha256((tmp_path / "ckpt.safetensors").read_bytes()).hexdigest()


def test_launch_clone_and_cancel(world, member_client, sent):
    config = {k: v for k, v in SMALL_CONFIG.items() if k != "family"}
    launched = member_client.run_launch(experiment="Sine study", taskset="Sines", config=config)
    assert launched["status"] == "queued" and launched["kind"] == "train"
    assert [name for name, _, _ in sent] == ["workers.tasks.train_run"]
    clone = member_client.run_clone(launched["id"], config={"inner_lr": 0.05})
    assert clone["cloned_from_id"] == launched["id"] and clone["config"]["inner_lr"] == 0.05
    assert member_client.run_cancel(launched["id"])["status"] == "cancelled"
    assert Run.objects.get(pk=launched["id"]).status == RunStatus.CANCELLED


def test_a_sweep_from_python_takes_lists_of_any_kind_of_value(world, member_client, make_client):
    base = {k: v for k, v in SMALL_CONFIG.items() if k != "family"}
    sweep = member_client.sweep_launch(
        experiment="Sine study",
        taskset="Sines",
        config=base,
        dimensions={"seed": [0, 1], "first_order": [True, False], "meta_lr": [1e-3, 3e-4]},
        max_concurrent=2,
    )
    assert (sweep["planned"], sweep["waiting"], len(sweep["leaderboard"])) == (8, 6, 2)
    runs = Run.objects.filter(sweep_id=sweep["id"])
    assert {(r.config["first_order"], r.config["meta_lr"]) for r in runs} <= {
        (fo, lr) for fo in (True, False) for lr in (1e-3, 3e-4)
    }
    assert member_client.sweep(sweep["id"])["dimensions"] == sweep["dimensions"]
    assert [s["id"] for s in make_client(world["tokens"]["viewer"]).sweeps()["results"]] == [sweep["id"]]
    with pytest.raises(ApiError) as refused:
        member_client.sweep_launch(experiment="Sine study", taskset="Sines", dimensions={"seed": "0..2 log"})
    assert refused.value.status == 422 and refused.value.field == "dimensions.seed"
    with pytest.raises(ApiError) as viewer:
        make_client(world["tokens"]["viewer"]).sweep_stop(sweep["id"])
    assert viewer.value.status == 403
    assert member_client.sweep_stop(sweep["id"])["status"] == "stopped"


def test_tags_and_notes_of_runs_and_experiments_from_python(world, member_client):
    run = world["run"]
    assert member_client.run_tag(run.pk, ["..", "a.b"])["tags"] == ["..", "a.b"]
    assert member_client.run_untag(run.pk, "..")["tags"] == ["a.b"]  # a path segment, not a parent
    first = member_client.run_note(run.pk, "First.")
    assert member_client.run_note(run.pk, "Second.", version=first["note_version"])["note"] == "Second."
    with pytest.raises(ApiError) as stale:
        member_client.run_note(run.pk, "Third.", version=first["note_version"])
    assert stale.value.field == "note" and "saved this note" in stale.value.message
    experiment = member_client.experiment_tag("Sine study", ["Plan-A"])
    assert experiment["tags"] == ["plan-a"] and member_client.experiments(name="Sine study")[0]["tags"] == [
        "plan-a"
    ]
    assert [r["id"] for r in member_client.iter_runs(q="tag:plan-a")] == [run.pk]  # the experiment's runs
    assert [e["name"] for e in member_client.experiments(tag="Plan-A")] == ["Sine study"]
    assert member_client.experiments(tag="nope") == []
    assert member_client.experiment_note("Sine study", "Why: *lr*.")["note"] == "Why: *lr*."
    assert member_client.experiment_untag(experiment["id"], "plan-a")["tags"] == []


def test_archive_leaves_the_list_and_restore_brings_it_back(world, member_client, make_client):
    run = world["run"]
    (archived,) = member_client.runs_archive([run.pk])
    assert archived["id"] == run.pk and archived["archived_at"] is not None
    assert list(member_client.iter_runs()) == []
    assert [r["id"] for r in member_client.iter_runs(archived="only")] == [run.pk]
    assert [r["id"] for r in member_client.runs(archived="include")["results"]] == [run.pk]
    (restored,) = member_client.runs_restore([run.pk])
    assert restored["archived_at"] is None and [r["id"] for r in member_client.iter_runs()] == [run.pk]
    with pytest.raises(ApiError) as refused:
        member_client.runs_archive([run.pk, 2**40])
    assert refused.value.status == 422 and refused.value.field == "ids"
    assert "Not runs of this team" in str(refused.value)
    with pytest.raises(ApiError) as viewer:
        make_client(world["tokens"]["viewer"]).runs_archive([run.pk])
    assert viewer.value.status == 403
    with pytest.raises(ApiError) as bad:
        member_client.runs(archived="maybe")
    assert bad.value.status == 422 and bad.value.field == "archived"
    assert Run.objects.get(pk=run.pk).archived_at is None


def test_an_experiment_is_renamed_by_name_or_id(world, member_client, make_client):
    renamed = member_client.experiment_update("Sine study", name="Sines, 5-shot", description="K=5")
    assert (renamed["name"], renamed["description"]) == ("Sines, 5-shot", "K=5")
    again = member_client.experiment_update(renamed["id"], description="")
    assert (again["name"], again["description"]) == ("Sines, 5-shot", "")
    member_client.experiment_create("Other")
    with pytest.raises(ApiError) as taken:
        member_client.experiment_update(renamed["id"], name="other")
    assert taken.value.status == 422 and taken.value.field == "name"
    with pytest.raises(ApiError) as blank:
        member_client.experiment_update(renamed["id"], name=" ")
    assert blank.value.status == 422 and blank.value.field == "name"
    with pytest.raises(ApiError) as viewer:
        make_client(world["tokens"]["viewer"]).experiment_update(renamed["id"], name="Mine")
    assert viewer.value.status == 403
    assert Experiment.objects.get(pk=renamed["id"]).name == "Sines, 5-shot"


def test_a_bad_config_names_its_field(world, member_client, sent):
    with pytest.raises(ApiError) as refused:
        member_client.run_launch(experiment="Sine study", taskset="Sines", config={"inner_lr": -1})
    error = refused.value
    assert error.status == 422 and "inner_lr" in error.field, error.loc
    assert str(error).startswith("HTTP 422: ")
    assert sent == []


def test_models_resolve_pull_card_and_alias_rules(world, member_client, tmp_path):
    model = world["meta_model"]
    for ref in ("sine-maml@production", "sine-maml:1", "sine-maml", str(model.pk)):
        assert member_client.model_resolve(ref)["id"] == model.pk
    with pytest.raises(ApiError) as missing:
        member_client.model_resolve("sine-maml@staging")
    assert missing.value.status == 404
    with pytest.raises(ApiError) as bad:
        member_client.model_resolve("no spaces allowed")
    assert bad.value.status == 422 and bad.value.field == "ref"
    assert [m["id"] for m in member_client.models()["results"]] == [model.pk]
    assert member_client.model_card(model.pk)["aliases"] == ["production"]
    sha = member_client.model_weights(model.pk, tmp_path / "m.safetensors")
    assert sha == model.weights_sha256
    with pytest.raises(ApiError) as unapproved:  # production needs an approve verdict
        member_client.model_alias(model.pk, "production")
    assert unapproved.value.status == 422
    assert member_client.model_alias(model.pk, "candidate")["alias"] == "candidate"


def test_other_teams_and_read_only_tokens(world, make_client):
    outsider = make_client(world["tokens"]["other_team"], team="alpha")
    with pytest.raises(ApiError) as hidden:
        outsider.run(world["run"].pk)
    assert hidden.value.status == 404
    viewer = make_client(world["tokens"]["viewer"])
    with pytest.raises(ApiError) as forbidden:
        viewer.run_cancel(world["run"].pk)
    assert forbidden.value.status == 403 and "member" in forbidden.value.message
    with pytest.raises(ApiError) as unauthenticated:
        make_client("mwp_wrong_token").teams()
    assert unauthenticated.value.status == 401


def test_network_errors_and_bad_addresses():
    with pytest.raises(NetworkError) as down:
        Client("http://127.0.0.1:9", "mwp_x_y").teams()
    assert down.value.status == 0 and "Cannot reach" in str(down.value)
    with pytest.raises(ApiError):
        Client("ftp://example.com", "t")
    with pytest.raises(ApiError) as path_like:
        Client("http://127.0.0.1:9", "t", team="../admin").runs()
    assert path_like.value.field == "team"


def test_saved_views_from_python(world, member_client, make_client):
    run = world["run"]  # a succeeded MAML run
    view = member_client.saved_view_create("Done", query="algorithm:maml", filters={"status": "succeeded"})
    assert view["list_url"] == "/t/alpha/runs/?q=algorithm%3Amaml&status=succeeded"
    assert [v["name"] for v in make_client(world["tokens"]["viewer"]).saved_views()] == ["Done"]
    assert [r["id"] for r in member_client.iter_runs(view="done")] == [run.pk]
    member_client.saved_view_create("Failed", filters={"status": "failed"})
    assert member_client.runs(view="Failed")["results"] == []
    with pytest.raises(ApiError) as taken:
        member_client.saved_view_create("DONE")
    assert taken.value.field == "name" and "already" in taken.value.message
    with pytest.raises(ApiError) as mixed:
        member_client.runs(view="Done", q="status:failed")
    assert mixed.value.loc == ["query", "view"]
    assert member_client.saved_view_delete("failed")["detail"] == "Deleted the saved view 'Failed'."
    with pytest.raises(ApiError) as gone:
        member_client.saved_view_delete("Failed")
    assert gone.value.status == 404
