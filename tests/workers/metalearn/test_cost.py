"""The torch-free cost estimate (``workers.metalearn.cost``): exact parameter counts,
activation memory within a factor of 3 of the measured peak growth, and the issue's
hostile configs refused while every default config fits the CPU budget.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from workers.metalearn.algorithms import make_algorithm
from workers.metalearn.config import ConfigError, parse_config
from workers.metalearn.cost import check_budget, estimate_cost, format_bytes
from workers.metalearn.episodes import FamilyInfo
from workers.metalearn.families import make_family
from workers.metalearn.shapes import family_info_dict
from workers.metalearn.specs import ALGORITHM_NAMES, check_compatible

ROOT = Path(__file__).resolve().parents[3]
GIB = 1024**3
#: The default budgets (``RUN_BUDGETS`` in metaweb/settings/base.py).
CPU, GPU = settings.RUN_BUDGETS["cpu"], settings.RUN_BUDGETS["gpu"]
FAMILIES = ("sinusoid", "harmonic", "glyphs", "digits")


def _config(family: str, **changes):
    return parse_config({"family": {"name": family, "version": 1, "params": {}}, **changes})


def _facts(config):
    return family_info_dict(make_family(config.family), config)


def _suits(algorithm: str, config) -> bool:
    try:
        check_compatible(algorithm, _facts(config))
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("algorithm", ALGORITHM_NAMES)
@pytest.mark.parametrize("family", ["sinusoid", "glyphs"])
def test_parameter_count_is_exact(algorithm: str, family: str) -> None:
    config = _config(family, algorithm=algorithm, hidden=[8, 8], conv_filters=4)
    if not _suits(algorithm, config):
        pytest.skip(f"{algorithm} does not take {family}")
    algo = make_algorithm(config, FamilyInfo.of(make_family(config.family), config))
    real = sum(t.numel() for t in algo.init_params().values())
    estimate = estimate_cost(config, _facts(config))
    assert estimate.parameters == real
    assert estimate.checkpoint_bytes == 12 * real


@pytest.mark.parametrize(
    "config",
    [
        {"family": {"name": "sinusoid", "version": 1, "params": {}}, "algorithm": "maml",
         "hidden": [256, 256], "meta_batch": 64, "query": 200},
        {"family": {"name": "glyphs", "version": 1, "params": {}}, "algorithm": "maml",
         "conv_filters": 16, "meta_batch": 4},
    ],
    ids=["mlp", "conv"],
)  # fmt: skip
def test_activation_estimate_is_within_3x_of_the_measured_peak(config) -> None:
    """The memory one meta-gradient takes at 5 meta-batches less at 1 (cost_probe.py:
    the peak resident size during the call): the memory of 4. Measured/estimated was
    1.14 and 1.15 here; a maximum since the process started also counted the imports
    and read 0 in a fresh virtualenv."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def probe(factor: int) -> dict:
        result = subprocess.run(
            [sys.executable, "-m", "tests.workers.metalearn.cost_probe", json.dumps(config), str(factor)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        return json.loads(result.stdout)

    one, five = probe(1), probe(5)
    measured, estimated = five["peak"] - one["peak"], 4 * one["activation"]
    ratio = measured / estimated
    assert 1 / 3 <= ratio <= 3, f"measured {format_bytes(measured)}, estimated {format_bytes(estimated)}"


@pytest.mark.parametrize("budget", [CPU, GPU], ids=["cpu", "gpu"])
def test_the_issues_mlp_is_refused_naming_hidden(budget) -> None:
    config = _config("sinusoid", algorithm="maml", hidden=[4096] * 8, meta_batch=1024, query=10000)
    with pytest.raises(ConfigError) as error:
        check_budget(config, _facts(config), budget, queue="q")
    assert list(error.value.errors) == ["hidden"]
    assert "117.5 M parameters" in error.value.errors["hidden"]


def test_an_8x4096_mlp_at_one_iteration_is_refused_for_its_checkpoints() -> None:
    config = _config("sinusoid", algorithm="maml", hidden=[4096] * 8, iterations=1)
    estimate = estimate_cost(config, _facts(config))
    assert 1.2 * GIB < estimate.checkpoint_bytes < 1.4 * GIB  # the issue's "about 1.3 GiB"
    with pytest.raises(ConfigError, match="hidden"):
        check_budget(config, _facts(config), {"checkpoint_bytes": GIB}, queue="gpu")


@pytest.mark.parametrize("budget", [CPU, GPU], ids=["cpu", "gpu"])
def test_the_issues_glyphs_config_is_refused_naming_query(budget) -> None:
    config = _config("glyphs", algorithm="maml", conv_filters=512, query=10000)
    with pytest.raises(ConfigError) as error:
        check_budget(config, _facts(config), budget, queue="gpu")
    assert list(error.value.errors) == ["query"]
    message = error.value.errors["query"]
    assert "activation memory per meta-batch of" in message and "TiB" in message
    assert "Lower query (or conv_filters, meta_batch)" in message


def test_protonet_training_episodes_of_train_ways_are_what_the_estimate_counts() -> None:
    plain = _config("glyphs", algorithm="protonet", ways=5, shots=1, query=5)
    wide = _config("glyphs", algorithm="protonet", ways=5, shots=1, query=5, train_ways=20)
    assert (
        estimate_cost(wide, _facts(wide)).activation_bytes
        == 4 * estimate_cost(plain, _facts(plain)).activation_bytes
    )
    huge = _config("glyphs", algorithm="protonet", conv_filters=512, query=1000, train_ways=100)
    with pytest.raises(ConfigError) as error:
        check_budget(huge, _facts(huge), CPU, queue="cpu")
    assert "train_ways" in error.value.errors["query"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("algorithm", ALGORITHM_NAMES)
def test_every_default_config_fits_the_cpu_budget(algorithm: str, family: str) -> None:
    config = _config(family, algorithm=algorithm)
    if not _suits(algorithm, config):
        pytest.skip(f"{algorithm} does not take {family}")
    check_budget(config, _facts(config), CPU, queue="cpu")


def test_the_estimate_imports_no_torch() -> None:
    code = "import sys, workers.metalearn.cost; assert 'torch' not in sys.modules"
    subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
