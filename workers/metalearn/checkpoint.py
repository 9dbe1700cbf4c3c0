"""Checkpoints: safetensors for tensors, one small JSON for the rest. No pickle.

The layout (folder and file names, the ``latest`` pointer, the lookup of the
newest complete checkpoint, the JSON record) is
:mod:`workers.metalearn.checkpoint_layout`, shared with the web side.

``params.safetensors`` holds the meta-parameters; ``optimizer.safetensors`` the
optimiser's per-parameter tensors (Adam's ``exp_avg``, ``exp_avg_sq``, ``step``)
under ``<param>/<key>``; ``checkpoint.json`` the step, the config, the algorithm,
the family's ``describe()`` and :class:`FamilyInfo`, the parameter shapes, the
optimiser's hyper-parameters, the RNG states (base64), the last metrics and the
loss-spike watch's window (:mod:`.spikes`).

Writes are atomic: a checkpoint is written into a temporary folder, fsynced, and
renamed into place with ``os.replace``; then ``latest`` is replaced the same way.
A crash leaves either the previous checkpoint or the new one, never half of one.
Only the last ``keep`` checkpoints are kept, and the best one (lowest recorded
``val_loss``); when the run ends the web side keeps only the latest and the best.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from workers.metalearn.checkpoint_layout import (
    FORMAT,
    LATEST,
    META_FILE,
    OLD_PREFIX,
    OPTIMIZER_FILE,
    PARAMS_FILE,
    TMP_PREFIX,
    kept_names,
    latest_checkpoint,
    list_checkpoints,
    read_record,
    record_text,
    recorded_metrics,
    step_dir_name,
)
from workers.metalearn.config import ConfigError, TrainConfig, config_to_dict, parse_config
from workers.metalearn.episodes import FamilyInfo
from workers.metalearn.fileio import fsync_path, write_atomic
from workers.metalearn.types import CheckpointError, InputStats

__all__ = [
    "FORMAT", "LATEST", "META_FILE", "OPTIMIZER_FILE", "PARAMS_FILE", "Checkpoint", "latest_checkpoint",
    "list_checkpoints", "load_checkpoint", "load_optimizer_state", "optimizer_tensors", "prune", "resolve",
    "restore_rng", "rng_state", "save_checkpoint", "step_dir_name",
]  # fmt: skip


@dataclass
class Checkpoint:
    """A loaded checkpoint; tensors are on the CPU."""

    path: Path
    step: int
    config: TrainConfig
    algorithm: str
    family: dict[str, Any]
    family_info: FamilyInfo
    params: dict[str, Tensor]
    optimizer_state: dict[str, Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    #: :meth:`~workers.metalearn.spikes.SpikeWatch.state` at the step; empty in older checkpoints.
    spikes: dict[str, Any] = field(default_factory=dict)
    #: The inputs' standardisation (``table`` CSV features), from the params' metadata.
    input_stats: InputStats | None = None


# ----- RNG states ------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def rng_state() -> dict[str, Any]:
    """The process's torch (CPU and CUDA) and numpy global RNG states, JSON-ready."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": _b64(torch.get_rng_state().numpy().tobytes()),
        "numpy": {
            "kind": kind,
            "keys": _b64(np.asarray(keys, dtype=np.uint32).tobytes()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s.numpy().tobytes()) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    if "torch" in state:
        raw = base64.b64decode(state["torch"])
        torch.set_rng_state(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    if "numpy" in state:
        np_state = state["numpy"]
        keys = np.frombuffer(base64.b64decode(np_state["keys"]), dtype=np.uint32).copy()
        np.random.set_state(
            (np_state["kind"], keys, np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"])
        )
    if "cuda" in state and torch.cuda.is_available():
        states = [torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8) for s in state["cuda"]]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


# ----- optimiser state -------------------------------------------------------------------
def optimizer_tensors(optimizer: torch.optim.Optimizer, names: list[str]) -> tuple[dict[str, Tensor], dict]:
    """Flatten an optimiser's per-parameter state into ``<param>/<key>`` tensors, and
    its hyper-parameters (and any non-tensor state) into a JSON-ready dict."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, per_param in state_dict["state"].items():
        name = names[int(index)]
        for key, value in per_param.items():
            if isinstance(value, Tensor):
                tensors[f"{name}/{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars[f"{name}/{key}"] = value
    groups = [{k: v for k, v in g.items() if k != "params"} for g in state_dict["param_groups"]]
    return tensors, {"type": type(optimizer).__name__, "param_groups": _jsonable(groups), "scalars": scalars}


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, names: list[str], tensors: Mapping[str, Tensor], meta: Mapping[str, Any]
) -> None:
    """Put state saved by :func:`optimizer_tensors` back into an optimiser built
    with the same parameters (in the order of ``names``) and hyper-parameters."""
    if meta.get("type") and meta["type"] != type(optimizer).__name__:
        raise CheckpointError(
            f"optimizer: checkpoint has {meta['type']}, run uses {type(optimizer).__name__}"
        )
    state: dict[int, dict[str, Any]] = {}
    index = {name: i for i, name in enumerate(names)}
    for key, value in tensors.items():
        name, _, sub = key.rpartition("/")
        if name not in index:
            raise CheckpointError(f"optimizer: state for unknown parameter {name!r}")
        state.setdefault(index[name], {})[sub] = value
    for key, value in meta.get("scalars", {}).items():
        name, _, sub = key.rpartition("/")
        if name in index:
            state.setdefault(index[name], {})[sub] = value
    current = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return repr(value)


# ----- writing ---------------------------------------------------------------------------
def _cpu(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def save_checkpoint(
    root: str | Path,
    *,
    step: int,
    config: TrainConfig,
    family_info: FamilyInfo,
    family_describe: Mapping[str, Any],
    params: Mapping[str, Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    metrics: Mapping[str, float] | None = None,
    keep: int = 3,
    input_stats: InputStats | None = None,
    spikes: Mapping[str, Any] | None = None,
) -> Path:
    """Write checkpoint ``root/step-NNNNNN`` atomically, point ``latest`` at it and
    drop all but the last ``keep`` checkpoints. Returns the checkpoint's folder.
    ``input_stats`` go into ``params.safetensors``' metadata, so the weights carry
    the standardisation their inputs need wherever they are copied."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = step_dir_name(step)
    names = list(params)
    tensors = _cpu(params)
    opt_tensors: dict[str, Tensor] = {}
    opt_meta: dict[str, Any] = {}
    if optimizer is not None:
        opt_tensors, opt_meta = optimizer_tensors(optimizer, names)
    meta = {
        "format": FORMAT,
        "step": int(step),
        "algorithm": config.algorithm,
        "config": config_to_dict(config),
        "family": _jsonable(dict(family_describe)),
        "family_info": family_info.to_dict(),
        **_tensor_facts(tensors),
        "optimizer": opt_meta,
        "rng": rng_state(),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "spikes": _jsonable(dict(spikes or {})),
    }
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}-", dir=root))
    try:
        stats = input_stats.to_metadata() if input_stats is not None else {}
        _write_files(tmp, tensors, opt_tensors, meta, stats)
        final = root / name
        if final.exists():  # re-saving a step (e.g. a stop right after a periodic save)
            old = Path(tempfile.mkdtemp(prefix=f"{OLD_PREFIX}{name}-", dir=root))
            os.replace(final, old / name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_atomic(root / LATEST, name + "\n")
    fsync_path(root)
    prune(root, keep=keep, protect=name)
    return final


def _tensor_facts(tensors: Mapping[str, Tensor]) -> dict[str, Any]:
    """The parameters' shapes and dtypes, as the JSON record keeps them."""
    return {
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
        "dtypes": {k: str(v.dtype).removeprefix("torch.") for k, v in tensors.items()},
    }


def _write_files(
    folder: Path,
    tensors: Mapping[str, Tensor],
    opt_tensors: Mapping[str, Tensor],
    meta: Mapping[str, Any],
    params_metadata: Mapping[str, str],
) -> None:
    """The checkpoint's three files in ``folder``, fsynced."""
    save_file(dict(tensors), str(folder / PARAMS_FILE), metadata={"format": "pt", **params_metadata})
    save_file(dict(opt_tensors), str(folder / OPTIMIZER_FILE), metadata={"format": "pt"})
    (folder / META_FILE).write_text(record_text(dict(meta)), encoding="utf-8")
    for child in folder.iterdir():
        fsync_path(child)
    fsync_path(folder)


def prune(root: str | Path, *, keep: int, protect: str | None = None) -> None:
    """Drop all but the last ``keep`` checkpoints, never ``protect`` nor the best one
    (:func:`~workers.metalearn.checkpoint_layout.kept_names`, the rule the store follows too)."""
    metrics = recorded_metrics(root)
    kept = kept_names(metrics, latest=protect, newest=max(1, keep))
    for name in metrics:
        if name not in kept:
            shutil.rmtree(Path(root) / name, ignore_errors=True)
    for leftover in Path(root).glob(f"{TMP_PREFIX}step-*"):  # from a crash mid-write
        shutil.rmtree(leftover, ignore_errors=True)


# ----- reading ---------------------------------------------------------------------------
def resolve(path: str | Path) -> Path:
    """A checkpoint folder from a run folder (via ``latest``) or a checkpoint folder."""
    path = Path(path)
    if (path / META_FILE).is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"checkpoint: {path} does not exist")
    found = latest_checkpoint(path)
    if found is None:
        raise CheckpointError(f"checkpoint: no checkpoint in {path}")
    return found


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint (a run folder's latest, or one ``step-NNNNNN`` folder).

    Raises :class:`CheckpointError` when it is missing, unreadable, or its tensors
    do not match the shapes its JSON records.
    """
    folder = resolve(path)
    try:
        meta = read_record(folder)
        params = load_file(str(folder / PARAMS_FILE), device="cpu")
        with safe_open(str(folder / PARAMS_FILE), framework="pt") as handle:
            stats = InputStats.from_metadata(handle.metadata())
        opt_path = folder / OPTIMIZER_FILE
        opt_tensors = load_file(str(opt_path), device="cpu") if opt_path.is_file() else {}
    except (OSError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"checkpoint: cannot read {folder}: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint: unknown format {meta.get('format')!r} in {folder}")
    try:
        config = parse_config(meta["config"])
        info = FamilyInfo.from_dict(meta["family_info"])
        shapes = {k: list(v) for k, v in meta["shapes"].items()}
        step = int(meta["step"])
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"checkpoint: {folder / META_FILE} is invalid: {exc}") from exc
    actual = {k: list(v.shape) for k, v in params.items()}
    if actual != shapes:
        raise CheckpointError(
            f"checkpoint: tensors in {folder / PARAMS_FILE} do not match the recorded shapes"
        )
    return Checkpoint(
        path=folder,
        step=step,
        config=config,
        algorithm=str(meta.get("algorithm", config.algorithm)),
        family=dict(meta.get("family", {})),
        family_info=info,
        params=params,
        optimizer_state=opt_tensors,
        optimizer=dict(meta.get("optimizer", {})),
        rng=dict(meta.get("rng", {})),
        metrics={k: float(v) for k, v in meta.get("metrics", {}).items()},
        spikes=dict(meta.get("spikes") or {}),
        input_stats=stats,
    )
