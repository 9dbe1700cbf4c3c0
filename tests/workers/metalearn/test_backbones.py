"""Backbones: shapes, body/head split, per-task BatchNorm statistics under vmap."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, vmap

from workers.metalearn.backbones import ConvNet, make_backbone, split_params, to_stateless
from workers.metalearn.config import ConfigError, TrainConfig


def test_mlp_for_sinusoid_is_1_40_40_1():
    net, params = to_stateless(make_backbone((1,), 1, TrainConfig()))
    assert {k: list(v.shape) for k, v in params.items()} == {
        "body.1.weight": [40, 1],
        "body.1.bias": [40],
        "body.3.weight": [40, 40],
        "body.3.bias": [40],
        "head.weight": [1, 40],
        "head.bias": [1],
    }
    assert functional_call(net, params, (torch.zeros(7, 1),)).shape == (7, 1)


def test_mlp_flattens_vector_inputs_and_uses_config_hidden():
    net, params = to_stateless(make_backbone((64,), 5, TrainConfig(hidden=(32,))))
    assert params["body.1.weight"].shape == (32, 64) and params["head.weight"].shape == (5, 32)


def test_conv_net_is_four_blocks_with_64_features_on_28x28():
    module = make_backbone((1, 28, 28), 5, TrainConfig())
    assert isinstance(module, ConvNet) and module.feature_dim == 64
    convs = [m for m in module.body if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in module.body if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == 4 and all(c.kernel_size == (3, 3) and c.out_channels == 64 for c in convs)
    assert len(norms) == 4 and not any(n.track_running_stats for n in norms)
    net, params = to_stateless(module)
    body = split_params(params, "body.")
    assert functional_call(net.body, body, (torch.randn(10, 1, 28, 28),)).shape == (10, 64)
    assert functional_call(net, params, (torch.randn(10, 1, 28, 28),)).shape == (10, 5)


def test_batchnorm_uses_each_tasks_own_statistics_under_vmap():
    net, params = to_stateless(make_backbone((1, 16, 16), 3, TrainConfig(conv_filters=4)))
    x = torch.randn(3, 6, 1, 16, 16) * torch.tensor([0.5, 1.0, 4.0]).view(3, 1, 1, 1, 1)
    batched = vmap(lambda xb: functional_call(net, params, (xb,)))(x)
    looped = torch.stack([functional_call(net, params, (x[b],)) for b in range(3)])
    torch.testing.assert_close(batched, looped)
    # ...and not the statistics of all tasks pooled together.
    pooled = functional_call(net, params, (x.reshape(18, 1, 16, 16),)).reshape(3, 6, 3)
    assert not torch.allclose(batched, pooled)


def test_too_small_images_are_a_config_error():
    with pytest.raises(ConfigError) as info:
        make_backbone((1, 8, 8), 5, TrainConfig())
    assert "family" in info.value.errors
