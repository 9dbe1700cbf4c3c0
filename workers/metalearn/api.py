"""The engine's torch-backed entry points: train, evaluate, adapt, load a checkpoint.

``workers.metalearn`` re-exports these lazily, so importing the package stays
torch-free.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from workers.metalearn.algorithms import Algorithm, make_algorithm
from workers.metalearn.checkpoint import Checkpoint, load_checkpoint
from workers.metalearn.episodes import FamilyInfo, episode_spec, to_episode
from workers.metalearn.loop import eval_chunk, evaluate_tasks, meta_train, resolve_device
from workers.metalearn.types import (
    SPLITS,
    AdaptResult,
    CheckpointError,
    DataError,
    DivergenceError,
    EvalResult,
    TaskFamily,
)

__all__ = ["adapt", "evaluate", "load_checkpoint", "meta_train", "restore"]

ArrayLike = np.ndarray | Tensor | Sequence[Any]


def restore(
    checkpoint_dir: str | Path, device: str | torch.device | None = None
) -> tuple[Checkpoint, Algorithm, dict[str, Tensor]]:
    """A checkpoint, its algorithm and its meta-parameters on ``device`` (auto)."""
    ckpt = load_checkpoint(checkpoint_dir)
    algorithm = make_algorithm(ckpt.config, ckpt.family_info)
    expected = {k: list(v.shape) for k, v in algorithm.init_params().items()}
    actual = {k: list(v.shape) for k, v in ckpt.params.items()}
    if expected != actual:
        raise CheckpointError(f"checkpoint: {ckpt.path} does not fit a {ckpt.algorithm} model of its config")
    dev = resolve_device(None if device is None else str(device))
    meta = {k: v.to(dev) for k, v in ckpt.params.items()}
    return ckpt, algorithm, meta


def _ci95(scores: np.ndarray) -> float:
    if scores.size < 2:
        return 0.0
    return float(1.96 * scores.std(ddof=1) / math.sqrt(scores.size))


def evaluate(
    checkpoint_dir: str | Path,
    *,
    split: str = "test",
    count: int = 600,
    steps: int | None = None,
    lr: float | None = None,
    family: TaskFamily | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    shots: int | None = None,
    query: int | None = None,
) -> EvalResult:
    """The standard protocol: adapt to each of the split's first ``count`` fixed tasks
    and score its query set.

    ``steps`` and ``lr`` default to the run's (Meta-SGD: its learned rates; ProtoNets
    and seed-mnn take no step). ``family`` defaults to the one the config names,
    built with ``families.make_family``. Tasks are fetched and adapted ``batch_size``
    at a time, ``vmap``-ed (default: as many as ``loop.eval_chunk`` allows for the
    tasks' size, at most 100). Returns mean ± 95% CI (1.96 standard errors) of the
    post-adaptation MSE or accuracy, and the ``[tasks, steps+1]`` query losses.

    ``progress(done, count)`` is called after each chunk of tasks. ``should_stop()``
    is polled after each chunk but the last: when it answers True, evaluation ends
    early and the result covers the tasks done so far (``len(task_ids) < count``).
    ``shots`` and ``query`` override the run's episode (per class when classifying),
    e.g. to test at K=5 a model meta-trained at K=10 as in Finn et al. (2017).
    """
    if split not in SPLITS:
        raise DataError("split", f"must be one of {', '.join(SPLITS)}")
    if int(count) < 1:
        raise DataError("count", "must be at least 1")
    if steps is not None and int(steps) < 0:
        raise DataError("steps", "must be 0 or more")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise DataError("lr", "must be a positive number")
    if batch_size is not None and int(batch_size) < 1:
        raise DataError("batch_size", "must be at least 1")
    for name, value in (("shots", shots), ("query", query)):
        if value is not None and int(value) < 1:
            raise DataError(name, "must be at least 1")
    ckpt, algorithm, meta = restore(checkpoint_dir, device)
    config = ckpt.config
    if family is None:
        from workers.metalearn.families import make_family

        family = make_family(config.family, data_path=config.family.data)
    info = FamilyInfo.of(family, config)
    if (info.kind, info.input_shape, info.desc_dim) != (
        ckpt.family_info.kind,
        ckpt.family_info.input_shape,
        ckpt.family_info.desc_dim,
    ):
        raise DataError(
            "family", f"{family.name!r} does not match the checkpoint's family {ckpt.family_info.name!r}"
        )
    spec = episode_spec(config, info.kind)
    spec = dataclasses.replace(
        spec,
        shots=spec.shots if shots is None else int(shots),
        query=spec.query if query is None else int(query),
    )
    family.check_episode(spec, split)  # type: ignore[arg-type]
    dev = next(iter(meta.values())).device
    n_steps = algorithm.resolve_steps(steps)
    if batch_size is None:
        per_class = spec.shots + spec.query
        batch_size = eval_chunk(per_class * max(1, spec.ways) * math.prod(info.input_shape))
    losses, scores, ids = [], [], []
    for start in range(0, int(count), int(batch_size)):
        batch = family.fixed_tasks(split, spec, count=min(int(batch_size), int(count) - start), start=start)  # type: ignore[arg-type]
        loss, score = evaluate_tasks(
            algorithm, meta, to_episode(batch, dev), steps=n_steps, lr=lr, chunk=batch_size
        )
        losses.append(loss)
        scores.append(score)
        ids.append(np.asarray(batch.task_ids))
        done = start + len(batch)
        if progress is not None:
            progress(done, int(count))
        if should_stop is not None and done < int(count) and should_stop():
            break
    all_scores = np.concatenate(scores).astype(np.float32)
    return EvalResult(
        metric="accuracy" if info.classification else "mse",
        mean=float(all_scores.mean()),
        ci95=_ci95(all_scores.astype(np.float64)),
        losses=np.concatenate(losses).astype(np.float32),
        scores=all_scores,
        task_ids=np.concatenate(ids),
        steps=n_steps,
    )


# ----- adapt -----------------------------------------------------------------------------
def _inputs(x: ArrayLike, info: FamilyInfo, field: str) -> np.ndarray:
    arr = np.asarray(x.detach().cpu().numpy() if isinstance(x, Tensor) else x, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise DataError(field, "needs at least one example")
    size = math.prod(info.input_shape)
    if arr.ndim == 1 and size == 1:
        arr = arr[:, None]
    if math.prod(arr.shape[1:]) != size:
        raise DataError(
            field,
            f"each input needs {size} value(s) (shape {list(info.input_shape)}), got {list(arr.shape[1:])}",
        )
    if not np.isfinite(arr).all():
        raise DataError(field, "inputs must be finite numbers")
    return arr.reshape(arr.shape[0], *info.input_shape).astype(np.float32)


def _targets(y: ArrayLike, n: int, info: FamilyInfo, field: str) -> np.ndarray:
    arr = np.asarray(y.detach().cpu().numpy() if isinstance(y, Tensor) else y)
    if arr.size != n:
        raise DataError(field, f"needs one target per input ({n}), got {arr.size}")
    arr = arr.reshape(n)
    if info.classification:
        if not np.all(np.isfinite(arr.astype(np.float64))) or not np.all(
            np.mod(arr.astype(np.float64), 1) == 0
        ):
            raise DataError(field, "labels must be whole numbers")
        labels = arr.astype(np.int64)
        if labels.min() < 0 or labels.max() >= info.ways:
            raise DataError(field, f"labels must be between 0 and {info.ways - 1}")
        return labels
    values = arr.astype(np.float64)
    if not np.isfinite(values).all():
        raise DataError(field, "targets must be finite numbers")
    return values.astype(np.float32).reshape(n, 1)


def adapt(
    checkpoint_dir: str | Path,
    support: tuple[ArrayLike, ArrayLike],
    query: tuple[ArrayLike, ArrayLike] | ArrayLike | None = None,
    *,
    steps: int | None = None,
    lr: float | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    desc: ArrayLike | None = None,
    device: str | None = None,
) -> AdaptResult:
    """Adapt a meta-trained model to one new task.

    ``support`` is ``(x, y)``; ``query`` is ``(x, y)``, ``x`` alone, or None. ``x``
    is ``[N, *input_shape]`` (or flat ``[N, prod(input_shape)]``); ``y`` holds
    numbers (regression) or labels ``0..ways-1``. ``desc`` is the task description,
    needed by models conditioned on it (seed-mnn, MNN on a family with
    descriptions). ``steps``/``lr`` default to the run's. ``on_step(i, entry)`` is
    called with each curve entry, ``i = 0..steps``. Raises :class:`DataError`
    naming ``support``, ``query``, ``desc``, ``steps`` or ``lr`` for bad input, and
    :class:`DivergenceError` naming the inner step and the quantity when a loss
    becomes NaN or inf (e.g. more steps, or a larger lr, than the model was
    meta-trained for).
    """
    if steps is not None and int(steps) < 0:
        raise DataError("steps", "must be 0 or more")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise DataError("lr", "must be a positive number")
    ckpt, algorithm, meta = restore(checkpoint_dir, device)
    info = ckpt.family_info
    if not isinstance(support, tuple | list) or len(support) != 2:
        raise DataError("support", "give (x, y)")
    xs_np = _inputs(support[0], info, "support")
    ys_np = _targets(support[1], xs_np.shape[0], info, "support")
    xq_np: np.ndarray | None = None
    yq_np: np.ndarray | None = None
    if query is not None:
        if isinstance(query, tuple):
            if len(query) != 2:
                raise DataError("query", "give (x, y) or x")
            xq_np = _inputs(query[0], info, "query")
            if query[1] is not None:
                yq_np = _targets(query[1], xq_np.shape[0], info, "query")
        else:
            xq_np = _inputs(query, info, "query")
    needs_desc = algorithm.spec.describes(info.desc_dim)
    d = int(info.desc_dim or 0)
    if desc is None:
        if needs_desc:
            raise DataError("desc", f"this {algorithm.name} model needs the task's description ({d} values)")
        desc_np = np.zeros((d,), dtype=np.float32)
    else:
        desc_np = np.asarray(desc, dtype=np.float64).reshape(-1)
        if desc_np.size != d or not np.isfinite(desc_np).all():
            raise DataError("desc", f"needs {d} finite values, got {desc_np.size}")
        desc_np = desc_np.astype(np.float32)
    if algorithm.name == "protonet" and len(np.unique(ys_np)) != info.ways:
        raise DataError("support", f"every class 0..{info.ways - 1} needs at least one support example")

    dev = next(iter(meta.values())).device
    xs, ys = torch.from_numpy(xs_np).to(dev), torch.from_numpy(ys_np).to(dev)
    xq = None if xq_np is None else torch.from_numpy(xq_np).to(dev)
    yq = None if yq_np is None else torch.from_numpy(yq_np).to(dev)
    n_steps = algorithm.resolve_steps(steps)
    curve: list[dict[str, float]] = []
    with torch.no_grad():
        hs = algorithm.encode(meta, xs)
        hq = None if xq is None else algorithm.encode(meta, xq)
        fast, ctx = algorithm.start(meta, hs, ys, torch.from_numpy(desc_np).to(dev))

        def predict(f: dict[str, Tensor]) -> np.ndarray:
            if hq is None:
                return np.zeros((0, info.ways), dtype=np.float32)
            return algorithm.forward(meta, f, ctx, hq).float().cpu().numpy()

        def observe(i: int, f: dict[str, Tensor]) -> None:
            out = algorithm.forward(meta, f, ctx, hs)
            entry = {"support_loss": float(algorithm.criterion(out, ys))}
            if info.classification:
                entry["support_accuracy"] = float(algorithm.score(out, ys))
            if hq is not None and yq is not None:
                out_q = algorithm.forward(meta, f, ctx, hq)
                entry["query_loss"] = float(algorithm.criterion(out_q, yq))
                if info.classification:
                    entry["query_accuracy"] = float(algorithm.score(out_q, yq))
            curve.append(entry)
            for name, value in entry.items():
                if not math.isfinite(value):
                    raise DivergenceError(i, name, value, phase="adaptation")
            if on_step is not None:
                on_step(i, dict(entry))

        before = predict(fast)
        observe(0, fast)
        lrs = algorithm.inner_lrs(meta) if lr is None else lr
        fast = algorithm.inner_loop(meta, fast, ctx, hs, ys, n_steps, lrs, True, observe)
        after = predict(fast)
        weights = {k: v.detach().cpu().contiguous() for k, v in algorithm.weights(meta, fast, ctx).items()}
    return AdaptResult(weights=weights, curve=curve, predictions=after, predictions_before=before)
