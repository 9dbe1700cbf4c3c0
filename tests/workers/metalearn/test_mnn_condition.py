"""``mnn_condition``: what the MNN's hypernetwork reads, the description or the
support set, in the config, the shapes, training and adaptation (issue #12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workers.metalearn.algorithms import make_algorithm
from workers.metalearn.api import adapt, meta_train
from workers.metalearn.config import ConfigError, FamilySpec, parse_config
from workers.metalearn.episodes import FamilyInfo, to_episode
from workers.metalearn.families import make_family
from workers.metalearn.specs import SPECS, expected_shapes
from workers.metalearn.types import DataError, EpisodeSpec

SINE = FamilyInfo(name="sinusoid", version=1, kind="regression", input_shape=(1,), desc_dim=2, ways=1)
GLYPHS = FamilyInfo(
    name="glyphs", version=1, kind="classification", input_shape=(1, 28, 28), desc_dim=None, ways=5
)
TINY = {"algorithm": "mnn", "mnn_hidden": 16, "mnn_embed_dim": 8, "hidden": [8]}


@pytest.fixture(scope="module")
def sinusoid():
    return make_family(FamilySpec(name="sinusoid"))


def test_the_default_is_the_description_where_the_family_has_one():
    spec = SPECS["mnn"]
    assert parse_config({"algorithm": "mnn"}).mnn_condition is None
    assert spec.condition(2) == "description" and spec.condition(None) == "support"
    assert spec.condition(2, "support") == "support"
    assert SPECS["maml"].condition(2) is None and SPECS["seed-mnn"].condition(2) == "description"
    assert spec.describes(2) and not spec.describes(2, "support") and not spec.describes(None)


def test_support_mode_has_a_set_encoder_and_description_mode_none():
    described = expected_shapes(parse_config(TINY), SINE)
    support = expected_shapes(parse_config({**TINY, "mnn_condition": "support"}), SINE)
    assert not any(k.startswith("encoder.") for k in described)
    assert described["hyper.0.weight"] == [16, 2]  # reads (amplitude, phase)
    assert support["encoder.0.weight"] == [16, 2]  # embeds (x, y) pairs
    assert support["hyper.0.weight"] == [16, 8]
    for config in (TINY, {**TINY, "mnn_condition": "support"}):
        parsed = parse_config(config)
        params = make_algorithm(parsed, SINE).init_params()
        assert {k: list(v.shape) for k, v in params.items()} == expected_shapes(parsed, SINE)


def test_a_description_asked_of_a_family_without_one_is_a_field_error(tmp_path):
    config = parse_config({**TINY, "mnn_condition": "description", "family": {"name": "glyphs"}})
    with pytest.raises(ConfigError) as info:
        expected_shapes(config, GLYPHS)
    assert list(info.value.errors) == ["mnn_condition"]
    assert "no task description" in info.value.errors["mnn_condition"]
    with pytest.raises(ConfigError) as info:
        parse_config({"mnn_condition": "prototype"})
    assert "mnn_condition" in info.value.errors


def test_support_mode_ignores_the_description(sinusoid):
    config = parse_config({**TINY, "mnn_condition": "support"})
    algorithm = make_algorithm(config, SINE)
    meta = algorithm.init_params()
    batch = sinusoid.fixed_tasks("val", EpisodeSpec(shots=5, query=5), count=4)
    episode = to_episode(batch)
    losses, _ = algorithm.evaluate_batch(meta, episode)
    scrambled = episode._replace(desc=torch.randn_like(episode.desc) * 100)
    assert torch.equal(losses, algorithm.evaluate_batch(meta, scrambled)[0])
    described = make_algorithm(parse_config(TINY), SINE)
    meta = described.init_params()
    assert not torch.equal(
        described.evaluate_batch(meta, episode)[0], described.evaluate_batch(meta, scrambled)[0]
    )


def test_adaptation_needs_the_description_in_description_mode_only(tmp_path, sinusoid):
    task = sinusoid.fixed_tasks("test", EpisodeSpec(shots=5, query=5), count=1)
    support = (task.x_support[0], task.y_support[0])
    for mode in ("support", "description"):
        out = tmp_path / mode
        meta_train(
            {**TINY, "mnn_condition": mode, "iterations": 2, "meta_batch": 2, "eval_tasks": 2},
            sinusoid,
            None,
            out,
        )
        if mode == "support":
            result = adapt(out, support, task.x_query[0])
            assert np.isfinite(result.predictions).all()
        else:
            with pytest.raises(DataError) as info:
                adapt(out, support, task.x_query[0])
            assert info.value.field == "desc"
            assert np.isfinite(adapt(out, support, task.x_query[0], desc=task.desc[0]).predictions).all()
