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


# -- glyphs ------------------------------------------------------------------------------------

GLYPH_EPISODE = EpisodeSpec(shots=1, query=3, ways=5)


@pytest.fixture(scope="module")
def glyph_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("metaweb-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("METAWEB_CACHE_DIR", str(cache))
        yield cache


@pytest.fixture(scope="module")
def glyphs(glyph_cache: Path):
    return make_family(FamilySpec(name="glyphs", params={"max_classes": 50}))


@pytest.fixture(scope="module")
def plain_glyphs(glyph_cache: Path, glyphs):
    return make_family(FamilySpec(name="glyphs", params={"max_classes": 50, "augment": False}))


def bank_classes(family, images: np.ndarray) -> np.ndarray:
    """The bank class of each un-augmented image ``[..., 1, 28, 28]`` (exact match)."""
    bank = family.bank
    flat = bank.images.reshape(len(bank.images), -1).astype(np.float32) / 255.0
    lookup = {row.tobytes(): i for i, row in enumerate(flat)}
    member = np.array([lookup[img.reshape(-1).tobytes()] for img in images.reshape(-1, 28, 28)])
    owner = np.searchsorted(bank.offsets, member, side="right") - 1
    return owner.reshape(images.shape[:-3])


def test_glyph_batches_have_the_documented_shapes(glyphs) -> None:
    assert isinstance(glyphs, TaskFamily) and glyphs.kind == "classification" == family_kind("glyphs")
    batch = glyphs.sample("train", 4, GLYPH_EPISODE, seed=0)
    assert batch.x_support.shape == (4, 5, 1, 28, 28) and batch.x_support.dtype == np.float32
    assert batch.x_query.shape == (4, 15, 1, 28, 28)
    assert batch.y_support.dtype == np.int64 and batch.y_support.tolist()[0] == [0, 1, 2, 3, 4]
    assert batch.y_query.tolist()[1] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert batch.desc is None
    assert 0.0 <= batch.x_query.min() and batch.x_query.max() <= 1.0
    # Ink is 1 on a dark background: most pixels are near 0, strokes reach full ink.
    assert np.median(batch.x_query) < 0.05 and (batch.x_query.max(axis=(2, 3, 4)) > 0.5).all()
    assert {k: glyphs.num_classes(k) for k in ("train", "val", "test")} == {"train": 32, "val": 8, "test": 10}
    json.dumps(glyphs.describe())


def test_glyphs_are_deterministic_and_fixed_tasks_slice(glyphs) -> None:
    assert_batches_equal(glyphs.sample("val", 3, GLYPH_EPISODE, 7), glyphs.sample("val", 3, GLYPH_EPISODE, 7))
    assert not np.array_equal(
        glyphs.sample("val", 3, GLYPH_EPISODE, 7).x_query, glyphs.sample("val", 3, GLYPH_EPISODE, 8).x_query
    )
    whole = glyphs.fixed_tasks("test", GLYPH_EPISODE, count=20)
    assert_batches_equal(
        glyphs.fixed_tasks("test", GLYPH_EPISODE, count=5, start=10), whole.take(slice(10, 15))
    )


def test_glyph_augmentation_changes_images_within_bounds(glyphs, plain_glyphs) -> None:
    plain = plain_glyphs.fixed_tasks("train", GLYPH_EPISODE, count=4)
    augmented = glyphs.fixed_tasks("train", GLYPH_EPISODE, count=4)
    # Same tasks (same classes and members), different pixels, similar ink.
    np.testing.assert_array_equal(plain.y_query, augmented.y_query)
    diff = np.abs(plain.x_query - augmented.x_query).mean(axis=(2, 3, 4))
    assert (diff > 0.01).all() and (diff < 0.3).all()
    ink_ratio = augmented.x_query.sum(axis=(2, 3, 4)) / plain.x_query.sum(axis=(2, 3, 4))
    assert 0.4 < ink_ratio.min() and ink_ratio.max() < 2.5


def test_glyph_splits_are_disjoint_and_episodes_class_major(plain_glyphs) -> None:
    splits = {k: set(v.tolist()) for k, v in plain_glyphs.bank.splits.items()}
    assert not (splits["train"] & splits["val"]) and not (splits["train"] & splits["test"])
    assert not (splits["val"] & splits["test"])
    assert len(set(plain_glyphs.characters("train")) & set(plain_glyphs.characters("test"))) == 0
    for split in ("train", "val", "test"):
        batch = plain_glyphs.sample(split, 6, GLYPH_EPISODE, seed=1)
        support, query = (
            bank_classes(plain_glyphs, batch.x_support),
            bank_classes(plain_glyphs, batch.x_query),
        )
        assert set(support.ravel()) | set(query.ravel()) <= splits[split]
        for task in range(6):
            # Label c's support and query images all come from the task's c-th class.
            assert len(set(support[task])) == 5
            np.testing.assert_array_equal(query[task], np.repeat(support[task], 3))


def test_glyph_check_episode(glyphs, plain_glyphs) -> None:
    with pytest.raises(DataError) as exc:
        glyphs.sample("test", 2, EpisodeSpec(shots=1, query=1, ways=11), seed=0)
    assert exc.value.field == "ways"
    assert exc.value.message == "11-way episodes need 11 classes; the test split has 10"
    glyphs.check_episode(EpisodeSpec(shots=20, query=20, ways=5), "test")  # augmented: members repeat
    with pytest.raises(DataError) as exc:
        plain_glyphs.check_episode(EpisodeSpec(shots=20, query=20, ways=5), "test")
    assert exc.value.field == "shots" and "40 distinct images per class" in exc.value.message


def test_glyph_bank_is_cached_atomically_and_matches_the_full_set(glyph_cache: Path, glyphs) -> None:
    from workers.metalearn.families import _glyph_bank

    files = sorted(p.name for p in glyph_cache.iterdir())
    assert len(files) == 1 and files[0].startswith("glyphs-v1-") and files[0].endswith("-c50.npz")
    cached = _glyph_bank._read(glyph_cache / files[0])
    np.testing.assert_array_equal(cached.images, glyphs.bank.images)
    # The full set: 1,000 classes split 640/160/200; the subset keeps each class's split.
    full = _glyph_bank.render_bank()
    assert {k: len(v) for k, v in full.splits.items()} == {"train": 640, "val": 160, "test": 200}
    assert np.diff(full.offsets).min() >= _glyph_bank.MIN_FONTS - 1
    full_split = {int(full.codepoints[c]): s for s, ids in full.splits.items() for c in ids}
    for split, ids in glyphs.bank.splits.items():
        assert {full_split[int(glyphs.bank.codepoints[c])] for c in ids} == {split}


# -- digits ------------------------------------------------------------------------------------


def digit_labels(images: np.ndarray) -> np.ndarray:
    from sklearn.datasets import load_digits

    data = load_digits()
    lookup = {(row / 16.0).astype(np.float32).tobytes(): int(t) for row, t in zip(data.data, data.target)}
    return np.array([lookup[img.tobytes()] for img in images.reshape(-1, 64)]).reshape(images.shape[:-1])


def test_digits_splits_and_shapes() -> None:
    family = make_family(FamilySpec(name="digits"))
    assert family.kind == "classification" and family.input_shape == (64,)
    episode = EpisodeSpec(shots=5, query=10, ways=5)
    seen: dict[str, set[bytes]] = {}
    for split, digits in (("train", {0, 1, 2, 3, 4}), ("val", {0, 1, 2, 3, 4}), ("test", {5, 6, 7, 8, 9})):
        batch = family.sample(split, 8, episode, seed=2)
        assert batch.x_support.shape == (8, 25, 64) and batch.x_query.shape == (8, 50, 64)
        assert batch.x_support.dtype == np.float32 and 0 <= batch.x_support.min() and batch.x_query.max() <= 1
        support, query = digit_labels(batch.x_support), digit_labels(batch.x_query)
        assert set(support.ravel()) == digits
        for task in range(8):
            # One digit per episode label, the same in support and query.
            by_label = support[task].reshape(5, 5)
            assert (by_label == by_label[:, :1]).all()
            np.testing.assert_array_equal(query[task].reshape(5, 10), np.repeat(by_label[:, :1], 10, axis=1))
        seen[split] = {
            img.tobytes() for img in family.fixed_tasks(split, episode, 40).x_query.reshape(-1, 64)
        }
    assert not (seen["train"] & seen["val"])  # val holds out images of the training digits


def test_digits_check_episode() -> None:
    family = make_family(FamilySpec(name="digits"))
    with pytest.raises(DataError) as exc:
        family.check_episode(EpisodeSpec(shots=5, query=10, ways=6), "train")
    assert exc.value.message == "6-way episodes need 6 classes; the train split has 5"
    with pytest.raises(DataError) as exc:
        family.fixed_tasks("val", EpisodeSpec(shots=20, query=40, ways=5), count=3)
    assert exc.value.field == "shots" and "in the val split" in exc.value.message
