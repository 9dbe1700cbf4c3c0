"""The task embedding map: PCA (pure numpy) and the embeddings of a trained MNN on
the support set and of ProtoNets."""

from __future__ import annotations

import numpy as np
import pytest

from workers.metalearn.api import meta_train
from workers.metalearn.config import FamilySpec
from workers.metalearn.embedding import task_map
from workers.metalearn.families import make_family
from workers.metalearn.pca import pca_2d
from workers.metalearn.specs import embeds_tasks as mappable
from workers.metalearn.types import DataError


def test_pca_finds_the_directions_of_largest_variance():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(500, 2)) * [5.0, 1.0]
    mixing = np.linalg.qr(rng.normal(size=(6, 6)))[0][:2]
    x = latent @ mixing + 0.01 * rng.normal(size=(500, 6)) + 3.0
    points, explained = pca_2d(x)
    assert points.shape == (500, 2) and np.allclose(points.mean(axis=0), 0, atol=1e-9)
    assert explained[0] > explained[1] > 0 and explained.sum() > 0.99
    assert abs(np.corrcoef(points[:, 0], latent[:, 0])[0, 1]) > 0.999
    again, _ = pca_2d(x.copy())
    assert np.array_equal(points, again)  # the signs are fixed
    single, share = pca_2d(np.arange(5.0)[:, None])
    assert np.allclose(single[:, 1], 0) and share[1] == 0


def test_which_models_embed_tasks():
    assert mappable("protonet", None, None) == ""
    assert mappable("mnn", 2, "support") == "" and mappable("mnn", None, None) == ""
    assert "Only ProtoNets" in mappable("mnn", 2, None) and "Only" in mappable("maml", 2, None)


@pytest.fixture(scope="module")
def sinusoid():
    return make_family(FamilySpec(name="sinusoid"))


def test_an_mnn_on_the_support_set_maps_the_test_tasks(tmp_path, sinusoid):
    config = {"algorithm": "mnn", "mnn_condition": "support", "iterations": 300, "meta_batch": 10,
              "meta_lr": 3e-3, "mnn_hidden": 32, "mnn_embed_dim": 16, "eval_tasks": 10,
              "eval_interval": 300}  # fmt: skip
    meta_train(config, sinusoid, None, tmp_path)
    found = task_map(tmp_path, sinusoid, count=150)
    assert len(found["points"]) == 150 and found["embedding_dim"] == 16
    assert found["task_ids"] == list(range(150)) and set(found["params"]) == {"amplitude", "phase"}
    assert found["explained"][0] >= found["explained"][1] > 0
    # The set encoder has learned the amplitude: the first component follows it
    # (|r| measured 0.66-0.87 over seeds 0-3 at this budget; the phase 0.03-0.18).
    first = np.array(found["points"])[:, 0]
    assert abs(np.corrcoef(first, found["params"]["amplitude"])[0, 1]) > 0.4
    assert task_map(tmp_path, sinusoid, count=150) == found  # deterministic


def test_a_model_that_reads_the_description_has_no_map(tmp_path, sinusoid):
    meta_train({"algorithm": "mnn", "iterations": 2, "meta_batch": 2, "mnn_hidden": 8, "eval_tasks": 2},
               sinusoid, None, tmp_path)  # fmt: skip
    with pytest.raises(DataError) as info:
        task_map(tmp_path, sinusoid, count=10)
    assert info.value.field == "algorithm"


def test_protonets_map_their_tasks_without_parameters(tmp_path):
    digits = make_family(FamilySpec(name="digits"))
    config = {"algorithm": "protonet", "family": {"name": "digits"}, "iterations": 20, "meta_batch": 4,
              "ways": 3, "shots": 2, "query": 3, "hidden": [16], "eval_tasks": 5,
              "eval_interval": 20}  # fmt: skip
    meta_train(config, digits, None, tmp_path)
    found = task_map(tmp_path, digits, count=50)
    assert len(found["points"]) == 50 and found["params"] == {} and found["embedding_dim"] == 16
