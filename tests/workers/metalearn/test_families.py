"""Task families: determinism, shapes, distributions, splits and parameter errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from workers.metalearn.config import ConfigError, FamilySpec
from workers.metalearn.families import FAMILY_PARAMS, family_kind, make_family
from workers.metalearn.types import DataError, EpisodeSpec, TaskBatch, TaskFamily

REPO = Path(__file__).resolve().parents[3]
EPISODE = EpisodeSpec(shots=5, query=10)


def assert_batches_equal(a: TaskBatch, b: TaskBatch) -> None:
    for name in ("x_support", "y_support", "x_query", "y_query", "desc", "task_ids"):
        left, right = getattr(a, name), getattr(b, name)
        if left is None or right is None:
            assert left is right, name
        else:
            np.testing.assert_array_equal(left, right, err_msg=name)


def test_importing_families_does_not_import_torch() -> None:
    code = (
        "import sys, workers.metalearn.families as f; "
        "print(sorted(m for m in ('torch', 'django', 'celery', 'sklearn', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- regression --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sinusoid", "harmonic"])
def test_regression_shapes_and_protocol(name: str) -> None:
    family = make_family(FamilySpec(name=name))
    assert isinstance(family, TaskFamily)
    assert family.kind == "regression" == family_kind(name)
    batch = family.sample("train", 7, EPISODE, seed=3)
    assert batch.x_support.shape == (7, 5, 1) and batch.x_support.dtype == np.float32
    assert batch.y_support.shape == (7, 5, 1) and batch.y_support.dtype == np.float32
    assert batch.x_query.shape == (7, 10, 1) and batch.y_query.shape == (7, 10, 1)
    assert batch.desc is not None and batch.desc.shape == (7, family.desc_dim)
    assert batch.task_ids.shape == (7,) and batch.task_ids.dtype == np.int64
    assert family.num_classes("train") == 0
    json.dumps(family.describe())


@pytest.mark.parametrize("name", ["sinusoid", "harmonic"])
def test_regression_is_deterministic(name: str) -> None:
    family = make_family(FamilySpec(name=name))
    assert_batches_equal(
        family.sample("train", 4, EPISODE, seed=11), family.sample("train", 4, EPISODE, seed=11)
    )
    other = family.sample("train", 4, EPISODE, seed=12)
    assert not np.array_equal(other.desc, family.sample("train", 4, EPISODE, seed=11).desc)
    # Splits draw different tasks for the same seed.
    assert not np.array_equal(
        family.sample("val", 4, EPISODE, 11).desc, family.sample("train", 4, EPISODE, 11).desc
    )
    # A fresh family object (as on another machine) gives the same fixed tasks.
    again = make_family(FamilySpec(name=name))
    assert_batches_equal(family.fixed_tasks("test", EPISODE, 3), again.fixed_tasks("test", EPISODE, 3))


@pytest.mark.parametrize("name", ["sinusoid", "harmonic"])
def test_fixed_tasks_do_not_depend_on_count(name: str) -> None:
    family = make_family(FamilySpec(name=name))
    whole = family.fixed_tasks("test", EPISODE, count=600)
    assert len(whole) == 600
    np.testing.assert_array_equal(whole.task_ids, np.arange(600))
    assert_batches_equal(family.fixed_tasks("test", EPISODE, count=5, start=10), whole.take(slice(10, 15)))
    assert not np.array_equal(family.fixed_tasks("val", EPISODE, 5).desc, whole.desc[:5])


def test_a_sampled_task_can_be_rebuilt_from_its_id() -> None:
    family = make_family(FamilySpec(name="sinusoid"))
    batch = family.sample("train", 3, EPISODE, seed=5)
    assert (batch.task_ids >= 2**31).all()
    np.testing.assert_array_equal(family.sample_ids("train", 3, seed=5), batch.task_ids)


def test_sinusoid_follows_finn_et_al() -> None:
    family = make_family(FamilySpec(name="sinusoid"))
    batch = family.fixed_tasks("train", EpisodeSpec(shots=10, query=40), count=2000)
    amplitude, phase = batch.desc[:, 0], batch.desc[:, 1]
    assert 0.1 <= amplitude.min() < 0.2 and 4.9 < amplitude.max() <= 5.0
    assert 0.0 <= phase.min() < 0.05 and 3.1 < phase.max() <= np.pi
    x = np.concatenate([batch.x_support, batch.x_query], axis=1)
    assert -5.0 <= x.min() < -4.99 and 4.99 < x.max() <= 5.0
    assert abs(float(amplitude.mean()) - 2.55) < 0.1
    # Noiseless targets, and the truth is amplitude * sin(x + phase).
    np.testing.assert_array_equal(batch.y_support, family.truth(batch.desc, batch.x_support))
    np.testing.assert_array_equal(batch.y_query, family.truth(batch.desc, batch.x_query))
    np.testing.assert_allclose(
        batch.y_query[0, :, 0], amplitude[0] * np.sin(batch.x_query[0, :, 0] + phase[0]), rtol=1e-5, atol=1e-5
    )
    # One task at a time: desc [D] with x [N, 1].
    np.testing.assert_array_equal(family.truth(batch.desc[3], batch.x_query[3]), batch.y_query[3])


def test_harmonic_truth_and_ranges() -> None:
    family = make_family(FamilySpec(name="harmonic", params={"frequency_min": 1.0, "frequency_max": 1.5}))
    batch = family.fixed_tasks("val", EPISODE, count=300)
    a1, a2, w, p1, p2 = batch.desc.T
    assert a1.min() >= 0.1 and a1.max() <= 5.0 and a2.min() >= 0 and a2.max() <= 2.5
    assert w.min() >= 1.0 and w.max() <= 1.5 and p1.max() < 2 * np.pi and p2.min() >= 0
    x = batch.x_query[:, :, 0]
    expected = a1[:, None] * np.sin(w[:, None] * x + p1[:, None]) + a2[:, None] * np.sin(
        2 * w[:, None] * x + p2[:, None]
    )
    np.testing.assert_allclose(batch.y_query[:, :, 0], expected, rtol=1e-4, atol=1e-4)
    assert family.describe()["desc_names"] == ["a1", "a2", "w", "p1", "p2"]


def test_regression_check_episode() -> None:
    family = make_family(FamilySpec(name="sinusoid"))
    family.check_episode(EpisodeSpec(shots=1, query=1, ways=5))  # ways is ignored for regression
    with pytest.raises(DataError) as exc:
        family.check_episode(EpisodeSpec(shots=0, query=5))
    assert exc.value.field == "shots"
    with pytest.raises(DataError) as exc:
        family.sample("holdout", 2, EPISODE, seed=0)  # type: ignore[arg-type]
    assert exc.value.field == "split"


# -- parameters --------------------------------------------------------------------------------


def test_bad_params_raise_config_errors_keyed_by_field() -> None:
    with pytest.raises(ConfigError) as exc:
        make_family(FamilySpec(name="sinusoid", params={"amplitude_min": 2.0, "amplitude_max": 1.0}))
    assert exc.value.errors == {"family.params.amplitude_max": "must be greater than amplitude_min (2.0)"}
    with pytest.raises(ConfigError) as exc:
        make_family(FamilySpec(name="harmonic", params={"frequency_min": -1, "shape": "square"}))
    assert set(exc.value.errors) == {"family.params.frequency_min", "family.params.shape"}
    with pytest.raises(ConfigError) as exc:
        make_family(FamilySpec(name="sinusoid", version=2))
    assert "family.version" in exc.value.errors


def test_params_models_are_frozen_and_listed() -> None:
    assert {"sinusoid", "harmonic"} <= set(FAMILY_PARAMS)
    params = FAMILY_PARAMS["sinusoid"]()
    with pytest.raises(ValidationError):
        params.amplitude_max = 3.0  # type: ignore[misc]
    with pytest.raises(ConfigError):
        family_kind("mnist")
