"""The task embedding map: the 600 fixed meta-test tasks embedded by a meta-model
(the MNN's set encoder over each task's support set; ProtoNets' mean embedding of
its support examples), projected to 2D by PCA (:mod:`workers.metalearn.pca`), with
each task's true parameters (the family's description, where it has one) to colour
them by. Computed once by a worker job (``workers/task_map.py``) and stored beside
the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import vmap

from workers.metalearn.algorithms import Algorithm
from workers.metalearn.api import restore
from workers.metalearn.episodes import Episode, to_episode
from workers.metalearn.families import episode_spec
from workers.metalearn.pca import pca_2d
from workers.metalearn.specs import embeds_tasks
from workers.metalearn.types import DataError, TaskFamily

MAP_FORMAT = 1
MAP_TASKS = 600
CHUNK = 100


def _embed(algorithm: Algorithm, meta: dict[str, torch.Tensor], episode: Episode) -> torch.Tensor:
    def one(xs: torch.Tensor, ys: torch.Tensor, desc: torch.Tensor) -> torch.Tensor:
        hs = algorithm.encode(meta, xs)
        if algorithm.name == "protonet":
            return hs.reshape(hs.shape[0], -1).mean(dim=0)
        return algorithm.represent(meta, hs, ys, desc)  # type: ignore[attr-defined, no-any-return]

    with torch.no_grad():
        return vmap(one)(episode.xs, episode.ys, episode.desc)


def task_map(checkpoint_dir: str | Path, family: TaskFamily, *, count: int = MAP_TASKS) -> dict[str, Any]:
    """JSON-ready: ``points`` ``[count, 2]``, ``explained`` (variance shares),
    ``params`` (``{name: [count values]}``, empty without a description),
    ``task_ids`` and ``embedding_dim``. Raises :class:`DataError` (``algorithm``)
    for a model that does not embed tasks."""
    ckpt, algorithm, meta = restore(checkpoint_dir, device="cpu")
    info = ckpt.family_info
    why = embeds_tasks(ckpt.config.algorithm, info.desc_dim, ckpt.config.mnn_condition)
    if why:
        raise DataError("algorithm", why)
    spec = episode_spec(ckpt.config, info.kind)
    embeddings, descs, ids = [], [], []
    for start in range(0, count, CHUNK):
        batch = family.fixed_tasks("test", spec, count=min(CHUNK, count - start), start=start)
        if ckpt.input_stats is not None:
            batch = ckpt.input_stats.apply_batch(batch)
        embeddings.append(_embed(algorithm, meta, to_episode(batch)).float().numpy())
        ids.append(np.asarray(batch.task_ids))
        if batch.desc is not None:
            descs.append(batch.desc)
    vectors = np.concatenate(embeddings)
    points, explained = pca_2d(vectors)
    names = list(getattr(family, "desc_names", ()))
    params: dict[str, list[float]] = {}
    if descs and names:
        table = np.concatenate(descs)
        params = {name: [round(float(v), 5) for v in table[:, j]] for j, name in enumerate(names)}
    return {
        "format": MAP_FORMAT,
        "algorithm": ckpt.config.algorithm,
        "points": [[round(float(a), 5), round(float(b), 5)] for a, b in points],
        "explained": [round(float(v), 5) for v in explained],
        "params": params,
        "task_ids": [int(i) for i in np.concatenate(ids)],
        "embedding_dim": int(vectors.shape[1]),
    }
