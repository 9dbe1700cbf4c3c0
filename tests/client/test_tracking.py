"""``client.track``: external runs logged from the user's own loop, against the real app."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest

from apps.experiments.models import Run, RunKind, RunStatus
from apps.experiments.services.runs import run_cancel
from metaweb.client import Client
from metaweb.client.tracking import TrackedRun
from tests.client.proxy import TcpProxy
from tests.factories import metric_count, metric_points


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    """Wait on state (a safety timeout only, never a speed assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_every_point_is_stored_once_and_a_replay_adds_nothing(world, member_client):
    with member_client.track(experiment="my idea", config={"lr": 0.1}, total_steps=1000) as run:
        for step in range(1000):
            run.log({"loss": 1.0 / (step + 1), "acc": step / 1000}, step=step)
        wait_for(lambda: run.sent == 2000, "the first 2,000 points")
        for step in range(100):  # replayed steps, in later batches, with other values
            run.log({"loss": 99.0}, step=step)
    stored = Run.objects.get(pk=run.id)
    assert stored.kind == RunKind.EXTERNAL and stored.status == RunStatus.SUCCEEDED
    assert stored.experiment.name == "my idea" and stored.config == {"lr": 0.1}
    assert metric_count(stored) == 2000
    assert metric_points(stored, "loss")[5] == pytest.approx(1 / 6)
    assert run.sent == 2100 and run.stored == 2000 and run.dropped == 0 and run.lost == 0
    assert stored.summary == {"metrics": {"loss": 0.001, "acc": 0.999}}
    assert stored.step == 999


def test_a_tracked_run_carries_its_tags(world, member_client):
    with member_client.track(experiment="tagged", tags=["baseline", "laptop"]) as run:
        run.log({"loss": 0.5}, step=1)
    assert sorted(Run.objects.get(pk=run.id).tags.values_list("name", flat=True)) == ["baseline", "laptop"]


def test_an_exception_fails_the_run_with_its_last_traceback_line(world, member_client):
    with pytest.raises(ZeroDivisionError):
        with member_client.track(experiment="crash") as run:
            run.log({"loss": 1.0})
            run.log({"loss": 0.5})
            1 / 0  # noqa: B018
    stored = Run.objects.get(pk=run.id)
    assert stored.status == RunStatus.FAILED and stored.error == "ZeroDivisionError: division by zero"
    assert metric_points(stored, "loss") == {0: 1.0, 1: 0.5}


def test_log_refuses_what_the_server_would_refuse(world, member_client):
    with pytest.raises(ValueError, match="finite"):
        with member_client.track(experiment="nan") as run:
            run.log({"loss": float("nan")}, step=3)
    assert "loss is nan at step 3" in Run.objects.get(pk=run.id).error
    with member_client.track(experiment="names") as run:
        with pytest.raises(ValueError, match="step"):
            run.log({"loss": 1.0}, step=-1)
        with pytest.raises(ValueError, match="metric name"):
            run.log({"x" * 51: 1.0})


def test_a_cancel_in_metaweb_stops_the_loop_and_ends_cancelled(world, member_client):
    with member_client.track(experiment="long") as run:
        run_cancel(run=Run.objects.get(pk=run.id), actor=world["users"]["admin"])
        step = 0
        while not run.should_stop:
            run.log({"loss": 1.0}, step=step)
            step += 1
            time.sleep(0.001)
    assert Run.objects.get(pk=run.id).status == RunStatus.CANCELLED


def test_a_network_outage_loses_nothing(world, make_client):
    address = urlparse(world["url"])
    proxy = TcpProxy(address.hostname, address.port).start()
    client = make_client(world["tokens"]["member"], url=proxy.url)
    with client.track(experiment="outage", flush_interval=0.05) as run:
        for step in range(500):
            run.log({"loss": 1.0, "acc": 0.5}, step=step)
        wait_for(lambda: run.sent == 1000, "the first points")
        proxy.stop()
        for step in range(500, 1000):
            run.log({"loss": 1.0, "acc": 0.5}, step=step)
        wait_for(lambda: run.retries >= 2, "the sender to retry")
        proxy.start()  # the same port again
    assert metric_count(run.id) == 2000
    assert run.lost == 0 and run.dropped == 0
    assert Run.objects.get(pk=run.id).status == RunStatus.SUCCEEDED
    proxy.stop()


def test_a_full_buffer_blocks_briefly_then_drops_the_oldest(settings):
    """No server at all: the buffer fills; log() waits block_seconds, then drops."""
    client = Client("http://127.0.0.1:9", "mwp_x_y")
    run = TrackedRun(client, {"id": 7}, team="alpha", max_pending=10, block_seconds=0.01, flush_interval=60)
    for step in range(10):
        run.log({"loss": float(step)}, step=step)
    assert run.dropped == 0
    for step in range(10, 15):
        run.log({"loss": float(step)}, step=step)
    assert run.dropped == 5
    assert [s for _, s, _ in run._pending] == list(range(5, 15))  # the newest are kept
    assert run.flush(timeout=0) is False and run.lost == 10
