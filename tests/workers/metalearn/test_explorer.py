"""The task-space explorer's numpy forward pass against the engine's (torch) MNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workers.metalearn.algorithms import make_algorithm
from workers.metalearn.config import ConfigError, FamilySpec, parse_config
from workers.metalearn.episodes import FamilyInfo
from workers.metalearn.explorer import explorable, explorer_export, explorer_predict
from workers.metalearn.families import make_family
from workers.metalearn.shapes import Facts

SINE = FamilyInfo(name="sinusoid", version=1, kind="regression", input_shape=(1,), desc_dim=2, ways=1)


def export(config, params):
    family = make_family(FamilySpec(name="sinusoid"))
    return explorer_export(
        {k: v.detach().numpy() for k, v in params.items()},
        config,
        Facts.of(SINE),
        desc_names=list(family.desc_names),
        desc_ranges=list(family.desc_ranges()),
        input_range=family.input_range(),
    )


@pytest.mark.parametrize("hidden", [(40, 40), (8,), (16, 12, 8)])
def test_numpy_predictions_match_the_engine_to_1e5(hidden):
    config = parse_config({"algorithm": "mnn", "hidden": list(hidden), "mnn_hidden": 32})
    algorithm = make_algorithm(config, SINE)
    torch.manual_seed(1)
    # A trained-like model: the initial output layer is scaled down, so stir it (outputs of
    # a few units, as sinusoid's; float32 keeps about 7 digits of them).
    params = {k: v + 0.03 * torch.randn_like(v) for k, v in algorithm.init_params().items()}
    model = export(config, params)
    x = np.linspace(-5, 5, 200)
    for desc in ([0.1, 0.0], [2.5, 1.5], [5.0, np.pi]):
        d = torch.tensor(desc, dtype=torch.float32)
        fast, ctx = algorithm.start(params, torch.zeros(1, 1), torch.zeros(1, 1), d)
        engine = algorithm.forward(params, fast, ctx, torch.tensor(x, dtype=torch.float32)[:, None])
        ours = explorer_predict(model, np.array(desc), x)
        assert np.allclose(ours, engine.detach().numpy()[:, 0], rtol=1e-5, atol=1e-5)
        assert np.ptp(ours) > 0.01 and np.abs(ours).max() < 100  # a real curve, of a sinusoid's size


def test_the_sliders_span_the_family_ranges():
    config = parse_config({"algorithm": "mnn", "hidden": [8], "mnn_hidden": 8})
    model = export(config, make_algorithm(config, SINE).init_params())
    assert model["desc"] == [
        {"name": "amplitude", "min": 0.1, "max": 5.0},
        {"name": "phase", "min": 0.0, "max": pytest.approx(np.pi)},
    ]
    assert model["x"] == {"min": -5.0, "max": 5.0, "points": 200}
    family = make_family(FamilySpec(name="sinusoid"))
    from workers.metalearn.types import EpisodeSpec

    desc = family.sample("train", 500, EpisodeSpec(shots=1, query=1), seed=0).desc
    for j, entry in enumerate(model["desc"]):
        assert entry["min"] <= desc[:, j].min() and desc[:, j].max() <= entry["max"]


def test_only_description_mnns_can_be_explored():
    facts = Facts.of(SINE)
    assert explorable(parse_config({"algorithm": "mnn"}), facts) == ""
    assert "support set" in explorable(parse_config({"algorithm": "mnn", "mnn_condition": "support"}), facts)
    assert "Only MNN" in explorable(parse_config({"algorithm": "maml"}), facts)
    with pytest.raises(ConfigError):
        export(parse_config({"algorithm": "maml"}), {})
