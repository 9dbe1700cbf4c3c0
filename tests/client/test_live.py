"""Following a run: how websocket messages move the progress line (no server)."""

from __future__ import annotations

from metaweb.cli.output import ProgressLine
from metaweb.client.live import Progress, apply


def test_messages_move_the_progress_and_other_runs_are_ignored():
    p = Progress(run_id=7, status="queued")
    p = apply(
        p,
        {
            "type": "run.state",
            "run": {
                "id": 7,
                "status": "running",
                "step": 3,
                "total_steps": 10,
                "eta_seconds": 7.0,
                "error": "",
            },
            "metrics": {"val_loss": [[2, 9.0]], "train_loss": [[2, 0.5], [3, 0.4]]},
        },
    )
    assert (p.status, p.step, p.loss, p.eta_seconds) == ("running", 3, 0.4, 7.0)
    p = apply(
        p, {"type": "run.progress", "run_id": 7, "step": 5, "total_steps": 10, "points": {"loss": [[5, 0.3]]}}
    )
    assert (p.step, p.loss) == (5, 0.3)
    p = apply(p, {"type": "run.progress", "run_id": 8, "step": 9, "total_steps": 20, "loss": 5.0})
    assert (p.step, p.total_steps, p.loss) == (5, 10, 0.3)
    p = apply(p, {"type": "run.status", "run_id": 8, "status": "succeeded"})
    assert not p.finished
    p = apply(p, {"type": "run.status", "run_id": 7, "status": "failed", "step": 6, "error": "NaN"})
    assert p.finished and (p.status, p.step, p.error) == ("failed", 6, "NaN")


def test_the_progress_line():
    line = ProgressLine().render(
        Progress(run_id=3, status="running", step=50, total_steps=200, loss=0.01234, eta_seconds=75)
    )
    assert line == "run 3 [######------------------]  25% step 50/200 loss 0.01234 ETA 01:15 running"


def test_a_warning_is_printed_once_above_the_progress():
    import io

    out = io.StringIO()
    line = ProgressLine(out)
    p = Progress(run_id=7, status="running", step=50, total_steps=200)
    p = apply(p, {"type": "run.warning", "run_id": 7, "step": 51, "kind": "spike", "message": "Loss spike."})
    assert p.warning == "Loss spike." and p.step == 50
    line(p)
    p = apply(p, {"type": "run.progress", "run_id": 7, "step": 60, "total_steps": 200})
    assert p.warning == ""
    line(p)
    assert out.getvalue().splitlines()[0] == "run 7 warning: Loss spike."
    assert out.getvalue().count("warning") == 1
    assert apply(p, {"type": "run.warning", "run_id": 8, "message": "not ours"}).warning == ""
