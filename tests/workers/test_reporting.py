"""RunReporter: batched metric writes, throttled progress events, stop polling; Heartbeat."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.experiments.models import Run
from apps.experiments.services import run_claim
from tests.factories import RunFactory, metric_count, metric_points, metric_rows
from workers.dbretry import with_db_retry
from workers.reporting import Heartbeat, InlineExecutor, RunReporter


@contextmanager
def stored_in(batches: int, *, other: int = 0):
    """The block stores metrics in exactly ``batches`` metric-store transactions (each
    one atomic block: a savepoint inside the test's transaction, on either database)
    and makes ``other`` other queries."""
    with CaptureQueriesContext(connection) as captured:
        yield
    sqls = [query["sql"] for query in captured.captured_queries]
    figures = [sql for sql in sqls if sql.startswith("SAVEPOINT ")]
    rest = [sql for sql in sqls if "experiments_metric" not in sql and "SAVEPOINT" not in sql]
    assert (len(figures), len(rest)) == (batches, other), sqls


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sent(list):
    def __call__(self, group, message):
        self.append((group, message))
        return None


@pytest.fixture
def claimed(db):
    run = RunFactory(total_steps=1000)
    claim = run_claim(run_id=run.pk, worker="test", device="cpu")
    return run, claim


def _reporter(run, claim, **kwargs):
    """Database work inline, on the test's thread and connection, to count queries."""
    kwargs.setdefault("clock", FakeClock())
    kwargs.setdefault("send", Sent())
    kwargs.setdefault("executor", InlineExecutor())
    kwargs.setdefault("total_steps", run.total_steps)
    return RunReporter(run_id=run.pk, token=claim.token, **kwargs)


def test_metrics_are_written_in_batches_of_flush_points(claimed):
    run, claim = claimed
    reporter = _reporter(run, claim, flush_points=200, flush_seconds=1e9)
    with stored_in(5):  # 1000 steps x 1 metric = 5 batches of 200
        for step in range(1, 1001):
            reporter.on_step(step, {"loss": 1.0 / step})
        reporter.close()
    assert metric_count(run, "loss") == 1000
    assert reporter.points_stored == 1000


def test_metrics_are_flushed_on_time(claimed):
    run, claim = claimed
    clock = FakeClock()
    reporter = _reporter(run, claim, clock=clock, flush_points=10_000, flush_seconds=0.5)
    with stored_in(2):  # 1 s of steps: flushes at 0.5 s and 1.0 s, nothing left at close
        for step in range(1, 101):
            clock.now += 0.01
            reporter.on_step(step, {"loss": 1.0, "grad_norm": 2.0})
        reporter.close()
    # loss at every step, grad_norm at every 10th (AUX_EVERY)
    assert metric_count(run, "loss") == 100
    assert list(sorted(metric_points(run, "grad_norm"))) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


def test_progress_events_are_throttled_and_carry_every_point_once(claimed):
    run, claim = claimed
    clock, sent = FakeClock(), Sent()
    reporter = _reporter(run, claim, clock=clock, send=sent, event_seconds=0.1)
    for step in range(1, 1001):  # 1000 steps in 1 s
        clock.now += 0.001
        reporter.on_step(step, {"loss": float(step)})
    reporter.close()
    assert 10 <= len(sent) <= 12
    groups = {group for group, _ in sent}
    assert groups == {f"run-{run.pk}"}
    steps = [point[0] for _, message in sent for point in message["points"].get("loss", [])]
    assert steps == list(range(1, 1001))
    last = sent[-1][1]
    assert last["type"] == "run.progress" and last["step"] == 1000 and last["loss"] == 1000.0
    assert last["total_steps"] == 1000 and last["steps_per_sec"] == pytest.approx(1000, rel=0.05)


def test_eval_flushes_and_sends_at_once(claimed):
    run, claim = claimed
    clock, sent = FakeClock(), Sent()
    reporter = _reporter(run, claim, clock=clock, send=sent, event_seconds=100, flush_seconds=100)
    reporter.on_step(1, {"loss": 3.0})  # first event goes out at once
    reporter.on_step(2, {"loss": 2.0})
    with stored_in(1):
        reporter.on_eval(2, {"mse": 0.5, "loss": 0.7})
    assert set(metric_rows(run)) == {
        ("loss", 1),
        ("loss", 2),
        ("val_mse", 2),
        ("val_loss", 2),
    }
    assert len(sent) == 2 and sent[-1][1]["val_metric"] == 0.5
    # Step 1's event went out before its point was stored, so it carried none: points
    # travel only once stored, and the eval's event carries the whole flush.
    assert sent[0][1]["points"] == {}
    assert sent[-1][1]["points"] == {
        "loss": [[1, 3.0], [2, 2.0]],
        "val_mse": [[2, 0.5]],
        "val_loss": [[2, 0.7]],
    }


def test_points_are_stored_before_each_checkpoint_in_one_batch(claimed, django_assert_num_queries):
    run, claim = claimed
    reporter = _reporter(run, claim, flush_seconds=1e9)
    with django_assert_num_queries(0):  # no guess about checkpoints: nothing stored yet
        for step in range(1, 11):
            reporter.on_step(step, {"loss": 1.0})
    with stored_in(1):  # the eval's and the steps' points together
        reporter.on_eval(10, {"val_loss": 0.5})
    with django_assert_num_queries(0):  # already stored: nothing left to write
        reporter.before_checkpoint(10)
    assert metric_count(run) == 11
    assert reporter.checkpoint_step is None and Run.objects.get(pk=run.pk).checkpoint_step is None
    with django_assert_num_queries(1):  # the loop says the checkpoint is durable: recorded at once
        reporter.on_checkpoint(10)
    run.refresh_from_db()
    assert run.checkpoint_step == 10 and reporter.checkpoint_step == 10


def test_checkpoint_without_eval_stores_before_the_checkpoint(db):
    run = RunFactory(total_steps=100)
    claim = run_claim(run_id=run.pk, worker="t", device="cpu")
    reporter = _reporter(run, claim, flush_seconds=1e9)
    for step in range(1, 6):
        reporter.on_step(step, {"loss": 1.0})
    assert metric_count(run) == 0
    reporter.before_checkpoint(5)
    assert metric_count(run) == 5
    assert reporter.checkpoint_step is None


def test_on_checkpoint_stores_the_points_before_it_moves_checkpoint_step(claimed):
    """Whatever the loop did before, ``checkpoint_step`` moves only once every point up
    to the checkpoint is stored: a resumed attempt starts after it and never replays them."""
    run, claim = claimed
    order: list[tuple[str, int]] = []

    class Recording(InlineExecutor):
        def submit(self, fn, /, *args, **kwargs):
            if fn is with_db_retry and getattr(args[0], "__name__", "") == "run_checkpointed":
                order.append(("checkpointed", kwargs["step"]))
            elif getattr(fn, "__name__", "") == "_write":
                order.append(("stored", max(step for _, step, _ in args[0])))
            return super().submit(fn, *args, **kwargs)

    reporter = _reporter(run, claim, flush_seconds=1e9, executor=Recording())
    for step in range(1, 8):
        reporter.on_step(step, {"loss": 1.0})
    reporter.on_checkpoint(7)
    assert order == [("stored", 7), ("checkpointed", 7)]
    assert metric_count(run) == 7 and Run.objects.get(pk=run.pk).checkpoint_step == 7


def test_non_finite_values_are_not_stored(claimed):
    run, claim = claimed
    reporter = _reporter(run, claim)
    reporter.on_step(10, {"loss": float("nan"), "grad_norm": 1.5})
    reporter.close()
    assert [name for name, _ in metric_rows(run)] == ["grad_norm"]


def test_long_runs_store_every_kth_step(db):
    run = RunFactory(total_steps=50_000)
    claim = run_claim(run_id=run.pk, worker="t", device="cpu")
    reporter = _reporter(run, claim)
    assert reporter.store_every == 5
    for step in range(1, 21):
        reporter.on_step(step, {"loss": 1.0})
    reporter.close()
    assert sorted(step for _, step in metric_rows(run)) == [
        5,
        10,
        15,
        20,
    ]


def test_should_stop_polls_at_most_every_half_second(claimed, django_assert_num_queries):
    run, claim = claimed
    clock = FakeClock()
    reporter = _reporter(run, claim, clock=clock, stop_poll_seconds=0.5)
    with django_assert_num_queries(3):  # polled at 0, 0.5 and 1.0 s
        for _ in range(17):
            assert reporter.should_stop() is False
            clock.now += 1 / 16
    Run.objects.filter(pk=run.pk).update(cancel_requested_at=timezone.now())
    clock.now += 0.5
    assert reporter.should_stop() is True and reporter.stop_reason == "cancel"


def test_lost_ownership_stops_without_a_query(claimed, django_assert_num_queries):
    run, claim = claimed
    reporter = _reporter(run, claim)
    reporter.mark_lost()
    with django_assert_num_queries(0):
        assert reporter.should_stop() is True
    assert reporter.stop_reason == "lost"


@pytest.mark.django_db(transaction=True)
def test_training_thread_never_queries_and_everything_is_stored_at_close(django_assert_num_queries):
    """The default: database work on the reporter's I/O thread."""
    run = RunFactory(total_steps=300)
    claim = run_claim(run_id=run.pk, worker="t", device="cpu")
    clock = FakeClock()
    reporter = RunReporter(run_id=run.pk, token=claim.token, total_steps=10_000, clock=clock, send=Sent())
    with django_assert_num_queries(0):
        for step in range(1, 301):  # 3 s of steps: 3 flushes and 6 stop polls, all on the I/O thread
            clock.now += 0.01
            reporter.on_step(step, {"loss": 1.0})
            assert reporter.should_stop() is False
    Run.objects.filter(pk=run.pk).update(cancel_requested_at=timezone.now())
    deadline = time.monotonic() + 5
    stopped = False
    while not stopped and time.monotonic() < deadline:
        clock.now += 0.1
        stopped = reporter.should_stop()
        time.sleep(0.01)
    assert stopped and reporter.stop_reason == "cancel"
    assert metric_count(run) == 300  # a stop waits for the writes
    reporter.close()
    assert reporter.points_stored == 300


@pytest.mark.django_db(transaction=True)
def test_heartbeat_thread_beats_and_notices_lost_ownership():
    run = RunFactory()
    claim = run_claim(run_id=run.pk, worker="t", device="cpu")
    reporter = _reporter(run, claim)
    reporter.step = 5
    with Heartbeat(run_id=run.pk, token=claim.token, reporter=reporter, interval=0.05):
        time.sleep(0.3)
        run.refresh_from_db()
        assert run.step == 5 and not reporter.lost
        Run.objects.filter(pk=run.pk).update(attempt_token="new-owner")
        deadline = time.monotonic() + 3
        while not reporter.lost and time.monotonic() < deadline:
            time.sleep(0.02)
    assert reporter.lost and reporter.should_stop()


def test_progress_reaches_the_redis_channel_layer(claimed):
    """The default sender: one persistent loop thread, real channels-redis (pub/sub:
    the receiving channel lives on one loop, as a consumer's does)."""
    import asyncio

    from asgiref.sync import sync_to_async

    run, claim = claimed
    reporter = RunReporter(
        run_id=run.pk, token=claim.token, total_steps=10, executor=InlineExecutor(), flush_points=1
    )  # step 1 is stored at once, so its event carries it

    async def listen() -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(f"run-{run.pk}", channel)
        try:
            await sync_to_async(reporter.on_step)(1, {"loss": 0.25})
            return await asyncio.wait_for(layer.receive(channel), 5)
        finally:
            await layer.group_discard(f"run-{run.pk}", channel)

    message = async_to_sync(listen)()
    assert message["type"] == "run.progress" and message["points"] == {"loss": [[1, 0.25]]}


def test_real_stack_uses_the_pubsub_layer(settings):
    """One Redis publish per group message, fanned out per process (see settings)."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["socket_timeout"] is None
    assert isinstance(get_channel_layer(), RedisPubSubChannelLayer)


@pytest.fixture
def server_loop(settings):
    """Embedded mode: the in-memory layer, owned by a 'server' loop in another thread."""
    import asyncio
    import threading

    from apps.experiments import events

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "metaweb.layers.FanoutInMemoryChannelLayer"}}
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    events.set_server_loop(loop)
    yield loop
    events.set_server_loop(None)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


def test_embedded_sends_run_on_the_server_loop(claimed, server_loop):
    import asyncio

    from apps.experiments.events import RunStatusEvent, event_loop, publish

    run, claim = claimed
    assert event_loop() is server_loop
    layer = get_channel_layer()
    on_server = lambda coro: asyncio.run_coroutine_threadsafe(coro, server_loop).result(timeout=5)  # noqa: E731
    channel = on_server(layer.new_channel())
    on_server(layer.group_add(f"run-{run.pk}", channel))

    reporter = RunReporter(
        run_id=run.pk, token=claim.token, total_steps=10, executor=InlineExecutor(), flush_points=1
    )  # step 1 is stored at once, so its event carries it
    reporter.on_step(1, {"loss": 0.5})  # the default sender
    message = on_server(asyncio.wait_for(layer.receive(channel), 2))
    assert message["type"] == "run.progress" and message["points"] == {"loss": [[1, 0.5]]}

    publish(f"run-{run.pk}", RunStatusEvent(run_id=run.pk, status="running"))  # a service's status event
    message = on_server(asyncio.wait_for(layer.receive(channel), 2))
    assert message["type"] == "run.status" and message["status"] == "running"
