"""``train_tasks``: a fixed pool of training tasks drawn from the seed alone, and
seed-mnn's epochs over its pool (issue #12: the pool used to depend on ``iterations``)."""

from __future__ import annotations

import numpy as np
import pytest
from test_loop import SMALL, assert_bit_identical, final_state

from workers.metalearn.api import meta_train
from workers.metalearn.config import ConfigError, FamilySpec, parse_config
from workers.metalearn.families import make_family
from workers.metalearn.types import EpisodeSpec, TaskPool

EPISODE = EpisodeSpec(shots=5, query=5)


@pytest.fixture(scope="module")
def sinusoid():
    return make_family(FamilySpec(name="sinusoid"))


class Spy:
    """Delegates to a family and records the task ids of every train batch."""

    def __init__(self, family):
        self._family = family
        self.ids: list[np.ndarray] = []

    def __getattr__(self, name):
        return getattr(self._family, name)

    def sample(self, split, batch_size, episode, seed):
        batch = self._family.sample(split, batch_size, episode, seed)
        self.ids.append(batch.task_ids.copy())
        return batch

    def sample_pool(self, split, batch_size, episode, pool, step):
        batch = self._family.sample_pool(split, batch_size, episode, pool, step)
        self.ids.append(batch.task_ids.copy())
        return batch


def test_a_pool_is_drawn_from_the_seed_and_a_small_pool_is_the_start_of_a_larger(sinusoid):
    ten = sinusoid.pool_ids("train", TaskPool(size=10, seed=4))
    thousand = sinusoid.pool_ids("train", TaskPool(size=1000, seed=4))
    assert len(set(thousand.tolist())) == 1000
    assert np.array_equal(ten, thousand[:10])
    assert not np.array_equal(ten, sinusoid.pool_ids("train", TaskPool(size=10, seed=5)))
    # Pool tasks are never meta-val or meta-test tasks (those are the fixed ids below 2**31).
    assert thousand.min() >= 2**31


def test_every_batch_comes_from_the_pool_and_depends_on_seed_and_step_only(sinusoid):
    pool = TaskPool(size=7, seed=1)
    ids = sinusoid.pool_ids("train", pool)
    seen = set()
    for step in range(1, 30):
        batch = sinusoid.sample_pool("train", 4, EPISODE, pool, step)
        assert set(batch.task_ids.tolist()) <= set(ids.tolist())
        assert len(set(batch.task_ids.tolist())) == 4  # no task twice in a batch smaller than the pool
        again = sinusoid.sample_pool("train", 4, EPISODE, pool, step)
        assert np.array_equal(batch.x_support, again.x_support)
        seen.update(batch.task_ids.tolist())
    assert seen == set(ids.tolist())
    # A pool task is the same task whichever step draws it.
    first = sinusoid.sample_pool("train", 4, EPISODE, pool, 1)
    one = sinusoid.sample_pool("train", 1, EPISODE, TaskPool(size=1, seed=1), 9)
    where = np.flatnonzero(first.task_ids == one.task_ids[0])
    if where.size:
        assert np.array_equal(first.x_support[where[0]], one.x_support[0])


def test_epochs_walk_the_whole_pool_once_per_pass(sinusoid):
    pool = TaskPool(size=12, seed=2, epochs=True)
    ids = set(sinusoid.pool_ids("train", pool).tolist())
    passes = [
        np.concatenate([pool.pick(np.array(sorted(ids)), 4, step) for step in range(1 + 3 * e, 4 + 3 * e)])
        for e in range(2)
    ]
    for walked in passes:
        assert sorted(walked.tolist()) == sorted(ids)
    assert not np.array_equal(passes[0], passes[1])  # each pass is a fresh shuffle


def test_the_loop_trains_on_train_tasks_distinct_tasks(sinusoid):
    spy = Spy(sinusoid)
    meta_train({**SMALL, "iterations": 12, "train_tasks": 5, "eval_interval": 100}, spy, None, None)
    assert len(spy.ids) == 12
    assert len(set(np.concatenate(spy.ids).tolist())) == 5
    unlimited = Spy(sinusoid)
    meta_train({**SMALL, "iterations": 12, "eval_interval": 100}, unlimited, None, None)
    assert len(set(np.concatenate(unlimited.ids).tolist())) == 12 * SMALL["meta_batch"]


def test_train_tasks_is_checked():
    with pytest.raises(ConfigError) as info:
        parse_config({"train_tasks": 0})
    assert "train_tasks" in info.value.errors
    assert parse_config({}).train_tasks is None


def test_seed_mnn_pool_does_not_depend_on_iterations(tmp_path, sinusoid):
    """A seed-mnn run resumed with more iterations trains on the same data as a run
    launched with them: bit-identical weights (the pool was ceil(iterations/epochs)
    meta-batches, so the resumed run's data changed)."""
    config = {**SMALL, "algorithm": "seed-mnn", "checkpoint_interval": 6, "eval_interval": 100}
    meta_train({**config, "iterations": 12}, sinusoid, None, tmp_path / "straight")
    meta_train({**config, "iterations": 6}, sinusoid, None, tmp_path / "resumed")
    meta_train({**config, "iterations": 12}, sinusoid, None, tmp_path / "resumed")
    assert_bit_identical(final_state(tmp_path / "straight"), final_state(tmp_path / "resumed"))


def test_seed_mnn_walks_epochs_over_its_pool(sinusoid):
    spy = Spy(sinusoid)
    config = {**SMALL, "algorithm": "seed-mnn", "train_tasks": 8, "iterations": 4, "eval_interval": 100}
    meta_train(config, spy, None, None)  # meta_batch 4: two steps per epoch
    for epoch in (spy.ids[0:2], spy.ids[2:4]):
        assert len(set(np.concatenate(epoch).tolist())) == 8
