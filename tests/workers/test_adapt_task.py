"""adapt_run end to end with the real engine on the CPU: a tiny sinusoid MAML adapts to
one meta-test task (the query loss falls, every inner step is stored and streamed,
the review data and the adapted weights are written), to a custom task, to a batch
of meta-test tasks (the loss matrix, mean and CI), and to a few digit images; a task
delivered twice makes one adapted model; cancels and failures write none.

The task runs in the test process (``adapt_run.run``) with its heartbeat and reporter
threads, so data must be committed: these tests use the transactional database.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import time
import zipfile
from datetime import timedelta

import numpy as np
import pytest
import torch
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import ValidationError
from django.utils import timezone
from safetensors.torch import load_file

from apps.adaptations.models import AdaptedModel
from apps.adaptations.selectors import adapted_model_arrays, adapted_review, meta_model_facts
from apps.adaptations.services import adaptation_start
from apps.adaptations.uploads import parse_images
from apps.experiments.models import Run, RunStatus
from apps.experiments.services import run_cancel, run_claim, run_requeue_stale
from apps.registry import storage
from tests.adaptations.test_services import register_trained
from tests.factories import metric_count, metric_points, metric_points_add
from workers.tasks import adapt_run, execute_adaptation

torch.set_num_threads(1)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

#: Meta-test task 2 of the sinusoid family: the tiny model's query MSE falls from about 5.7 to 1.8.
TASK = 2


@pytest.fixture(autouse=True)
def _fast_heartbeats(settings):
    settings.HEARTBEAT_SECONDS = 0.2


@pytest.fixture
def world(team_roles, sent):
    team, users = team_roles
    meta_model = register_trained(team=team, launched_by=users["member"])
    return {"team": team, "users": users, "meta_model": meta_model}


def launch(world, **kwargs):
    defaults = {"target": "test_task", "task_index": TASK, "steps": 10, "lr": 0.01}
    return adaptation_start(
        actor=world["users"]["member"], meta_model=world["meta_model"], **(defaults | kwargs)
    )


def steps_of(run: Run, name: str) -> list[int]:
    return sorted(metric_points(run, name))


def test_single_task_adaptation_lowers_the_query_loss_and_stores_everything(world):
    run = launch(world)
    assert adapt_run.run(run.pk) == "succeeded"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.step == 10 and run.device == "cpu"
    adapted = AdaptedModel.objects.get()
    assert adapted.adaptation == run.adaptation and adapted.meta_model == world["meta_model"]
    assert adapted.metric == "mse" and adapted.n_tasks == 1 and adapted.n_steps == 10
    assert adapted.after < adapted.before  # the point of it all
    assert adapted.before == pytest.approx(adapted.curve[0]["query_loss"], rel=1e-5)
    assert [entry["step"] for entry in adapted.curve] == list(range(11))
    assert adapted.curve[-1]["support_loss"] < adapted.curve[0]["support_loss"]
    # Every inner step was stored as a metric (step 0 is before adaptation), once.
    for name in ("support_loss", "query_loss"):
        assert steps_of(run, name) == list(range(11))
    stored = metric_points(run, "query_loss")[10]
    assert stored == pytest.approx(adapted.after, rel=1e-5)
    # Review data: a dense grid with the true function, before and after; the points.
    predictions = adapted.predictions
    assert predictions["kind"] == "regression" and predictions["has_truth"] is True
    grid = predictions["grid"]
    assert len(grid["x"]) == len(grid["truth"]) == len(grid["before"]) == len(grid["after"]) == 200
    assert grid["x"][0] == pytest.approx(-5.0) and grid["x"][-1] == pytest.approx(5.0)
    truth, before, after = (np.array(grid[k]) for k in ("truth", "before", "after"))
    assert np.mean((after - truth) ** 2) < np.mean((before - truth) ** 2)
    assert len(predictions["support"]["x"]) == 5 and len(predictions["query"]["y"]) == 10
    assert len(predictions["query"]["after"]) == 10
    # The adapted weights, as safetensors, with their hash.
    path = storage.adapted_model_dir(adapted.pk) / storage.WEIGHTS_FILE
    assert hashlib.sha256(path.read_bytes()).hexdigest() == adapted.weights_sha256
    weights = load_file(str(path))
    assert set(weights) == {
        "body.1.weight",
        "body.1.bias",
        "body.3.weight",
        "body.3.bias",
        "head.weight",
        "head.bias",
    }
    assert run.summary["adapted_model"] == adapted.pk and run.summary["after"] == pytest.approx(adapted.after)
    assert list(run.events.order_by("pk").values_list("kind", flat=True)) == [
        "queued",
        "claimed",
        "succeeded",
    ]


def test_a_single_task_adaptation_calls_the_engine_once(world):
    """The dense grid's predictions come from the same call as the adapted weights."""
    from workers.metalearn import adapt

    run = launch(world, steps=3)
    calls: list[dict] = []

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return adapt(*args, **kwargs)

    assert execute_adaptation(run_id=run.pk, worker="w", adapt=counting) == "succeeded"
    assert len(calls) == 1 and calls[0]["grid"].shape == (200, 1) and calls[0]["on_step"] is not None
    grid = AdaptedModel.objects.get().predictions["grid"]
    assert len(grid["x"]) == len(grid["before"]) == len(grid["after"]) == 200


