"""The closed-form meta-gradient (``algorithms/analytic.py``) of MAML, first-order
MAML and Meta-SGD against autograd.

The reference is the fused inner loop differentiated by autograd (itself tested
against the generic path in ``test_fused.py``) and, in float64, the plain per-task
``torch.autograd.grad`` loop of ``test_gradients.py``.
"""

from __future__ import annotations

import pytest
import torch

from tests.workers.metalearn.test_fused import TABLE, batch
from tests.workers.metalearn.test_gradients import SINE, reference_maml, rel_err
from workers.metalearn.algorithms import make_algorithm
from workers.metalearn.config import TrainConfig
from workers.metalearn.episodes import Episode


def twins(algorithm: str, info, hidden=(8, 6), **overrides):
    """The same MAML twice: closed form, and autograd through the fused loop."""
    config = TrainConfig(algorithm=algorithm, ways=max(2, info.ways), hidden=hidden, **overrides)
    closed, autograd = make_algorithm(config, info), make_algorithm(config, info)
    autograd.use_autograd()
    meta = {k: v.requires_grad_() for k, v in closed.init_params().items()}
    return closed, autograd, meta


def as_double(ep: Episode) -> Episode:
    return Episode(*(t.double() if t.is_floating_point() else t for t in ep))


@pytest.mark.parametrize("broadcast", [False, True], ids=["bmm", "broadcast"])
@pytest.mark.parametrize("info", [SINE, TABLE], ids=["regression", "classification"])
@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_closed_form_matches_autograd(algorithm, info, steps, broadcast):
    closed, autograd, meta = twins(algorithm, info, inner_steps=steps, inner_lr=0.05)
    closed.fused.broadcast = broadcast  # the compiled form's contractions, run eagerly here
    assert (closed.path, autograd.path) == ("analytic", "fused")
    ep = batch(info)
    ours, ours_metrics = closed.meta_grads(meta, ep)
    ref, ref_metrics = autograd.meta_grads(meta, ep)
    assert rel_err(ours, ref) < 1e-5
    assert set(ours_metrics) == set(ref_metrics)
    for key, value in ref_metrics.items():
        torch.testing.assert_close(ours_metrics[key], value, rtol=1e-5, atol=1e-6)
    assert all(not g.requires_grad for g in ours.values())  # no graph kept behind


@pytest.mark.parametrize("info", [SINE, TABLE], ids=["regression", "classification"])
def test_closed_form_matches_the_per_task_loop_in_float64(info):
    """Three hidden layers, five steps: exact up to float64 rounding."""
    closed, _, meta = twins("maml", info, hidden=(7, 5, 6), inner_steps=5, inner_lr=0.1)
    meta = {k: v.detach().double().requires_grad_() for k, v in meta.items()}
    ep = as_double(batch(info))
    ours, _ = closed.meta_grads(meta, ep)
    ref = reference_maml(closed.net, meta, ep, 5, 0.1, info)
    assert rel_err(ours, ref) < 1e-12
    first, _ = twins("fomaml", info, hidden=(7, 5, 6), inner_steps=5, inner_lr=0.1)[0].meta_grads(meta, ep)
    assert rel_err(first, ref) > 1e-3  # the Hessian terms are there


def distinct_rates(meta: dict) -> dict:
    """Meta-SGD's rates drawn apart, so that a rate applied to the wrong weight shows."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, value in meta.items():
            if name.startswith("lr."):
                value.copy_(torch.empty(value.shape).uniform_(0.01, 0.1, generator=generator))
    return meta


@pytest.mark.parametrize("broadcast", [False, True], ids=["bmm", "broadcast"])
@pytest.mark.parametrize("info", [SINE, TABLE], ids=["regression", "classification"])
@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
@pytest.mark.parametrize("steps", [1, 3])
def test_metasgd_closed_form_matches_autograd(info, steps, first_order, broadcast):
    closed, autograd, meta = twins("metasgd", info, inner_steps=steps, first_order=first_order)
    closed.fused.broadcast = broadcast
    meta = distinct_rates(meta)
    ours, _ = closed.meta_grads(meta, autograd_ep := batch(info))
    ref, _ = autograd.meta_grads(meta, autograd_ep)
    assert list(ours) == list(meta)  # every meta-parameter, in its order (the compiled Adam zips them)
    rates = [n for n in meta if n.startswith("lr.")]
    weights = [n for n in meta if n not in rates]
    for group in (weights, rates):  # each part on its own: the rates' gradient is much smaller
        assert rel_err({n: ours[n] for n in group}, {n: ref[n] for n in group}) < 1e-5
    assert all(float(ref[n].abs().max()) > 0 for n in rates)


@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
def test_metasgd_closed_form_matches_the_per_task_loop_in_float64(first_order):
    closed, _, meta = twins("metasgd", SINE, hidden=(7, 5, 6), inner_steps=4, first_order=first_order)
    meta = {k: v.detach().double().requires_grad_() for k, v in distinct_rates(meta).items()}
    ep = as_double(batch(SINE))
    ours, _ = closed.meta_grads(meta, ep)
    lrs = {n.removeprefix("lr."): v for n, v in meta.items() if n.startswith("lr.")}
    ref = reference_maml(closed.net, meta, ep, 4, None, SINE, first_order=first_order, lrs=lrs)
    assert rel_err(ours, ref) < 1e-12


def test_which_algorithms_and_devices_take_the_closed_form():
    config = TrainConfig(algorithm="maml", hidden=(8,))
    paths = {
        name: make_algorithm(config.model_copy(update={"algorithm": name}), SINE).path
        for name in ("maml", "fomaml", "metasgd", "reptile", "anil")
    }
    assert paths == {
        "maml": "analytic",
        "fomaml": "analytic",
        "metasgd": "analytic",
        "reptile": "fused",
        "anil": "fused",
    }
    alg = make_algorithm(config, SINE)
    alg.place(torch.device("cpu"))
    assert alg.path == "analytic"
    alg.place(torch.device("cuda"))  # the GPU keeps the measured autograd path
    assert alg.path == "fused"
    alg.use_generic()
    assert alg.path == "generic"


def test_compiled_closed_form_matches_eager():
    """A real compile (classification, one hidden layer: about 10 s): one graph, same numbers."""
    closed, _, meta = twins("maml", TABLE, hidden=(8,), inner_steps=2, inner_lr=0.05)
    ep = batch(TABLE)
    eager, _ = closed.meta_grads(meta, ep)
    closed.compile(cpu=True)
    compiled, metrics = closed.meta_grads(meta, ep)
    assert rel_err(compiled, eager) < 1e-5
    assert 0.0 <= float(metrics["accuracy"]) <= 1.0
    closed.uncompile()
    again, _ = closed.meta_grads(meta, ep)
    assert rel_err(again, eager) < 1e-6
