"""The ``metaweb`` command line against the real app: exit codes, one-line errors,
tables and ``--json``."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from apps.experiments.models import Run, SavedView, Sweep
from metaweb.cli import main
from tests.client.conftest import one_line
from tests.factories import SMALL_CONFIG, RunFactory, metric_points_add

ROOT = Path(__file__).resolve().parents[2]


def test_login_stores_the_token_readable_by_its_owner_only(world, cli, _config_home):
    code, out, _ = cli("login", "--url", world["url"] + "/", "--token", world["tokens"]["member"])
    assert code == 0 and "team alpha (member)" in out
    path = _config_home / "metaweb" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "url": world["url"],
        "token": world["tokens"]["member"],
        "team": "alpha",
    }


def test_login_reads_the_token_from_stdin(world, cli, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(world["tokens"]["viewer"] + "\n"))
    code, out, _ = cli("login", "--url", world["url"], "--json")
    assert code == 0 and json.loads(out)["role"] == "viewer"


def test_login_with_a_bad_token_is_one_line(world, cli, _config_home):
    code, _, err = cli("login", "--url", world["url"], "--token", "mwp_bad_token")
    assert code == 1 and "HTTP 401" in one_line(err)
    assert not (_config_home / "metaweb" / "config.json").exists()


def test_commands_need_a_login(cli):
    code, _, err = cli("runs", "ls")
    assert code == 1 and "metaweb login" in one_line(err)


def test_usage_mistakes_exit_64(cli):
    code, _, err = cli("runs", "show", "not-a-number")
    assert code == 64 and "invalid int value" in one_line(err)


def test_runs_ls_table_json_and_query_errors(logged_in, cli):
    run = logged_in["run"]
    code, out, _ = cli("runs", "ls")
    header, row = out.strip().splitlines()
    assert code == 0 and header.split()[:4] == ["ID", "STATUS", "KIND", "ALGORITHM"]
    assert row.split()[:5] == [str(run.pk), "succeeded", "train", "maml", "49/50"]
    code, out, _ = cli("runs", "ls", "--query", "status:succeeded", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [run.pk]
    code, out, _ = cli("runs", "ls", "-q", "status:failed")
    assert code == 0 and out.strip() == "No runs match."
    code, _, err = cli("runs", "ls", "--query", "status:")
    assert code == 1 and "HTTP 422: q: " in one_line(err)


def test_runs_show_metrics_and_csv(logged_in, cli):
    run = logged_in["run"]
    code, out, _ = cli("runs", "show", str(run.pk))
    assert code == 0 and "final loss  0.02" in out and "49/50" in out
    code, out, _ = cli("runs", "metrics", str(run.pk))
    assert code == 0 and out.splitlines()[1].split() == ["loss", "50", "0", "49", "0.02"]
    code, out, _ = cli("runs", "metrics", str(run.pk), "--csv")
    assert (
        code == 0
        and out.splitlines()[:2] == ["step,name,value", "0,loss,1.0"]
        and len(out.splitlines()) == 51
    )
    code, _, err = cli("runs", "show", "999999")
    assert code == 1 and "HTTP 404" in one_line(err)


def test_runs_launch_and_cancel(logged_in, cli, tmp_path, sent):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({k: v for k, v in SMALL_CONFIG.items() if k != "family"}))
    code, out, err = cli("runs", "launch", "--taskset", "Sines", "--config", str(config), "--json")
    assert code == 0, err
    launched = json.loads(out)
    assert launched["status"] == "queued"
    assert Run.objects.get(pk=launched["id"]).experiment.name == "cli"
    assert [run_id for run_id, _ in sent.runs()] == [launched["id"]]
    code, out, _ = cli("runs", "cancel", str(launched["id"]))
    assert code == 0 and out.strip() == f"Run {launched['id']} cancelled."
    code, _, err = cli("runs", "cancel", str(launched["id"]))
    assert code == 1 and one_line(err).endswith("status: This run has cancelled already.")
    config.write_text(json.dumps({"inner_lr": -1}))
    code, _, err = cli("runs", "launch", "--taskset", "Sines", "--config", str(config))
    assert code == 1 and "inner_lr" in one_line(err)
    code, _, err = cli("runs", "launch", "--taskset", "Nope", "--config", str(config))
    assert code == 1 and "no task set called 'Nope'" in one_line(err)
    code, _, err = cli("runs", "launch", "--taskset", "Sines", "--config", str(tmp_path / "missing.json"))
    assert code == 1 and "Cannot read the config" in one_line(err)


def test_runs_archive_ls_and_restore(logged_in, cli):
    run = logged_in["run"]
    code, out, err = cli("runs", "archive", str(run.pk))
    assert code == 0 and out.strip() == f"Archived 1 run: {run.pk}.", err
    code, out, _ = cli("runs", "ls")
    assert code == 0 and out.strip() == "No runs yet."
    code, out, _ = cli("runs", "ls", "--archived", "only", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [run.pk]
    code, out, _ = cli("runs", "restore", str(run.pk), "--json")
    assert code == 0 and json.loads(out)[0]["archived_at"] is None
    code, _, err = cli("runs", "archive", str(run.pk), "999999999")
    assert code == 1 and "ids: Not runs of this team: #999999999." in one_line(err)


def test_runs_views_and_ls_of_a_view(logged_in, cli):
    code, out, _ = cli("runs", "views")
    assert code == 0 and out.startswith("No saved views yet")
    SavedView.objects.create(
        team=logged_in["team"],
        name="Good",
        query="algorithm:maml",
        filters={"status": "succeeded"},
        created_by=logged_in["users"]["member"],
    )
    code, out, _ = cli("runs", "views")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "NAME", "QUERY", "BY", "URL"]
    assert lines[1].split()[1:4] == ["Good", "algorithm:maml", "member"]
    assert lines[1].endswith(f"{logged_in['url']}/t/alpha/runs/?q=algorithm%3Amaml&status=succeeded")
    code, out, _ = cli("runs", "ls", "--view", "good", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [logged_in["run"].pk]
    code, _, err = cli("runs", "ls", "--view", "Bad")
    assert code == 1 and one_line(err).endswith("HTTP 422: view: This team has no saved view called 'Bad'.")


def test_runs_tag_untag_and_note(logged_in, cli, tmp_path):
    run = logged_in["run"]
    code, out, err = cli("runs", "tag", str(run.pk), "Baseline", "paper.v2")
    assert code == 0 and out.strip() == f"Run {run.pk} tags: baseline, paper.v2.", err
    code, out, _ = cli("runs", "ls", "-q", "tag:paper.v2", "--json")
    assert [r["id"] for r in json.loads(out)] == [run.pk]
    code, out, _ = cli("runs", "show", str(run.pk))
    assert "tags" in out and "baseline, paper.v2" in out
    code, out, _ = cli("runs", "untag", str(run.pk), "paper.v2")
    assert code == 0 and out.strip() == f"Run {run.pk} tags: baseline."
    note = tmp_path / "note.md"
    note.write_text("Lr 0.01 **wins** over 3 seeds.\n")
    code, out, _ = cli("runs", "note", str(run.pk), str(note), "--json")
    assert code == 0 and json.loads(out)["note"] == "Lr 0.01 **wins** over 3 seeds."
    code, _, err = cli("runs", "tag", str(run.pk), "no spaces!")
    assert code == 1 and "HTTP 422: tags.0: " in one_line(err)
    code, _, err = cli("runs", "note", str(run.pk), str(tmp_path / "missing.md"))
    assert code == 1 and "Cannot read the note" in one_line(err)


def test_sweeps_launch_show_ls_and_stop(logged_in, cli, tmp_path, sent):
    config = tmp_path / "base.json"
    config.write_text(json.dumps({k: v for k, v in SMALL_CONFIG.items() if k not in ("family", "algorithm")}))
    argv = ["sweeps", "launch", "--taskset", "Sines", "--config", str(config), "--max-concurrent", "4"]
    code, out, err = cli(*argv, "--dim", "seed=0,1", "--dim", "inner_lr=0.01, 0.1", "--name", "lr x seed")
    sweep = Sweep.objects.get()
    assert code == 0 and out.startswith(f"Sweep {sweep.pk} (lr x seed): 4 runs, http"), err
    assert out.strip().endswith(f"/t/alpha/sweeps/{sweep.pk}/") and sweep.runs.count() == 4
    for run in Run.objects.filter(sweep=sweep):  # two seeds of each rate finish
        loss = run.config["inner_lr"] * 10 + run.config["seed"]
        metric_points_add(run, [("val_loss", 20, loss)])
        Run.objects.filter(pk=run.pk).update(status="succeeded", step=20)
    code, out, _ = cli("sweeps", "show", str(sweep.pk))
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith(f"Sweep {sweep.pk} (lr x seed): running, grid; ranked by")
    assert lines[2].split() == ["RANK", "RUN", "STATUS", "VAL_LOSS", "SEED", "INNER_LR"]
    assert [line.split()[3] for line in lines[3:7]] == ["0.1", "1", "1.1", "2"]
    pooled = out.split("Across seeds")[1].split("Which settings")[0].strip().splitlines()
    assert pooled[1].split() == ["RUNS", "INNER_LR", "N", "MEAN", "CI95"]
    assert [row.split()[1:4] for row in pooled[2:]] == [["0.01", "2", "0.6"], ["0.1", "2", "1.5"]]
    matters = out.split("Which settings go with val_loss")[1].splitlines()
    assert matters[1].split() == ["SETTING", "TEST", "N", "EFFECT", "P", "FOREST", "READING"]
    assert "out-of-bag" not in out  # 4 runs: no forest
    # Seed rank sums 3 and 7: H = 0.6 * 29 - 15 = 2.4, eps^2 = 0.8; lr: rho = 2 / sqrt(20), a loss.
    assert matters[2].split()[:4] == ["seed", "kruskal", "4", "0.8"]
    assert matters[3].split()[:4] == ["inner_lr", "spearman", "4", "-0.447214"]
    assert matters[3].endswith("(leans: higher inner_lr, higher val_loss (worse))")
    code, out, _ = cli("sweeps", "ls")
    assert code == 0 and out.splitlines()[1].split()[:5] == [str(sweep.pk), "running", "grid", "4", "0"]
    code, out, _ = cli("sweeps", "stop", str(sweep.pk))
    assert code == 0 and out.strip() == f"Sweep {sweep.pk} stopped: Stopped by member."
    code, _, err = cli(*argv, "--dim", "colour=1,2")
    assert code == 1 and one_line(err).endswith("HTTP 422: dimensions.colour: colour cannot be swept.")
    code, _, err = cli(*argv, "--dim", "inner_lr")
    assert code == 64 and "give SETTING=VALUES" in one_line(err)


@pytest.mark.parametrize("status,code", [("succeeded", 0), ("failed", 1), ("cancelled", 2)])
def test_follow_exits_with_the_runs_outcome(logged_in, cli, status, code):
    run = RunFactory(
        experiment=logged_in["experiment"], taskset_version=logged_in["version"], status=status, error="boom"
    )
    assert cli("runs", "follow", str(run.pk))[0] == code


def test_models_ls_show_and_pull_checks_the_hash(logged_in, cli, tmp_path):
    model = logged_in["meta_model"]
    code, out, _ = cli("models", "ls")
    assert code == 0 and out.splitlines()[1].split()[:3] == [str(model.pk), "sine-maml", "1"]
    code, out, _ = cli("models", "show", "sine-maml@production")
    assert code == 0 and "production" in out
    target = tmp_path / "model.safetensors"
    code, out, _ = cli("models", "pull", "sine-maml@production", "-o", str(target), "--json")
    assert code == 0 and json.loads(out)["sha256"] == model.weights_sha256
    assert hashlib.sha256(target.read_bytes()).hexdigest() == model.weights_sha256
    code, _, err = cli("models", "pull", "sine-maml@nowhere", "-o", str(tmp_path / "x"))
    assert code == 1 and "No meta-model sine-maml@nowhere" in one_line(err)


def test_a_corrupted_download_is_refused_and_removed(logged_in, cli, tmp_path):
    type(logged_in["meta_model"]).objects.filter(pk=logged_in["meta_model"].pk).update(
        weights_sha256="f" * 64
    )
    target = tmp_path / "model.safetensors"
    code, _, err = cli("models", "pull", "sine-maml", "-o", str(target))
    assert code == 1 and "is not the registry's" in one_line(err) and not target.exists()


def test_the_console_script_never_prints_a_traceback(tmp_path):
    """A separate process, as a user runs it: an unreachable server is one line, exit 1."""
    env = {"XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", "import sys; from metaweb.cli import main; sys.exit(main())"]
    result = subprocess.run(
        [*argv, "login", "--url", "http://127.0.0.1:9", "--token", "mwp_a_b"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert one_line(result.stderr).startswith("metaweb: error: Cannot reach http://127.0.0.1:9")


def test_the_console_script_is_declared():
    import importlib
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["metaweb"].partition(":")
    assert getattr(importlib.import_module(module), name) is main


def test_sweeps_launch_may_stop_poor_runs_early(logged_in, cli, tmp_path, sent):
    config = tmp_path / "base.json"
    config.write_text(json.dumps({k: v for k, v in SMALL_CONFIG.items() if k not in ("family", "algorithm")}))
    argv = ["sweeps", "launch", "--taskset", "Sines", "--config", str(config), "--strategy", "bayes"]
    argv += ["--samples", "6", "--dim", "inner_lr=1e-3..1e-1 log", "--early-stop", "--json"]
    code, out, err = cli(*argv)
    assert code == 0, err
    assert json.loads(out)["early_stop"] is True and Sweep.objects.get().early_stop