def test_each_inner_step_reaches_the_run_group_live(world):
    """The run.progress events on run-<id> carry the per-step points (what the page draws)."""
    import asyncio

    from asgiref.sync import sync_to_async

    run = launch(world)
    points: dict[str, list] = {}
    statuses: list[str] = []

    def adapt_and_close() -> str:
        from django.db import connection

        try:
            return adapt_run.run(run.pk)
        finally:
            connection.close()  # the worker thread's own connection

    async def listen() -> None:
        # One loop holds the channel, as a consumer does (the pub/sub layer needs it).
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(f"run-{run.pk}", channel)
        try:
            assert await sync_to_async(adapt_and_close, thread_sensitive=False)() == "succeeded"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "succeeded" not in statuses:
                message = await asyncio.wait_for(layer.receive(channel), 10)
                if message["type"] == "run.progress":
                    for name, pairs in message["points"].items():
                        points.setdefault(name, []).extend(pairs)
                elif message["type"] == "run.status":
                    statuses.append(message["status"])
        finally:
            await layer.group_discard(f"run-{run.pk}", channel)

    async_to_sync(listen)()
    assert [p[0] for p in points["query_loss"]] == list(range(11))
    assert [p[0] for p in points["support_loss"]] == list(range(11))
    assert statuses[-1] == "succeeded"


def test_delivered_twice_makes_one_adapted_model(world):
    run = launch(world)
    assert adapt_run.run(run.pk) == "succeeded"
    metrics = metric_count(run)
    assert adapt_run.run(run.pk) == "skipped"
    assert AdaptedModel.objects.count() == 1 and metric_count(run) == metrics


def test_redelivery_after_a_dead_worker_adapts_again_without_duplicates(world):
    """A first attempt died after streaming some steps (its heartbeat went stale): the
    redelivered task claims a new attempt, replays the steps, stores each point once
    and makes one adapted model."""
    run = launch(world)
    claim = run_claim(run_id=run.pk, worker="dead-worker", device="cpu")
    metric_points_add(run, [("query_loss", 0, 123.0)])  # from the dead attempt
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert adapt_run.run(run.pk) == "succeeded"
    run.refresh_from_db()
    assert run.attempt == 2 and run.attempt_token == "" and claim.token
    assert steps_of(run, "query_loss") == list(range(11))
    assert metric_points(run, "query_loss")[0] == 123.0  # first value stays
    assert AdaptedModel.objects.count() == 1


