"""The compiled iteration (``workers/metalearn/metastep.py``) against the eager loop.

These compile for real (a 2-layer MLP of 16 units: about 10 s the first time,
then inductor's cache in the test process's cache folder).
"""

from __future__ import annotations

import math

import pytest
import torch
from test_loop import SMALL, Recorder, assert_bit_identical, final_state

from tests.workers.metalearn.test_fused import batch
from tests.workers.metalearn.test_gradients import SINE
from workers.metalearn.algorithms import make_algorithm
from workers.metalearn.api import meta_train
from workers.metalearn.config import FamilySpec, TrainConfig
from workers.metalearn.episodes import Episode
from workers.metalearn.families import make_family
from workers.metalearn.loop import make_optimizer
from workers.metalearn.metastep import MetaStep

#: Clipping that bites (the meta-gradient norms here are about 1-4) and a schedule
#: that moves the rate every step, so both reach the compiled graph.
CLIPPED = {**SMALL, "grad_clip": 0.5, "meta_lr_schedule": "cosine", "compile": "on"}


@pytest.fixture(scope="module")
def sinusoid():
    return make_family(FamilySpec(name="sinusoid"))


@pytest.mark.parametrize("algorithm", ["maml", "metasgd"])
def test_compiled_iteration_steps_like_the_eager_loop(tmp_path, sinusoid, algorithm):
    eager, compiled = Recorder(), Recorder()
    config = {**CLIPPED, "algorithm": algorithm}
    meta_train({**config, "compile": "off"}, sinusoid, eager, tmp_path / "eager")
    result = meta_train(config, sinusoid, compiled, tmp_path / "compiled")
    assert result.compile.startswith("compile: on; compiled in")
    _, params_e, adam_e = final_state(tmp_path / "eager")
    _, params_c, adam_c = final_state(tmp_path / "compiled")
    for ours, ref in ((params_c, params_e), (adam_c, adam_e)):
        assert ours.keys() == ref.keys()
        for name in ref:
            torch.testing.assert_close(ours[name], ref[name], rtol=1e-4, atol=1e-6, msg=name)
    for (step_e, m_e), (step_c, m_c) in zip(eager.steps, compiled.steps, strict=True):
        assert step_e == step_c
        assert m_e["grad_norm"] > CLIPPED["grad_clip"]  # the clipping was exercised
        assert m_c["loss"] == pytest.approx(m_e["loss"], rel=1e-4)
        assert m_c["grad_norm"] == pytest.approx(m_e["grad_norm"], rel=1e-4)


def test_compiled_run_resumed_is_bit_identical(tmp_path, sinusoid):
    """A killed compiled run resumes from its checkpoint onto the same weights."""
    meta_train(CLIPPED, sinusoid, Recorder(), tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        meta_train(CLIPPED, sinusoid, Recorder(crash_at=7), tmp_path / "killed")
    resumed = Recorder()
    meta_train(CLIPPED, sinusoid, resumed, tmp_path / "killed")
    assert [s for s, _ in resumed.steps] == [6, 7, 8, 9, 10]
    assert_bit_identical(final_state(tmp_path / "straight"), final_state(tmp_path / "killed"))


def _stepper(clip: float | None = None):
    config = TrainConfig(algorithm="maml", hidden=(16, 16), inner_steps=2)
    trainer = make_algorithm(config, SINE)
    meta = {k: v.requires_grad_() for k, v in trainer.init_params().items()}
    optimizer = make_optimizer(config, meta)
    return trainer, meta, optimizer, MetaStep(trainer, optimizer, meta, clip, cpu=True)


def test_a_non_finite_step_applies_nothing():
    trainer, meta, optimizer, step = _stepper()
    ep = batch(SINE)
    grads, _ = trainer.meta_grads(meta, ep)  # the first, eager step creates Adam's state
    for name, p in meta.items():
        p.grad = grads[name]
    optimizer.step()
    assert step.ready()
    before = {k: v.detach().clone() for k, v in meta.items()}
    state = {id(p): {k: t.clone() for k, t in optimizer.state[p].items()} for p in meta.values()}
    bad = Episode(ep.xs, ep.ys, ep.xq, ep.yq.clone().index_fill_(1, torch.tensor([0]), math.inf), ep.desc)
    out = step(bad, 1e-3)
    assert not math.isfinite(float(out.loss))
    for name, p in meta.items():
        assert torch.equal(p.detach(), before[name]), name
        for key, value in optimizer.state[p].items():
            assert torch.equal(value, state[id(p)][key]), (name, key)
    out = step(ep, 1e-3)  # a finite step moves the weights and counts
    assert math.isfinite(float(out.loss))
    assert not torch.equal(meta["head.weight"].detach(), before["head.weight"])
    assert float(optimizer.state[meta["head.weight"]]["step"]) == 2.0


def test_the_compiled_iteration_refuses_what_it_does_not_implement():
    trainer, meta, optimizer, _ = _stepper()
    with pytest.raises(ValueError, match="amsgrad"):
        MetaStep(trainer, torch.optim.Adam(list(meta.values()), amsgrad=True), meta, None, cpu=True)
    with pytest.raises(ValueError, match="fused"):
        MetaStep(trainer, torch.optim.Adam(list(meta.values()), fused=True), meta, None, cpu=True)
    trainer.use_autograd()
    with pytest.raises(ValueError, match="closed-form"):
        MetaStep(trainer, optimizer, meta, None, cpu=True)
