"""The fused MLP inner loop against the generic ``torch.func`` path and a per-task loop.

The generic path (``vmap(grad(...))``, one task at a time) is the reference: the
fused path must give the same meta-gradient, the same per-task losses and the same
adapted weights, to 1e-5 in float32, for every algorithm that uses it, on
regression and on classification. ``test_gradients.py`` checks both against plain
per-task ``torch.autograd.grad`` loops.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

from tests.workers.metalearn.test_gradients import IMAGES, SINE, reference_maml, rel_err
from workers.metalearn.algorithms import make_algorithm
from workers.metalearn.config import TrainConfig
from workers.metalearn.episodes import Episode, FamilyInfo

TABLE = FamilyInfo(name="table", version=1, kind="classification", input_shape=(6,), desc_dim=None, ways=3)
FUSED = ("maml", "fomaml", "metasgd", "anil", "reptile")


def batch(info: FamilyInfo, tasks: int = 4, shots: int = 3, query: int = 5) -> Episode:
    g = torch.Generator().manual_seed(3)
    if info.kind == "regression":
        amp = torch.rand(tasks, 1, 1, generator=g) * 4.9 + 0.1
        phase = torch.rand(tasks, 1, 1, generator=g) * 3.14
        x = torch.rand(tasks, shots + query, 1, generator=g) * 10 - 5
        y = amp * torch.sin(x + phase)
        return Episode(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], torch.zeros(tasks, 0))
    ways = info.ways
    ys = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1).contiguous()
    yq = torch.arange(ways).repeat_interleave(query).expand(tasks, -1).contiguous()
    centres = torch.randn(tasks, ways, info.input_shape[0], generator=g) * 2
    xs = centres.gather(1, ys[..., None].expand(-1, -1, centres.shape[-1])) + torch.randn(
        tasks, ways * shots, info.input_shape[0], generator=g
    )
    xq = centres.gather(1, yq[..., None].expand(-1, -1, centres.shape[-1])) + torch.randn(
        tasks, ways * query, info.input_shape[0], generator=g
    )
    return Episode(xs, ys, xq, yq, torch.zeros(tasks, 0))


def pair(algorithm: str, info: FamilyInfo, **overrides):
    """The same algorithm twice, from the same seed: fused (differentiated by autograd,
    not MAML's closed form of ``test_analytic.py``) and generic."""
    config = TrainConfig(
        algorithm=algorithm, family={"name": info.name}, ways=max(2, info.ways), hidden=(8, 6), **overrides
    )
    fused, generic = make_algorithm(config, info), make_algorithm(config, info)
    fused.use_autograd()
    generic.use_generic()
    meta = {k: v.requires_grad_() for k, v in fused.init_params().items()}
    if algorithm == "metasgd":  # distinct learned rates, so a mix-up of names would show
        with torch.no_grad():
            for name, value in meta.items():
                if name.startswith("lr."):
                    value.uniform_(0.01, 0.1)
    return fused, generic, meta


def generic_adapted(alg, meta, ep: Episode, first_order: bool):
    """Each task's fast weights after the generic path's inner loop (vmap over tasks)."""

    def one(task: Episode):
        xs = alg.encode(meta, task.xs)
        fast, ctx = alg.start(meta, xs, task.ys, task.desc)
        return alg.inner_loop(meta, fast, ctx, xs, task.ys, alg.train_steps, alg.inner_lrs(meta), first_order)

    return vmap(one)(ep)


@pytest.mark.parametrize("broadcast", [False, True], ids=["bmm", "broadcast"])
@pytest.mark.parametrize("info", [SINE, TABLE], ids=["regression", "classification"])
@pytest.mark.parametrize("algorithm", FUSED)
def test_fused_meta_gradient_and_losses_match_generic(algorithm, info, broadcast):
    fused, generic, meta = pair(algorithm, info, inner_steps=3, inner_lr=0.05)
    fused.fused.broadcast = broadcast  # the compiled form's contractions, run eagerly here
    assert (fused.path, generic.path) == ("fused", "generic")
    ep = batch(info)
    ours, ours_metrics = fused.meta_grads(meta, ep)
    ref, ref_metrics = generic.meta_grads(meta, ep)
    assert rel_err(ours, ref) < 1e-5
    for key, value in ref_metrics.items():
        torch.testing.assert_close(ours_metrics[key], value, rtol=1e-5, atol=1e-6)
    if algorithm != "reptile":
        losses, scores = fused._batched_task_loss(meta, ep)
        ref_losses, ref_scores = generic._batched_task_loss(meta, ep)
        torch.testing.assert_close(losses, ref_losses, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(scores, ref_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("broadcast", [False, True], ids=["bmm", "broadcast"])
@pytest.mark.parametrize("info", [SINE, TABLE], ids=["regression", "classification"])
@pytest.mark.parametrize("algorithm", ["maml", "metasgd", "anil"])
def test_fused_adapted_weights_match_generic(algorithm, info, broadcast):
    fused, generic, meta = pair(algorithm, info, inner_steps=4, inner_lr=0.05)
    fused.fused.broadcast = broadcast
    ep = batch(info)
    ours, _ = fused.fused_adapt(meta, ep, first_order=False)
    ref = generic_adapted(generic, meta, ep, first_order=False)
    assert set(ours) == set(ref)
    for name in ref:
        assert ours[name].shape == ref[name].shape, name
        assert rel_err({name: ours[name]}, {name: ref[name]}) < 1e-5, name


def test_fused_classification_matches_per_task_reference():
    """Cross-entropy's closed-form gradient, against plain autograd (float64)."""
    config = TrainConfig(algorithm="maml", family={"name": "table"}, ways=3, hidden=(8, 6), inner_steps=3)
    alg = make_algorithm(config, TABLE)
    alg.use_autograd()
    assert alg.path == "fused"
    meta = {k: v.double().requires_grad_() for k, v in alg.init_params().items()}
    ep = Episode(*(t.double() if t.is_floating_point() else t for t in batch(TABLE)))
    ours, _ = alg.meta_grads(meta, ep)
    ref = reference_maml(alg.net, meta, ep, 3, 0.01, TABLE)
    assert rel_err(ours, ref) < 1e-5


@pytest.mark.parametrize("algorithm", ["maml", "reptile"])
def test_compile_switches_to_the_broadcast_form_and_back(algorithm):
    """Compiling (traced lazily, so nothing is compiled here) selects the broadcast
    contractions; falling back to eager selects ``bmm`` again."""
    fused, _, _ = pair(algorithm, SINE)
    assert not fused.fused.broadcast
    fused.compile(cpu=True)
    assert fused.fused.broadcast
    fused.uncompile()
    assert not fused.fused.broadcast


def test_fused_second_order_terms_are_there():
    """Second order through the fused loop differs from first order (the check is not vacuous)."""
    fused, _, meta = pair("maml", SINE, inner_steps=5, inner_lr=0.05)
    ep = batch(SINE)
    second, _ = fused.meta_grads(meta, ep)
    first, _ = pair("fomaml", SINE, inner_steps=5, inner_lr=0.05)[0].meta_grads(meta, ep)
    assert rel_err(second, first) > 1e-3


def test_conv_backbones_keep_the_generic_path():
    config = TrainConfig(algorithm="maml", family={"name": "glyphs"}, conv_filters=4, ways=3)
    assert make_algorithm(config, IMAGES).path == "generic"
    assert make_algorithm(config.model_copy(update={"algorithm": "anil"}), IMAGES).path == "generic"
    for algorithm in ("protonet", "mnn"):
        assert make_algorithm(config.model_copy(update={"algorithm": algorithm}), IMAGES).path == "generic"