def test_custom_task_without_query_scores_the_support_set(world):
    xs = np.linspace(-4, 4, 6)
    run = launch(
        world,
        target="custom",
        task_index=None,
        support={"x": [[float(x)] for x in xs], "y": [float(3 * math.sin(x + 0.5)) for x in xs]},
    )
    assert adapt_run.run(run.pk) == "succeeded"
    adapted = AdaptedModel.objects.get()
    assert adapted.metric == "support_mse" and adapted.after < adapted.before
    assert "query" not in adapted.predictions and "truth" not in adapted.predictions["grid"]
    assert adapted.predictions["has_truth"] is False
    assert steps_of(run, "support_loss") == list(range(11)) and steps_of(run, "query_loss") == []


def test_batch_stores_the_loss_matrix_mean_and_ci(world, settings):
    settings.ADAPT_BATCH_TASKS = 30
    settings.ADAPT_BATCH_CHUNK = 10
    run = launch(world, target="batch", task_index=None, steps=5)
    assert run.total_steps == 30
    assert adapt_run.run(run.pk) == "succeeded"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.step == 30
    adapted = AdaptedModel.objects.get()
    assert adapted.metric == "mse" and adapted.n_tasks == 30 and adapted.n_steps == 5
    assert len(bytes(adapted.losses)) == 30 * 6 * 4 and len(bytes(adapted.scores)) == 30 * 4
    assert len(bytes(adapted.task_ids)) == 30 * 8
    arrays = adapted_model_arrays(adapted)
    losses, scores = arrays["losses"], arrays["scores"]
    assert losses.shape == (30, 6) and losses.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(arrays["task_ids"], np.arange(30))
    np.testing.assert_allclose(scores, losses[:, -1], rtol=1e-5)
    assert adapted.after == pytest.approx(float(scores.mean()), rel=1e-5)
    assert adapted.ci95 == pytest.approx(1.96 * float(scores.std(ddof=1)) / math.sqrt(30), rel=1e-4)
    assert adapted.before == pytest.approx(float(losses[:, 0].mean()), rel=1e-5)
    assert adapted.after < adapted.before
    assert [entry["step"] for entry in adapted.curve] == list(range(6))
    assert adapted.curve[-1]["query_loss"] == pytest.approx(float(losses[:, -1].mean()), rel=1e-5)
    assert adapted.weights_sha256 == "" and not storage.adapted_model_dir(adapted.pk).exists()
    assert adapt_run.run(run.pk) == "skipped" and AdaptedModel.objects.count() == 1


def test_batch_reports_progress_per_chunk(world, settings):
    from workers.metalearn import evaluate

    settings.ADAPT_BATCH_TASKS = 30
    settings.ADAPT_BATCH_CHUNK = 10
    run = launch(world, target="batch", task_index=None, steps=2)
    seen: list[tuple[int, int]] = []

    def recording(*args, progress, **kwargs):
        def spy(done, count):
            seen.append((done, count))
            progress(done, count)

        return evaluate(*args, progress=spy, **kwargs)

    assert execute_adaptation(run_id=run.pk, worker="w", evaluate=recording) == "succeeded"
    assert seen == [(10, 30), (20, 30), (30, 30)]


def test_cancelling_a_batch_between_chunks_stores_nothing(world, settings):
    from workers.metalearn import evaluate

    settings.ADAPT_BATCH_TASKS = 30
    settings.ADAPT_BATCH_CHUNK = 10
    run = launch(world, target="batch", task_index=None, steps=2)
    member = world["users"]["member"]

    def cancelling(*args, progress, **kwargs):
        def spy(done, count):
            progress(done, count)
            if done == 10:
                run_cancel(run=Run.objects.get(pk=run.pk), actor=member)
            time.sleep(0.3)  # the stop poll's answer arrives before the next chunk ends

        return evaluate(*args, progress=spy, **kwargs)

    assert execute_adaptation(run_id=run.pk, worker="w", evaluate=cancelling) == "cancelled"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.step in (20, 30)
    assert not AdaptedModel.objects.exists()


