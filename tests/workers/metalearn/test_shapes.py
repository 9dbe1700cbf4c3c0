"""``specs.expected_shapes`` (pure Python) equals the shapes of the engine's own
``init_params`` for every algorithm the engine allows on a sinusoid MLP, a glyphs
conv net and a digits MLP, and refuses what the engine refuses."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from workers.metalearn.algorithms import make_algorithm
from workers.metalearn.config import ALGORITHMS, ConfigError, FamilySpec, parse_config
from workers.metalearn.episodes import FamilyInfo
from workers.metalearn.families import make_family
from workers.metalearn.shapes import family_info_dict, shape_differences
from workers.metalearn.specs import expected_shapes

ROOT = Path(__file__).resolve().parents[3]

#: Small networks keep building 24 algorithms cheap; the structure is what is checked.
SIZES = {"hidden": [8, 6], "conv_filters": 3, "mnn_hidden": 7, "mnn_embed_dim": 5}
FAMILIES = {"sinusoid": {}, "glyphs": {}, "digits": {}}


@cache
def _family(name: str):
    return make_family(FamilySpec(name=name))


def _config(algorithm: str, family: str, **extra):
    return parse_config({"algorithm": algorithm, "family": {"name": family}, "ways": 3, **SIZES, **extra})


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_expected_shapes_equal_the_engines(algorithm, family):
    config = _config(algorithm, family)
    info = FamilyInfo.of(_family(family), config)
    try:
        engine = {k: list(v.shape) for k, v in make_algorithm(config, info).init_params().items()}
    except ConfigError as engine_error:
        with pytest.raises(ConfigError) as ours:
            expected_shapes(config, info)
        assert ours.value.errors.keys() == engine_error.errors.keys()
        return
    assert engine, "every algorithm has parameters"
    assert expected_shapes(config, info) == engine
    # The torch-free facts and the checkpoint's dict give the same answer.
    assert family_info_dict(_family(family), config) == info.to_dict()
    assert expected_shapes(config, info.to_dict()) == engine


def test_the_engine_allows_the_combinations_that_matter():
    """Guard against the parametrised test passing by refusing everything."""
    allowed = 0
    for family in FAMILIES:
        for algorithm in ALGORITHMS:
            config = _config(algorithm, family)
            try:
                expected_shapes(config, FamilyInfo.of(_family(family), config))
                allowed += 1
            except ConfigError:
                pass
    # protonet refuses sinusoid; seed-mnn refuses glyphs and digits.
    assert allowed == 3 * len(ALGORITHMS) - 3


def test_mnn_finetune_and_first_order_do_not_change_shapes():
    config = _config("mnn", "digits", mnn_finetune_steps=2, first_order=True)
    info = FamilyInfo.of(_family("digits"), config)
    engine = {k: list(v.shape) for k, v in make_algorithm(config, info).init_params().items()}
    assert expected_shapes(config, info) == engine


def test_images_too_small_for_the_conv_net_are_refused_like_the_engine():
    info = {"name": "table", "kind": "classification", "input_shape": [1, 8, 8], "desc_dim": None, "ways": 3}
    with pytest.raises(ConfigError) as error:
        expected_shapes(_config("maml", "glyphs"), info)
    assert "too small" in error.value.errors["family"]


def test_shape_differences_names_each_mismatch():
    expected = {"a": [1, 2], "b": [3], "c": [4]}
    actual = {"a": [1, 2], "b": [5], "d": [6]}
    assert shape_differences(expected, actual) == [
        "b: expected [3], got [5]",
        "c: missing (expected [4])",
        "d: not expected (shape [6])",
    ]
    assert shape_differences(expected, expected) == []


def test_shapes_module_imports_without_torch():
    code = (
        "import sys\n"
        "from workers.metalearn.config import parse_config\n"
        "from workers.metalearn.specs import expected_shapes\n"
        "info = {'name': 's', 'kind': 'regression', 'input_shape': [1], 'desc_dim': 2, 'ways': 1}\n"
        "assert expected_shapes(parse_config({}), info)['head.weight'] == [1, 40]\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
