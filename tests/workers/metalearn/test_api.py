"""evaluate() and adapt() on small trained models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metalearn_toys import ToyBlobs

from workers.metalearn.api import adapt, evaluate, meta_train
from workers.metalearn.config import FamilySpec
from workers.metalearn.families import make_family
from workers.metalearn.types import DataError, DivergenceError, EpisodeSpec


@pytest.fixture(scope="module")
def sinusoid():
    return make_family(FamilySpec(name="sinusoid"))


@pytest.fixture(scope="module")
def maml_run(tmp_path_factory, sinusoid):
    path = tmp_path_factory.mktemp("maml")
    config = {
        "algorithm": "maml",
        "iterations": 300,
        "meta_batch": 10,
        "meta_lr": 3e-3,
        "hidden": [40, 40],
        "eval_interval": 300,
        "eval_tasks": 20,
        "checkpoint_interval": 300,
    }
    meta_train(config, sinusoid, None, path)
    return path


@pytest.fixture(scope="module")
def protonet_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("proto")
    config = {
        "algorithm": "protonet",
        "family": {"name": "glyphs"},
        "iterations": 20,
        "meta_batch": 4,
        "ways": 3,
        "shots": 2,
        "query": 3,
        "conv_filters": 8,
        "eval_interval": 20,
        "eval_tasks": 10,
        "checkpoint_interval": 20,
    }
    meta_train(config, ToyBlobs(), None, path)
    return path


def test_evaluate_shapes_and_ci(maml_run, sinusoid):
    result = evaluate(maml_run, split="test", count=30, steps=3, family=sinusoid, batch_size=12)
    assert result.metric == "mse" and result.steps == 3
    assert result.losses.shape == (30, 4) and result.losses.dtype == np.float32
    assert result.scores.shape == (30,)
    np.testing.assert_array_equal(result.task_ids, np.arange(30))
    assert result.mean == pytest.approx(float(result.scores.mean()), rel=1e-6)
    assert result.ci95 == pytest.approx(1.96 * result.scores.std(ddof=1) / np.sqrt(30), rel=1e-4)
    np.testing.assert_allclose(result.scores, result.losses[:, -1], rtol=1e-5)
    assert result.losses[:, -1].mean() < result.losses[:, 0].mean()  # adaptation helps

    whole = evaluate(maml_run, split="test", count=30, steps=3, family=sinusoid, batch_size=100)
    np.testing.assert_allclose(whole.losses, result.losses, rtol=1e-5, atol=1e-6)
    default = evaluate(maml_run, split="val", count=5, family=sinusoid)
    assert default.steps == 1 and default.losses.shape == (5, 2)


def test_evaluate_reports_progress_per_chunk_and_stops_early(maml_run, sinusoid):
    seen: list[tuple[int, int]] = []
    result = evaluate(
        maml_run,
        split="test",
        count=25,
        steps=2,
        family=sinusoid,
        batch_size=10,
        progress=lambda d, n: seen.append((d, n)),
    )
    assert seen == [(10, 25), (20, 25), (25, 25)] and result.losses.shape == (25, 3)

    polls: list[int] = []

    def stop_after_two_chunks() -> bool:
        polls.append(len(polls))
        return len(polls) >= 2

    stopped = evaluate(
        maml_run,
        split="test",
        count=50,
        steps=2,
        family=sinusoid,
        batch_size=10,
        should_stop=stop_after_two_chunks,
    )
    assert len(polls) == 2
    assert stopped.losses.shape == (20, 3) and stopped.scores.shape == (20,)
    np.testing.assert_array_equal(stopped.task_ids, np.arange(20))
    np.testing.assert_allclose(stopped.losses, result.losses[:20], rtol=1e-5, atol=1e-6)
    assert stopped.mean == pytest.approx(float(stopped.scores.mean()), rel=1e-6)

    # A stop asked after the first chunk ends there; after the last chunk it is never asked.
    whole = evaluate(
        maml_run, split="test", count=20, steps=2, family=sinusoid, batch_size=10, should_stop=lambda: True
    )
    assert whole.losses.shape == (10, 3)
    last = evaluate(
        maml_run, split="test", count=10, steps=2, family=sinusoid, batch_size=10, should_stop=lambda: True
    )
    assert last.losses.shape == (10, 3)


def test_evaluate_rejects_bad_arguments(maml_run, sinusoid):
    for kwargs, field in [
        ({"split": "dev"}, "split"),
        ({"count": 0}, "count"),
        ({"steps": -1}, "steps"),
        ({"lr": 0.0}, "lr"),
    ]:
        with pytest.raises(DataError) as info:
            evaluate(maml_run, family=sinusoid, **kwargs)
        assert info.value.field == field


def test_evaluate_classification(protonet_run):
    result = evaluate(protonet_run, split="test", count=10, family=ToyBlobs())
    assert result.metric == "accuracy" and result.steps == 0
    assert result.losses.shape == (10, 1) and 0.0 <= result.mean <= 1.0


def test_one_adapt_call_predicts_on_the_query_and_on_a_grid(maml_run, sinusoid):
    """The grid rides along in the same call: what a second call with the grid as its
    query gives, and the curve and weights are unchanged by it."""
    task = sinusoid.fixed_tasks("test", EpisodeSpec(shots=5, query=10), 1)
    support, query = (task.x_support[0], task.y_support[0]), (task.x_query[0], task.y_query[0])
    grid = np.linspace(-5, 5, 40, dtype=np.float32)[:, None]
    both = adapt(maml_run, support, query, steps=5, lr=0.01, grid=grid)
    plain = adapt(maml_run, support, query, steps=5, lr=0.01)
    on_grid = adapt(maml_run, support, grid, steps=5, lr=0.01)
    assert both.grid.shape == both.grid_before.shape == (40, 1) and plain.grid is None
    np.testing.assert_allclose(both.grid, on_grid.predictions, rtol=1e-6)
    np.testing.assert_allclose(both.grid_before, on_grid.predictions_before, rtol=1e-6)
    assert not np.allclose(both.grid, both.grid_before)  # adapting moved the function
    np.testing.assert_allclose(both.predictions, plain.predictions, rtol=1e-6)
    assert both.curve == plain.curve
    with pytest.raises(DataError, match="grid"):
        adapt(maml_run, support, query, steps=1, grid=np.zeros((3, 2), dtype=np.float32))


def test_adapt_lowers_query_loss(maml_run, sinusoid):
    task = sinusoid.fixed_tasks("test", EpisodeSpec(shots=5, query=50), 1)
    seen = []
    result = adapt(
        maml_run,
        support=(task.x_support[0], task.y_support[0]),
        query=(task.x_query[0], task.y_query[0]),
        steps=10,
        lr=0.01,
        on_step=lambda i, entry: seen.append(i),
    )
    assert seen == list(range(11)) and len(result.curve) == 11
    assert result.curve[-1]["query_loss"] < result.curve[0]["query_loss"]
    assert result.curve[-1]["support_loss"] < result.curve[0]["support_loss"]
    assert result.predictions.shape == (50, 1) and result.predictions_before.shape == (50, 1)
    assert set(result.weights) == {
        "body.1.weight",
        "body.1.bias",
        "body.3.weight",
        "body.3.bias",
        "head.weight",
        "head.bias",
    }
    assert all(isinstance(v, torch.Tensor) for v in result.weights.values())

    only_x = adapt(maml_run, support=(task.x_support[0], task.y_support[0]), query=task.x_query[0], steps=2)
    assert "query_loss" not in only_x.curve[0] and only_x.predictions.shape == (50, 1)


def test_adapt_validates_input(maml_run):
    x = np.linspace(-1, 1, 5)
    with pytest.raises(DataError) as info:
        adapt(maml_run, support=(np.ones((5, 2)), x))
    assert info.value.field == "support"
    with pytest.raises(DataError) as info:
        adapt(maml_run, support=(x, x[:3]))
    assert info.value.field == "support"
    with pytest.raises(DataError) as info:
        adapt(maml_run, support=(x, x), query=np.array([[np.nan]]))
    assert info.value.field == "query"
    with pytest.raises(DataError) as info:
        adapt(maml_run, support=(x, x), steps=-2)
    assert info.value.field == "steps"


def test_adapt_classification_prototypes(protonet_run):
    family = ToyBlobs()
    from workers.metalearn.types import EpisodeSpec

    task = family.fixed_tasks("test", EpisodeSpec(shots=2, query=3, ways=3), 1)
    result = adapt(
        protonet_run, support=(task.x_support[0], task.y_support[0]), query=(task.x_query[0], task.y_query[0])
    )
    assert len(result.curve) == 1 and "query_accuracy" in result.curve[0]
    assert result.predictions.shape == (9, 3) and result.weights["prototypes"].shape == (3, 8)
    with pytest.raises(DataError) as info:
        adapt(protonet_run, support=(task.x_support[0], np.array([0, 0, 1, 1, 1, 7])))
    assert info.value.field == "support"


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile", "metasgd", "anil", "mnn", "seed-mnn"])
def test_every_regression_algorithm_trains_evaluates_and_adapts(tmp_path, sinusoid, algorithm):
    config = {
        "algorithm": algorithm,
        "iterations": 2,
        "meta_batch": 3,
        "hidden": [8],
        "eval_interval": 2,
        "eval_tasks": 3,
        "checkpoint_interval": 2,
        "mnn_hidden": 16,
        "mnn_finetune_steps": 1,
    }
    assert meta_train(config, sinusoid, None, tmp_path).step == 2
    result = evaluate(tmp_path, count=4, family=sinusoid)
    assert result.losses.shape[0] == 4 and np.isfinite(result.losses).all()
    task = sinusoid.fixed_tasks("test", EpisodeSpec(shots=5, query=5), 1)
    adapted = adapt(tmp_path, (task.x_support[0], task.y_support[0]), task.x_query[0], desc=task.desc[0])
    assert adapted.predictions.shape == (5, 1) and adapted.weights


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile", "metasgd", "anil", "mnn", "protonet"])
def test_every_classification_algorithm_trains_evaluates_and_adapts(tmp_path, algorithm):
    family = ToyBlobs()
    config = {
        "algorithm": algorithm,
        "family": {"name": "glyphs"},
        "iterations": 2,
        "meta_batch": 2,
        "ways": 3,
        "shots": 1,
        "query": 2,
        "conv_filters": 4,
        "eval_interval": 2,
        "eval_tasks": 2,
        "checkpoint_interval": 2,
        "mnn_hidden": 16,
        "mnn_embed_dim": 8,
    }
    assert meta_train(config, family, None, tmp_path).step == 2
    result = evaluate(tmp_path, count=3, family=family)
    assert result.metric == "accuracy" and np.isfinite(result.losses).all()
    task = family.fixed_tasks("test", EpisodeSpec(shots=1, query=2, ways=3), 1)
    adapted = adapt(tmp_path, (task.x_support[0], task.y_support[0]), (task.x_query[0], task.y_query[0]))
    assert adapted.predictions.shape == (6, 3) and "query_accuracy" in adapted.curve[-1]


def test_adapt_that_diverges_names_the_inner_step(maml_run, sinusoid):
    task = sinusoid.fixed_tasks("test", EpisodeSpec(shots=5, query=20), 1)
    seen = []
    with pytest.raises(DivergenceError) as info:
        adapt(
            maml_run,
            support=(task.x_support[0], task.y_support[0]),
            query=(task.x_query[0], task.y_query[0]),
            steps=30,
            lr=1e4,
            on_step=lambda i, entry: seen.append(i),
        )
    error = info.value
    assert error.phase == "adaptation" and error.step >= 1
    assert error.quantity in {"support_loss", "query_loss"}
    assert str(error).startswith(f"adaptation diverged at inner step {error.step}: ")
    # Steps before the bad one were reported; the bad one was not.
    assert seen == list(range(error.step))


def test_evaluation_chunks_shrink_with_the_size_of_tasks():
    from workers.metalearn.loop import EVAL_CHUNK, EVAL_INPUT_BUDGET, eval_chunk

    assert eval_chunk(5 + 10) == EVAL_CHUNK  # sinusoid: tiny tasks, the full chunk
    glyph_task = 5 * (5 + 10) * 28 * 28  # 5-way, 5 shots + 10 query, 28x28
    assert eval_chunk(glyph_task) == EVAL_INPUT_BUDGET // glyph_task < EVAL_CHUNK
    assert eval_chunk(10 * EVAL_INPUT_BUDGET) == 1  # never zero


def test_evaluate_can_test_at_another_k_than_training(maml_run):
    trained_k = evaluate(maml_run, count=40, steps=1)  # the run's K: 5 shots, 10 query
    same = evaluate(maml_run, count=40, steps=1, shots=5, query=10)
    assert np.array_equal(same.losses, trained_k.losses)
    one = evaluate(maml_run, count=40, steps=1, shots=1, query=20)
    twenty = evaluate(maml_run, count=40, steps=1, shots=20, query=20)
    # The same fixed tasks (ids), cut with other support sizes: more shots adapt better.
    assert list(one.task_ids) == list(twenty.task_ids) == list(range(40))
    assert one.losses.shape == twenty.losses.shape == (40, 2)
    assert one.mean > twenty.mean
    with pytest.raises(DataError) as info:
        evaluate(maml_run, count=2, shots=0)
    assert info.value.field == "shots"
