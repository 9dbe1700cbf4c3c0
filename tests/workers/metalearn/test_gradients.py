"""Batched meta-gradients against plain per-task reference loops (float64).

The references below are written independently of the engine's algorithm code:
a Python loop over tasks, ``torch.autograd.grad(create_graph=True)`` for the inner
steps, and one ``autograd.grad`` of the averaged query loss at the end.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from workers.metalearn.algorithms import make_algorithm
from workers.metalearn.config import TrainConfig
from workers.metalearn.episodes import Episode, FamilyInfo

SINE = FamilyInfo(name="sinusoid", version=1, kind="regression", input_shape=(1,), desc_dim=2, ways=1)
IMAGES = FamilyInfo(
    name="glyphs", version=1, kind="classification", input_shape=(1, 16, 16), desc_dim=None, ways=3
)


def regression_batch(tasks: int = 4, shots: int = 5, query: int = 10) -> Episode:
    g = torch.Generator().manual_seed(1)
    amp = torch.rand(tasks, 1, 1, generator=g, dtype=torch.float64) * 4.9 + 0.1
    phase = torch.rand(tasks, 1, 1, generator=g, dtype=torch.float64) * 3.14
    x = torch.rand(tasks, shots + query, 1, generator=g, dtype=torch.float64) * 10 - 5
    y = amp * torch.sin(x + phase)
    desc = torch.cat([amp[:, 0], phase[:, 0]], dim=1)
    return Episode(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], desc)


def image_batch(tasks: int = 2, shots: int = 2, query: int = 3, ways: int = 3) -> Episode:
    g = torch.Generator().manual_seed(2)
    xs = torch.randn(tasks, shots * ways, 1, 16, 16, generator=g, dtype=torch.float64)
    xq = torch.randn(tasks, query * ways, 1, 16, 16, generator=g, dtype=torch.float64)
    ys = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1).contiguous()
    yq = torch.arange(ways).repeat_interleave(query).expand(tasks, -1).contiguous()
    return Episode(xs, ys, xq, yq, torch.zeros(tasks, 0, dtype=torch.float64))


def setup(algorithm: str, info: FamilyInfo = SINE, **overrides):
    ways = info.ways if info.kind == "classification" else 5
    config = TrainConfig(
        algorithm=algorithm, family={"name": info.name}, conv_filters=4, ways=ways, **overrides
    )
    alg = make_algorithm(config, info)
    meta = {k: v.double().requires_grad_() for k, v in alg.init_params().items()}
    return config, alg, meta


def rel_err(ours: dict, ref: dict) -> float:
    """Relative error of the whole meta-gradient, ``|ours - ref| / |ref|`` (2-norms).

    Taken over all parameters together: a conv bias followed by BatchNorm has an
    exactly-zero gradient, so per-tensor ratios would compare rounding noise."""
    assert set(ours) == set(ref)
    diff = torch.cat([(ours[n] - ref[n]).reshape(-1) for n in ref]).norm()
    scale = torch.cat([ref[n].reshape(-1) for n in ref]).norm()
    return (diff / scale).item()


def criterion(info: FamilyInfo, out, y):
    return F.cross_entropy(out, y) if info.kind == "classification" else F.mse_loss(out, y)


def reference_maml(net, meta, ep, steps, lr, info, *, first_order=False, lrs=None):
    """Per-task MAML loop (Finn et al. 2017, Algorithm 2), plain autograd."""
    names = [n for n in meta if not n.startswith("lr.")]
    total = 0.0
    for b in range(ep.xs.shape[0]):
        fast = {n: meta[n] for n in names}
        for _ in range(steps):
            loss = criterion(info, functional_call(net, fast, (ep.xs[b],)), ep.ys[b])
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {
                n: fast[n] - (lrs[n] if lrs is not None else lr) * g for n, g in zip(fast, grads, strict=True)
            }
        total = total + criterion(info, functional_call(net, fast, (ep.xq[b],)), ep.yq[b])
    total = total / ep.xs.shape[0]
    grads = torch.autograd.grad(total, list(meta.values()))
    return dict(zip(meta, grads, strict=True))


@pytest.mark.parametrize("steps", [1, 5])
def test_maml_second_order_matches_reference(steps):
    _, alg, meta = setup("maml", inner_steps=steps, inner_lr=0.01)
    ep = regression_batch()
    ours, _ = alg.meta_grads(meta, ep)
    ref = reference_maml(alg.net, meta, ep, steps, 0.01, SINE)
    assert rel_err(ours, ref) < 1e-5


def test_maml_second_order_differs_from_first_order():
    """The check above is not vacuous: second-order terms matter on this batch."""
    _, alg, meta = setup("maml", inner_steps=5, inner_lr=0.05)
    ep = regression_batch()
    second, _ = alg.meta_grads(meta, ep)
    first = reference_maml(alg.net, meta, ep, 5, 0.05, SINE, first_order=True)
    assert rel_err(second, first) > 1e-3


def test_maml_conv_batchnorm_matches_reference():
    """Conv net with per-task BatchNorm statistics: vmap equals the per-task loop."""
    _, alg, meta = setup("maml", IMAGES, inner_steps=2, inner_lr=0.1)
    ep = image_batch()
    ours, _ = alg.meta_grads(meta, ep)
    ref = reference_maml(alg.net, meta, ep, 2, 0.1, IMAGES)
    assert rel_err(ours, ref) < 1e-5


@pytest.mark.parametrize("algorithm,flag", [("fomaml", {}), ("maml", {"first_order": True})])
def test_first_order_maml_matches_reference(algorithm, flag):
    _, alg, meta = setup(algorithm, inner_steps=3, inner_lr=0.05, **flag)
    ep = regression_batch()
    ours, _ = alg.meta_grads(meta, ep)
    ref = reference_maml(alg.net, meta, ep, 3, 0.05, SINE, first_order=True)
    assert rel_err(ours, ref) < 1e-5


def test_metasgd_matches_reference():
    _, alg, meta = setup("metasgd", inner_steps=2, inner_lr=0.02)
    with torch.no_grad():  # distinct learned rates, so a mix-up of names would show
        for n, v in meta.items():
            if n.startswith("lr."):
                v.uniform_(0.005, 0.05)
    ep = regression_batch()
    ours, _ = alg.meta_grads(meta, ep)
    lrs = {n[3:]: v for n, v in meta.items() if n.startswith("lr.")}
    ref = reference_maml(alg.net, meta, ep, 2, None, SINE, lrs=lrs)
    assert set(ours) == set(meta)
    assert any(n.startswith("lr.") and ref[n].abs().max() > 0 for n in ref)
    assert rel_err(ours, ref) < 1e-5


@pytest.mark.parametrize("info", [SINE, IMAGES], ids=["mlp", "conv"])
def test_anil_matches_reference(info):
    _, alg, meta = setup("anil", info, inner_steps=3, inner_lr=0.1)
    ep = regression_batch() if info is SINE else image_batch()
    ours, _ = alg.meta_grads(meta, ep)
    body = {n[5:]: v for n, v in meta.items() if n.startswith("body.")}
    total = 0.0
    for b in range(ep.xs.shape[0]):
        hs = functional_call(alg.net.body, body, (ep.xs[b],))
        hq = functional_call(alg.net.body, body, (ep.xq[b],))
        head = {"weight": meta["head.weight"], "bias": meta["head.bias"]}
        for _ in range(3):
            loss = criterion(info, functional_call(alg.net.head, head, (hs,)), ep.ys[b])
            gw, gb = torch.autograd.grad(loss, [head["weight"], head["bias"]], create_graph=True)
            head = {"weight": head["weight"] - 0.1 * gw, "bias": head["bias"] - 0.1 * gb}
        total = total + criterion(info, functional_call(alg.net.head, head, (hq,)), ep.yq[b])
    ref = dict(zip(meta, torch.autograd.grad(total / ep.xs.shape[0], list(meta.values())), strict=True))
    assert rel_err(ours, ref) < 1e-5


def test_reptile_matches_reference():
    _, alg, meta = setup("reptile", inner_steps=4, inner_lr=0.02)
    ep = regression_batch()
    ours, metrics = alg.meta_grads(meta, ep)
    adapted = []
    for b in range(ep.xs.shape[0]):
        fast = {n: v.detach().clone().requires_grad_() for n, v in meta.items()}
        for _ in range(4):
            loss = F.mse_loss(functional_call(alg.net, fast, (ep.xs[b],)), ep.ys[b])
            grads = torch.autograd.grad(loss, list(fast.values()))
            fast = {
                n: (fast[n] - 0.02 * g).detach().requires_grad_() for n, g in zip(fast, grads, strict=True)
            }
        adapted.append(fast)
    ref = {n: meta[n].detach() - torch.stack([a[n] for a in adapted]).mean(0) for n in meta}
    assert rel_err(ours, ref) < 1e-5
    assert torch.isfinite(metrics["loss"])


def test_protonet_matches_reference():
    _, alg, meta = setup("protonet", IMAGES)
    ep = image_batch()
    ours, metrics = alg.meta_grads(meta, ep)
    body = {n[5:]: v for n, v in meta.items()}
    total = 0.0
    for b in range(ep.xs.shape[0]):
        hs = functional_call(alg.net.body, body, (ep.xs[b],))
        hq = functional_call(alg.net.body, body, (ep.xq[b],))
        protos = torch.stack([hs[ep.ys[b] == k].mean(0) for k in range(3)])
        logits = -(torch.cdist(hq, protos) ** 2)
        total = total + F.cross_entropy(logits, ep.yq[b])
    ref = dict(zip(meta, torch.autograd.grad(total / ep.xs.shape[0], list(meta.values())), strict=True))
    assert rel_err(ours, ref) < 1e-5
    assert 0.0 <= metrics["accuracy"].item() <= 1.0


def test_one_inner_step_implementation_is_shared(monkeypatch):
    """Training, evaluation and every gradient algorithm go through base.inner_step."""
    import workers.metalearn.algorithms.base as base

    calls = []
    real = base.inner_step

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(base, "inner_step", spy)
    for name in ("maml", "fomaml", "reptile", "metasgd", "anil"):
        calls.clear()
        _, alg, meta = setup(name, inner_steps=2)
        alg.meta_grads(meta, regression_batch(tasks=2))
        alg.evaluate_batch(meta, regression_batch(tasks=2), steps=3)
        assert len(calls) == 2 + 3, name  # traced once per step under vmap
