"""The training loop: resume equivalence, stops, divergence, config validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metalearn_toys import ToyBlobs, ToySinusoid

from workers.metalearn.api import load_checkpoint, meta_train
from workers.metalearn.checkpoint import latest_checkpoint, list_checkpoints
from workers.metalearn.config import ConfigError, FamilySpec
from workers.metalearn.families import make_family
from workers.metalearn.types import DivergenceError, NullReporter

SMALL = {
    "algorithm": "maml",
    "iterations": 10,
    "meta_batch": 4,
    "shots": 5,
    "query": 5,
    "hidden": [16, 16],
    "eval_interval": 5,
    "eval_tasks": 8,
    "checkpoint_interval": 5,
    "seed": 3,
}


@pytest.fixture(scope="module")
def sinusoid():
    return make_family(FamilySpec(name="sinusoid"))


class Recorder(NullReporter):
    def __init__(self, stop_after: int | None = None, crash_at: int | None = None):
        self.steps: list[tuple[int, dict]] = []
        self.evals: list[tuple[int, dict]] = []
        self.checkpoints: list[tuple[str, int, str | None]] = []
        self.checkpoint_dir = None
        self.stop_after = stop_after
        self.crash_at = crash_at

    def on_step(self, step, metrics):
        if step == self.crash_at:
            raise KeyboardInterrupt("simulated kill")
        self.steps.append((step, metrics))

    def on_eval(self, step, metrics):
        self.evals.append((step, metrics))

    def should_stop(self):
        return self.stop_after is not None and bool(self.steps) and self.steps[-1][0] >= self.stop_after

    def _latest(self) -> str | None:
        found = None if self.checkpoint_dir is None else latest_checkpoint(self.checkpoint_dir)
        return None if found is None else found.name

    def before_checkpoint(self, step):
        self.checkpoints.append(("before", step, self._latest()))

    def on_checkpoint(self, step):
        self.checkpoints.append(("durable", step, self._latest()))


def final_state(path):
    ckpt = load_checkpoint(path)
    return ckpt.step, ckpt.params, ckpt.optimizer_state


def assert_bit_identical(a, b):
    assert a[0] == b[0]
    for tensors_a, tensors_b in ((a[1], b[1]), (a[2], b[2])):
        assert tensors_a.keys() == tensors_b.keys()
        for name in tensors_a:
            assert torch.equal(tensors_a[name], tensors_b[name]), name


@pytest.mark.parametrize("algorithm", ["maml", "reptile"])
def test_killed_run_resumed_from_step_5_is_bit_identical(tmp_path, sinusoid, algorithm):
    config = {**SMALL, "algorithm": algorithm}
    reporter = Recorder()
    result = meta_train(config, sinusoid, reporter, tmp_path / "straight")
    assert result.status == "completed" and result.step == 10
    assert [s for s, _ in reporter.steps] == list(range(1, 11))
    assert [s for s, _ in reporter.evals] == [5, 10]
    assert {"loss", "grad_norm"} <= set(reporter.steps[0][1]) and "val_loss" in reporter.evals[0][1]

    with pytest.raises(KeyboardInterrupt):
        meta_train(config, sinusoid, Recorder(crash_at=7), tmp_path / "killed")
    assert latest_checkpoint(tmp_path / "killed").name == "step-000005"
    resumed = Recorder()
    result = meta_train(config, sinusoid, resumed, tmp_path / "killed")
    assert result.status == "completed"
    assert [s for s, _ in resumed.steps] == [6, 7, 8, 9, 10]
    assert_bit_identical(final_state(tmp_path / "straight"), final_state(tmp_path / "killed"))


def test_the_loop_tells_the_reporter_before_and_after_each_durable_checkpoint(tmp_path, sinusoid):
    reporter = Recorder(stop_after=7)
    reporter.checkpoint_dir = tmp_path
    result = meta_train(SMALL, sinusoid, reporter, tmp_path)
    assert result.status == "stopped"
    # interval 5, then the stop at 7: each checkpoint is on disk exactly when on_checkpoint comes
    assert reporter.checkpoints == [
        ("before", 5, None),
        ("durable", 5, "step-000005"),
        ("before", 7, "step-000005"),
        ("durable", 7, "step-000007"),
    ]


def test_should_stop_checkpoints_then_resume_is_bit_identical(tmp_path, sinusoid):
    meta_train(SMALL, sinusoid, None, tmp_path / "straight")
    result = meta_train(SMALL, sinusoid, Recorder(stop_after=7), tmp_path / "stopped")
    assert result.status == "stopped" and result.step == 7
    assert latest_checkpoint(tmp_path / "stopped").name == "step-000007"
    result = meta_train(SMALL, sinusoid, None, tmp_path / "stopped")
    assert result.status == "completed" and result.step == 10
    assert_bit_identical(final_state(tmp_path / "straight"), final_state(tmp_path / "stopped"))
    # A finished run asked to train again does nothing.
    again = Recorder()
    assert meta_train(SMALL, sinusoid, again, tmp_path / "stopped").step == 10 and not again.steps


def test_stop_before_the_first_step_still_leaves_a_checkpoint(tmp_path, sinusoid):
    class StopNow(NullReporter):
        def should_stop(self):
            return True

    result = meta_train(SMALL, sinusoid, StopNow(), tmp_path)
    assert result.status == "stopped" and result.step == 0
    assert load_checkpoint(tmp_path).step == 0
    meta_train(SMALL, sinusoid, None, tmp_path)
    meta_train(SMALL, sinusoid, None, tmp_path / "straight")
    assert_bit_identical(final_state(tmp_path), final_state(tmp_path / "straight"))


def test_resume_refuses_a_different_run(tmp_path, sinusoid):
    from workers.metalearn.types import CheckpointError

    meta_train({**SMALL, "iterations": 5}, sinusoid, None, tmp_path)
    with pytest.raises(CheckpointError, match="inner_lr"):
        meta_train({**SMALL, "inner_lr": 0.5}, sinusoid, None, tmp_path)
    # More iterations is a continuation, not a different run.
    assert meta_train({**SMALL, "iterations": 6}, sinusoid, None, tmp_path).step == 6


class PoisonedFamily:
    """Delegates to a family; the ``poison_at``-th train batch holds an inf target."""

    def __init__(self, family, poison_at: int):
        self._family = family
        self._calls = 0
        self.poison_at = poison_at

    def __getattr__(self, name):
        return getattr(self._family, name)

    def sample(self, split, batch_size, episode, seed):
        batch = self._family.sample(split, batch_size, episode, seed)
        self._calls += 1
        if self._calls == self.poison_at:
            batch.y_query[0, 0, 0] = np.inf
        return batch


def test_nan_stops_with_step_and_quantity_and_keeps_last_checkpoint(tmp_path, sinusoid):
    config = {**SMALL, "checkpoint_interval": 3}
    with pytest.raises(DivergenceError) as info:
        meta_train(config, PoisonedFamily(sinusoid, poison_at=5), None, tmp_path)
    assert info.value.step == 5 and info.value.quantity == "loss"
    assert "step 5" in str(info.value)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [3]
    assert load_checkpoint(tmp_path).step == 3


def test_huge_inner_lr_diverges_with_a_named_step(tmp_path, sinusoid):
    config = {**SMALL, "inner_lr": 10.0, "inner_steps": 5, "checkpoint_interval": 1}
    with pytest.raises(DivergenceError) as info:
        meta_train(config, sinusoid, None, tmp_path)
    assert info.value.quantity in {"loss", "grad_norm", "val_loss"}
    assert f"step {info.value.step}" in str(info.value)
    kept = list_checkpoints(tmp_path)
    assert all(step < info.value.step for step, _ in kept)
    if kept:
        assert all(torch.isfinite(v).all() for v in load_checkpoint(tmp_path).params.values())


@pytest.mark.parametrize(
    "config,family,field",
    [
        ({"algorithm": "protonet"}, "sine", "algorithm"),
        ({"algorithm": "seed-mnn", "family": {"name": "glyphs"}}, "blobs", "algorithm"),
        ({"algorithm": "seed-mnn"}, "sine-nodesc", "algorithm"),
        ({"algorithm": "maml", "family": {"name": "glyphs"}, "ways": 50}, "blobs", "ways"),
        ({"algorithm": "maml", "family": {"name": "harmonic"}}, "sine", "family.name"),
        ({"algorithm": "maml", "family": {"name": "glyphs"}}, "tiny-images", "family"),
        ({"algorithm": "maml", "shots": 0}, "sine", "shots"),
        ({"algorithm": "maml", "hidden": []}, "sine", "hidden"),
    ],
)
def test_config_errors_name_the_field(tmp_path, config, family, field):
    families = {
        "sine": ToySinusoid(),
        "sine-nodesc": ToySinusoid(with_desc=False),
        "blobs": ToyBlobs(input_shape=(8,)),
        "tiny-images": ToyBlobs(input_shape=(1, 8, 8)),
    }
    with pytest.raises(ConfigError) as info:
        meta_train({**SMALL, **config}, families[family], None, tmp_path)
    assert field in info.value.errors, info.value.errors
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_requested_without_cuda_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        meta_train({**SMALL, "device": "cuda"}, ToySinusoid(), None, tmp_path)
    assert "device" in info.value.errors


def test_data_depends_only_on_seed_and_step(sinusoid):
    """Two runs with the same seed draw the same batches whatever the RNG state."""
    seen: list[list[np.ndarray]] = [[], []]

    class Spy(PoisonedFamily):
        def sample(self, split, batch_size, episode, seed):
            batch = self._family.sample(split, batch_size, episode, seed)
            self.log.append(batch.x_support.copy())
            return batch

    for i in range(2):
        spy = Spy(sinusoid, poison_at=-1)
        spy.log = seen[i]
        torch.manual_seed(100 + i)
        np.random.seed(100 + i)
        meta_train({**SMALL, "iterations": 3, "eval_interval": 100}, spy, None, None)
    assert all(np.array_equal(a, b) for a, b in zip(seen[0], seen[1], strict=True))
    assert not np.array_equal(seen[0][0], seen[0][1])
