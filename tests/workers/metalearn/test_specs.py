"""Algorithm specs (``workers.metalearn.specs``) and the torch-free backbone shapes
(``workers.metalearn.shapes``): the facts each algorithm declares, and the shapes
computed without torch against the torch backbones' real parameters."""

from __future__ import annotations

import pytest

from workers.metalearn.algorithms import ALGORITHM_CLASSES, make_algorithm
from workers.metalearn.backbones import make_backbone
from workers.metalearn.config import ConfigError, parse_config
from workers.metalearn.episodes import FamilyInfo
from workers.metalearn.shapes import backbone_shapes
from workers.metalearn.specs import ALGORITHM_NAMES, SPECS, check_compatible, spec_of

SINE = {"name": "sinusoid", "kind": "regression", "input_shape": [1], "desc_dim": 2, "ways": 1}
PLAIN = {"name": "table", "kind": "regression", "input_shape": [3], "desc_dim": None, "ways": 1}
GLYPHS = {"name": "glyphs", "kind": "classification", "input_shape": [1, 28, 28], "desc_dim": None, "ways": 5}

#: (algorithm, family) -> allowed, for one family of each kind that matters.
ALLOWED = {
    "protonet": {"SINE": False, "PLAIN": False, "GLYPHS": True},
    "seed-mnn": {"SINE": True, "PLAIN": False, "GLYPHS": False},
}


@pytest.mark.parametrize("algorithm", ALGORITHM_NAMES)
def test_each_algorithm_refuses_exactly_the_families_its_spec_says(algorithm):
    for label, family in {"SINE": SINE, "PLAIN": PLAIN, "GLYPHS": GLYPHS}.items():
        allowed = ALLOWED.get(algorithm, {}).get(label, True)
        if allowed:
            check_compatible(algorithm, family)
        else:
            with pytest.raises(ConfigError) as error:
                check_compatible(algorithm, family)
            assert list(error.value.errors) == ["algorithm"]
            assert algorithm in error.value.errors["algorithm"]


def test_declared_facts():
    assert [name for name, spec in SPECS.items() if not spec.adapts] == ["protonet", "seed-mnn"]
    assert [name for name, spec in SPECS.items() if spec.classification_only] == ["protonet"]
    assert [name for name, spec in SPECS.items() if spec.uses_description] == ["mnn", "seed-mnn"]
    assert SPECS["mnn"].describes(2) and not SPECS["mnn"].describes(None)
    assert SPECS["seed-mnn"].describes(2) and not SPECS["maml"].describes(2)
    with pytest.raises(ConfigError, match="unknown algorithm"):
        spec_of("sgd")


def test_fields_follow_what_each_algorithm_reads():
    inner = {name for name, spec in SPECS.items() if spec.applies("inner_steps")}
    assert inner == {"maml", "fomaml", "reptile", "metasgd", "anil"}
    assert {name for name, spec in SPECS.items() if spec.applies("mnn_hidden")} == {"mnn"}
    assert {name for name, spec in SPECS.items() if spec.applies("mnn_condition")} == {"mnn"}
    # seed-mnn's network and optimiser are fixed; fomaml and reptile are first order anyway.
    assert not SPECS["seed-mnn"].applies("hidden") and not SPECS["seed-mnn"].applies("meta_lr")
    assert not SPECS["fomaml"].applies("first_order") and SPECS["maml"].applies("first_order")
    assert all(spec.applies("iterations") and spec.applies("shots") for spec in SPECS.values())
    # A diverged run's advice names only settings the algorithm has.
    remedies = {name: spec.divergence_remedies for name, spec in SPECS.items() if spec.divergence_remedies}
    inner_first = ("inner_steps", "inner_lr", "meta_lr")
    assert remedies == {
        **dict.fromkeys(("maml", "fomaml", "reptile"), inner_first),
        "metasgd": ("inner_steps", "meta_lr"),
        "mnn": ("meta_lr",),
    }
    assert all(SPECS[name].applies(field) for name, fields in remedies.items() for field in fields)


def test_launch_fields_follow_the_family():
    from workers.metalearn.specs import launch_fields

    vector, image = (1,), (1, 28, 28)
    regression = launch_fields("maml", kind="regression", input_shape=vector, described=True)
    assert "ways" not in regression and "hidden" in regression and "conv_filters" not in regression
    images = launch_fields("maml", kind="classification", input_shape=image, described=False)
    assert "ways" in images and "conv_filters" in images and "hidden" not in images
    assert "mnn_embed_dim" not in launch_fields("mnn", kind="regression", input_shape=vector, described=True)
    assert "mnn_embed_dim" in launch_fields("mnn", kind="regression", input_shape=vector, described=False)
    unknown = launch_fields("mnn", kind=None, input_shape=None)
    assert {"ways", "hidden", "conv_filters", "mnn_embed_dim"} <= unknown


def test_the_config_asks_for_inner_steps_only_where_they_apply():
    with pytest.raises(ConfigError) as error:
        parse_config({"algorithm": "maml", "inner_steps": 0})
    assert "inner_steps" in error.value.errors
    for algorithm in ("mnn", "protonet", "seed-mnn"):
        assert parse_config({"algorithm": algorithm, "inner_steps": 0}).inner_steps == 0


def test_engine_classes_read_name_and_adapts_from_their_spec():
    assert set(ALGORITHM_CLASSES) == set(SPECS)
    config = parse_config({"algorithm": "protonet", "family": {"name": "glyphs"}, "conv_filters": 2})
    info = FamilyInfo.from_dict({**GLYPHS, "version": 1})
    protonet = make_algorithm(config, info)
    assert protonet.resolve_steps(7) == 0  # does not adapt: never takes a step
    maml = make_algorithm(config.model_copy(update={"algorithm": "maml"}), info)
    assert maml.resolve_steps(7) == 7


@pytest.mark.parametrize(
    "input_shape, sizes",
    [
        ((1,), {"hidden": [40, 40]}),
        ((64,), {"hidden": [7]}),
        ((2, 3), {"hidden": [5, 4, 3]}),
        ((1, 28, 28), {"conv_filters": 4}),
        ((3, 16, 20), {"conv_filters": 2}),
        ((1, 84, 84), {"conv_filters": 3}),
    ],
)
@pytest.mark.parametrize("out_features", [1, 5])
def test_torch_free_backbone_shapes_equal_the_torch_backbones(input_shape, sizes, out_features):
    config = parse_config(sizes)
    module = make_backbone(input_shape, out_features, config)
    real = {name: list(p.shape) for name, p in module.named_parameters()}
    shapes, feature_dim = backbone_shapes(input_shape, out_features, config)
    assert shapes == real
    assert list(shapes) == list(real)  # same order, as safetensors and checkpoints list them
    assert feature_dim == module.feature_dim


def test_small_images_are_refused_by_both():
    config = parse_config({})
    for compute in (make_backbone, backbone_shapes):
        with pytest.raises(ConfigError, match="too small"):
            compute((1, 8, 8), 3, config)