def test_cancelling_a_single_task_mid_adaptation(world):
    from workers.metalearn import adapt

    run = launch(world, steps=30)
    member = world["users"]["member"]

    def slow(*args, on_step=None, **kwargs):
        def spy(step, entry):
            on_step(step, entry)
            if step == 1:
                run_cancel(run=Run.objects.get(pk=run.pk), actor=member)
            time.sleep(0.1)

        return adapt(*args, on_step=spy if on_step else None, **kwargs)

    assert execute_adaptation(run_id=run.pk, worker="w", adapt=slow) == "cancelled"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and 1 <= run.step < 30
    assert not AdaptedModel.objects.exists()


def test_missing_checkpoint_fails_the_run(world):
    import shutil

    run = launch(world)
    shutil.rmtree(storage.meta_model_dir(world["meta_model"].pk))
    assert adapt_run.run(run.pk) == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "checkpoint is missing" in run.error
    assert not AdaptedModel.objects.exists()


def test_engine_errors_are_mapped_without_server_paths(world):
    from workers.metalearn.types import CheckpointError

    run = launch(world)
    folder = storage.meta_model_dir(world["meta_model"].pk)

    def broken(*args, **kwargs):
        raise CheckpointError(f"checkpoint: cannot read {folder}: truncated")

    assert execute_adaptation(run_id=run.pk, worker="w", adapt=broken) == "failed"
    run.refresh_from_db()
    assert "the meta-model's checkpoint folder" in run.error and str(folder) not in run.error
    assert not AdaptedModel.objects.exists()


def test_train_runs_are_not_adapted(world):
    from tests.factories import RunFactory

    run = RunFactory(experiment=world["meta_model"].experiment)
    assert adapt_run.run(run.pk) == "skipped"
    assert Run.objects.get(pk=run.pk).status == RunStatus.QUEUED


# -- classification: a few digit images per class --------------------------------------

TINY_PROTONET = {
    "algorithm": "protonet",
    "family": {"name": "digits"},
    "iterations": 30,
    "meta_batch": 4,
    "meta_lr": 1e-3,
    "inner_lr": 0.01,
    "inner_steps": 1,
    "hidden": [32],
    "shots": 1,
    "ways": 3,
    "query": 2,
    "eval_interval": 30,
    "eval_tasks": 5,
    "checkpoint_interval": 30,
    "seed": 0,
    "device": "cpu",
}


def digit_zip(classes: dict[str, list[int]]) -> io.BytesIO:
    """A zip of 8x8 PNGs, class/image.png, drawn from scikit-learn's digits."""
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, indices in classes.items():
            for index in indices:
                pixels = (data.images[index] / 16.0 * 255).round().astype(np.uint8)
                png = io.BytesIO()
                Image.fromarray(pixels, mode="L").save(png, format="PNG")
                archive.writestr(f"{name}/{index}.png", png.getvalue())
    buffer.seek(0)
    buffer.name = "digits.zip"
    return buffer


