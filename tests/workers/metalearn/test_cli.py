"""``python -m workers.metalearn``: train, evaluate, adapt, and bad input (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "workers.metalearn", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )


def test_train_evaluate_adapt(tmp_path):
    config = {
        "algorithm": "maml",
        "iterations": 12,
        "meta_batch": 4,
        "hidden": [16, 16],
        "eval_interval": 6,
        "eval_tasks": 5,
        "checkpoint_interval": 6,
    }
    (tmp_path / "run.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    done = cli("train", "--config", tmp_path / "run.json", "--out", out, "--threads", 1)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["step"] == 12 and "val_loss" in summary
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["event"] == "step"] == list(range(1, 13))
    assert [r["step"] for r in lines if r["event"] == "eval"] == [6, 12]
    assert "12/12" in done.stderr  # plain progress lines when not on a terminal
    assert (out / "latest").read_text().strip() == "step-000012"

    (tmp_path / "support.csv").write_text("x,y\n0.5,1.0\n1.0,1.5\n-2,-0.5\n3,0.2\n-4,1.1\n")
    (tmp_path / "query.csv").write_text("x\n0.1\n0.2\n0.3\n")
    (tmp_path / "bad.csv").write_text("x,y\n0.5,1.0\n1.0,oops\n")
    (tmp_path / "bad.json").write_text(json.dumps({"algorithm": "protonet"}))

    # One process for the rest: evaluate, adapt, and the bad-input paths.
    script = f"""
import json, sys
from workers.metalearn.__main__ import main
out, tmp = {str(out)!r}, {str(tmp_path)!r}
codes = {{}}
codes["evaluate"] = main(["evaluate", "--checkpoint", out, "--count", "7", "--steps", "2",
                          "--out", tmp + "/ev"])
codes["adapt"] = main(["adapt", "--checkpoint", out, "--support", tmp + "/support.csv", "--query",
                       tmp + "/query.csv", "--steps", "3", "--lr", "0.01", "--out", tmp + "/ad"])
codes["bad_csv"] = main(["adapt", "--checkpoint", out, "--support", tmp + "/bad.csv", "--out", tmp + "/x"])
codes["no_file"] = main(["adapt", "--checkpoint", out, "--support", tmp + "/none.csv", "--out", tmp + "/x"])
codes["no_ckpt"] = main(["evaluate", "--checkpoint", tmp + "/nowhere"])
codes["bad_config"] = main(["train", "--config", tmp + "/bad.json", "--out", tmp + "/bad"])
print("CODES " + json.dumps(codes))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout.split("CODES ")[-1])
    assert codes == {"evaluate": 0, "adapt": 0, "bad_csv": 2, "no_file": 2, "no_ckpt": 2, "bad_config": 2}
    evaluation = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert evaluation["tasks"] == 7 and len(evaluation["losses"]) == 7 and len(evaluation["losses"][0]) == 3
    assert (tmp_path / "ad" / "weights.safetensors").is_file()
    assert len((tmp_path / "ad" / "predictions.csv").read_text().splitlines()) == 4
    assert len((tmp_path / "ad" / "metrics.jsonl").read_text().splitlines()) == 4
    assert "row 3, column 'y'" in done.stderr
    assert "config algorithm: protonet is for classification" in done.stderr


def test_bad_config_exits_2_before_importing_torch(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"algorithm": "maml", "shots": 0, "colour": "red"}))
    done = cli("train", "--config", tmp_path / "run.json", "--out", tmp_path / "out", timeout=30)
    assert done.returncode == 2
    assert "config shots:" in done.stderr and "config colour:" in done.stderr
    (tmp_path / "broken.json").write_text("{")
    done = cli("train", "--config", tmp_path / "broken.json", "--out", tmp_path / "out", timeout=30)
    assert done.returncode == 2 and "not valid JSON" in done.stderr
    done = cli("frobnicate", timeout=30)
    assert done.returncode == 2


def test_train_sets_mnn_condition_and_train_tasks_from_the_command_line(tmp_path):
    """``--set`` overrides the config file: an MNN on the support set of sinusoid
    (which has descriptions), from a pool of 20 tasks; adapt then needs no --desc."""
    config = {"algorithm": "mnn", "iterations": 2, "meta_batch": 2, "mnn_hidden": 8, "eval_tasks": 2}
    (tmp_path / "run.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    done = cli(
        "train", "--config", tmp_path / "run.json", "--out", out,
        "--set", "mnn_condition=support", "--set", "train_tasks=20",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "mnn conditioned on the support" in done.stderr
    saved = json.loads((out / "step-000002" / "checkpoint.json").read_text())["config"]
    assert saved["mnn_condition"] == "support" and saved["train_tasks"] == 20
    (tmp_path / "support.csv").write_text("x,y\n0.5,1.0\n1.0,1.5\n-2,-0.5\n")
    done = cli("adapt", "--checkpoint", out, "--support", tmp_path / "support.csv", "--out", tmp_path / "ad")
    assert done.returncode == 0, done.stderr

    done = cli(
        "train",
        "--config",
        tmp_path / "run.json",
        "--out",
        tmp_path / "bad",
        "--set",
        "mnn_condition=sometimes",
    )
    assert done.returncode == 2 and "config mnn_condition:" in done.stderr
    done = cli("train", "--config", tmp_path / "run.json", "--out", tmp_path / "bad", "--set", "train_tasks")
    assert done.returncode == 2 and "--set: give key=value" in done.stderr


def test_the_cli_reporter_writes_a_warning_line_and_says_it():
    import io

    from workers.metalearn.__main__ import CliReporter, Progress

    metrics, stderr = io.StringIO(), io.StringIO()
    reporter = CliReporter(metrics, Progress(100, stream=stderr))
    reporter.on_warning(51, "spike", "Loss spike at step 51: 1e+03.")
    assert json.loads(metrics.getvalue()) == {
        "event": "warning",
        "step": 51,
        "kind": "spike",
        "message": "Loss spike at step 51: 1e+03.",
    }
    assert stderr.getvalue() == "warning: Loss spike at step 51: 1e+03.\n"
