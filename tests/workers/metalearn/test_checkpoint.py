"""Checkpoints: safetensors + JSON, atomic, pruned, and strict when loading."""

from __future__ import annotations

import json

import pytest
import torch

from workers.metalearn.algorithms import make_algorithm
from workers.metalearn.checkpoint import (
    LATEST,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_optimizer_state,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from workers.metalearn.config import TrainConfig
from workers.metalearn.episodes import FamilyInfo
from workers.metalearn.types import CheckpointError

INFO = FamilyInfo(name="sinusoid", version=1, kind="regression", input_shape=(1,), desc_dim=2, ways=1)


def trained_state(algorithm: str = "metasgd"):
    config = TrainConfig(algorithm=algorithm, hidden=(8,))
    alg = make_algorithm(config, INFO)
    params = {k: v.requires_grad_() for k, v in alg.init_params().items()}
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    for p in params.values():
        p.grad = torch.randn_like(p)
    opt.step()
    return config, params, opt


def save(root, step, config, params, opt, **kw):
    return save_checkpoint(
        root,
        step=step,
        config=config,
        family_info=INFO,
        family_describe={"name": "sinusoid"},
        params=params,
        optimizer=opt,
        **{"metrics": {"loss": 1.5}, **kw},
    )


def test_roundtrip(tmp_path):
    config, params, opt = trained_state()
    folder = save(tmp_path, 500, config, params, opt)
    assert folder.name == "step-000500"
    assert sorted(p.name for p in folder.iterdir()) == [
        "checkpoint.json",
        "optimizer.safetensors",
        "params.safetensors",
    ]
    assert (tmp_path / LATEST).read_text().strip() == "step-000500"

    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 500 and ckpt.config == config and ckpt.family_info == INFO
    assert ckpt.algorithm == "metasgd" and ckpt.metrics == {"loss": 1.5}
    assert ckpt.params.keys() == params.keys()
    for name, value in params.items():
        assert torch.equal(ckpt.params[name], value.detach())
    meta = json.loads((folder / "checkpoint.json").read_text())
    assert meta["shapes"]["head.weight"] == [1, 8] and meta["rng"]["torch"]

    fresh = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    opt2 = torch.optim.Adam(fresh.values(), lr=1e-3)
    load_optimizer_state(opt2, list(fresh), ckpt.optimizer_state, ckpt.optimizer)
    for p, q in zip(params.values(), fresh.values(), strict=True):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][key], opt2.state[q][key])


def test_loads_one_step_folder_directly(tmp_path):
    config, params, opt = trained_state()
    save(tmp_path, 1, config, params, opt)
    save(tmp_path, 2, config, params, opt)
    assert load_checkpoint(tmp_path / "step-000001").step == 1
    assert load_checkpoint(tmp_path).step == 2


def test_keeps_the_last_few_and_overwrites_a_step(tmp_path):
    config, params, opt = trained_state()
    for step in range(1, 6):
        save(tmp_path, step, config, params, opt, keep=3)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4, 5]
    save(tmp_path, 5, config, params, opt, keep=3)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4, 5]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_dangling_latest_falls_back_to_newest_complete(tmp_path):
    config, params, opt = trained_state()
    save(tmp_path, 1, config, params, opt)
    (tmp_path / LATEST).write_text("step-000009\n")
    (tmp_path / ".tmp-step-000009-x").mkdir()  # a crash mid-write
    assert latest_checkpoint(tmp_path).name == "step-000001"
    assert load_checkpoint(tmp_path).step == 1


def test_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    config, params, opt = trained_state()
    folder = save(tmp_path, 1, config, params, opt)
    meta = json.loads((folder / "checkpoint.json").read_text())
    meta["shapes"]["head.weight"] = [2, 8]
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shapes"):
        load_checkpoint(folder)
    (folder / "params.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(folder)


def test_rng_state_roundtrip():
    import numpy as np

    state = rng_state()
    a, b = torch.rand(3), np.random.rand(3)
    restore_rng(json.loads(json.dumps(state)))
    assert torch.equal(torch.rand(3), a) and np.array_equal(np.random.rand(3), b)


def test_no_pickle_anywhere():
    """Checkpoints never go through pickle; any torch.load must be weights_only."""
    import ast
    from pathlib import Path

    import workers.metalearn as pkg

    for path in Path(pkg.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in {"pickle", "cPickle", "dill"} for n in names), path
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
            ):
                if isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                    kw = {k.arg: k.value for k in node.keywords}
                    assert (
                        isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                    ), path


def test_pruning_keeps_the_best_checkpoint_too(tmp_path):
    config, params, opt = trained_state()
    for step, val_loss in [(1, 0.9), (2, 0.2), (3, 0.5), (4, 0.6), (5, 0.7)]:
        save(tmp_path, step, config, params, opt, keep=3, metrics={"val_loss": val_loss})
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3, 4, 5]  # the best, then the last 3
    save(tmp_path, 6, config, params, opt, keep=3, metrics={"val_loss": 0.1})
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 5, 6]  # step 6 is now the best