def test_classification_adaptation_from_uploaded_images(team_roles, sent):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from sklearn.datasets import load_digits

    from tests.factories import TaskSetVersionFactory

    team, users = team_roles
    version = TaskSetVersionFactory(taskset__team=team, taskset__family="digits")
    meta_model = register_trained(
        team=team, version=version, config=TINY_PROTONET, launched_by=users["member"]
    )
    facts = meta_model_facts(meta_model)
    assert facts.image_shape == (8, 8) and facts.ways == 3
    targets = load_digits().target
    pick = {str(d): [int(i) for i in np.flatnonzero(targets == d)[:4]] for d in (5, 6, 7)}
    support = parse_images(
        [SimpleUploadedFile("s.zip", digit_zip({k: v[:1] for k, v in pick.items()}).getvalue())], facts=facts
    )
    query = parse_images(
        [SimpleUploadedFile("q.zip", digit_zip({k: v[1:] for k, v in pick.items()}).getvalue())],
        facts=facts,
        classes=support["classes"],
    )
    run = adaptation_start(
        actor=users["member"],
        meta_model=meta_model,
        target="custom",
        support=support,
        query=query,
        steps=5,
        lr=0.1,
    )
    assert adapt_run.run(run.pk) == "succeeded"
    adapted = AdaptedModel.objects.get()
    assert adapted.metric == "accuracy" and 0.0 <= adapted.after <= 1.0 and adapted.n_steps == 0
    predictions = adapted.predictions
    assert predictions["classes"] == ["5", "6", "7"]
    confusion = np.array(predictions["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == 9 and list(confusion.sum(axis=1)) == [3, 3, 3]
    assert np.trace(confusion) / 9 == pytest.approx(adapted.after)
    assert len(predictions["support_images"]) == 3 and len(predictions["query_images"]) == 9
    # Stored as pixel values, not pictures: the review page draws them when asked.
    assert predictions["image_shape"] == [8, 8]
    assert all(len(img["x"]) == 64 and "src" not in img for img in predictions["query_images"])
    review = adapted_review(adapted.adaptation, adapted)
    assert len(review["query_images"]) == 9
    assert all(img["src"].startswith("data:image/png;base64,") for img in review["query_images"])
    assert steps_of(run, "query_accuracy") == [0]


def test_the_watchdog_requeues_a_stale_adaptation_to_adapt_run(world, sent):
    """A dead worker's adaptation goes back to adapt_run (train_run would skip it)."""
    from apps.experiments.services import run_dispatch_queued

    run = launch(world)
    run_claim(run_id=run.pk, worker="dead-worker", device="cpu")
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    sent.clear()
    assert run_requeue_stale() == [run.pk]
    assert sent == [("workers.tasks.adapt_run", [run.pk], "cpu")]
    sent.clear()
    assert run_dispatch_queued() == [run.pk]
    assert sent == [("workers.tasks.adapt_run", [run.pk], "cpu")]
    assert adapt_run.run(run.pk) == "succeeded" and AdaptedModel.objects.count() == 1


def test_a_diverging_adaptation_fails_naming_the_inner_step(world):
    run = launch(world, lr=10.0, steps=50)
    assert adapt_run.run(run.pk) == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert re.match(r"adaptation diverged at inner step \d+: (support|query)_loss is (nan|inf)", run.error)
    assert "try fewer steps or a smaller learning rate" in run.error
    assert not AdaptedModel.objects.exists()


def test_a_diverging_batch_fails_naming_the_step_and_the_tasks(world, settings):
    settings.ADAPT_BATCH_TASKS = 20
    run = launch(world, target="batch", task_index=None, lr=10.0, steps=50)
    assert adapt_run.run(run.pk) == "failed"
    run.refresh_from_db()
    assert re.match(r"adaptation diverged at inner step \d+: the query loss of \d+ of 20 tasks", run.error)
    assert not AdaptedModel.objects.exists()


def test_meta_test_tasks_can_use_another_k_than_training(world, settings):
    """Train at one K, test at another (Finn et al. 2017): the batch and the single
    meta-test task are cut with the chosen number of shots."""
    settings.ADAPT_BATCH_TASKS = 20
    few = launch(world, target="batch", task_index=None, steps=3, shots=1)
    many = launch(world, target="batch", task_index=None, steps=3, shots=20)
    assert (few.adaptation.shots, many.adaptation.shots) == (1, 20)
    assert adapt_run.run(few.pk) == adapt_run.run(many.pk) == "succeeded"
    few_model = AdaptedModel.objects.get(adaptation__run=few)
    many_model = AdaptedModel.objects.get(adaptation__run=many)
    # The same 20 tasks: more shots adapt better.
    np.testing.assert_array_equal(
        adapted_model_arrays(few_model)["task_ids"], adapted_model_arrays(many_model)["task_ids"]
    )
    assert few_model.after > many_model.after

    single = launch(world, shots=3)
    assert adapt_run.run(single.pk) == "succeeded"
    assert len(AdaptedModel.objects.get(adaptation__run=single).predictions["support"]["x"]) == 3


@pytest.mark.parametrize("shots", [0, 101, True, "5"])
def test_bad_shots_are_refused_on_their_field(world, sent, shots):
    with pytest.raises(ValidationError) as info:
        launch(world, target="batch", task_index=None, shots=shots)
    assert "shots" in info.value.message_dict
    assert not Run.objects.filter(kind="adapt").exists() and sent == []
