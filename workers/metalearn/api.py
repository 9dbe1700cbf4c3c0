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
from workers.metalearn.episodes import FamilyInfo, to_episode
from workers.metalearn.families import episode_spec
from workers.metalearn.loop import eval_chunk, evaluate_tasks, meta_train, resolve_device
from workers.metalearn.types import (
    SPLITS,
    AdaptResult,
    CheckpointError,
    DataError,
    DivergenceError,
    EpisodeSpec,
    EvalResult,
    InputStats,
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


def _check_eval_args(
    *, split: str, count: int, steps: int | None, lr: float | None, batch_size: int | None
) -> None:
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


def _eval_episode(
    ckpt: Checkpoint,
    family: TaskFamily,
    info: FamilyInfo,
    *,
    split: str,
    shots: int | None,
    query: int | None,
    batch_size: int | None,
) -> tuple[EpisodeSpec, int]:
    """The run's episode with ``shots``/``query`` overridden, checked against the
    split, and the tasks per chunk (default: as many as ``eval_chunk`` allows)."""
    for name, value in (("shots", shots), ("query", query)):
        if value is not None and int(value) < 1:
            raise DataError(name, "must be at least 1")
    spec = episode_spec(ckpt.config, info.kind)
    spec = dataclasses.replace(
        spec,
        shots=spec.shots if shots is None else int(shots),
        query=spec.query if query is None else int(query),
    )
    family.check_episode(spec, split)  # type: ignore[arg-type]
    if batch_size is None:
        per_class = spec.shots + spec.query
        batch_size = eval_chunk(per_class * max(1, spec.ways) * math.prod(info.input_shape))
    return spec, int(batch_size)


def _eval_family(ckpt: Checkpoint, family: TaskFamily | None) -> tuple[TaskFamily, FamilyInfo]:
    """The family to evaluate on (default: the one the config names), checked against
    the checkpoint's."""
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
    return family, info


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
    _check_eval_args(split=split, count=count, steps=steps, lr=lr, batch_size=batch_size)
    ckpt, algorithm, meta = restore(checkpoint_dir, device)
    family, info = _eval_family(ckpt, family)
    spec, batch_size = _eval_episode(
        ckpt, family, info, split=split, shots=shots, query=query, batch_size=batch_size
    )
    n_steps = algorithm.resolve_steps(steps)
    losses, scores, ids = _evaluate_chunks(
        algorithm,
        meta,
        _standardised(family.fixed_tasks, ckpt.input_stats),
        split=split,
        spec=spec,
        count=int(count),
        chunk=int(batch_size),
        steps=n_steps,
        lr=lr,
        progress=progress,
        should_stop=should_stop,
    )
    return EvalResult(
        metric="accuracy" if info.classification else "mse",
        mean=float(scores.mean()),
        ci95=_ci95(scores.astype(np.float64)),
        losses=losses,
        scores=scores,
        task_ids=ids,
        steps=n_steps,
    )


def _standardised(fixed_tasks: Callable[..., Any], stats: InputStats | None) -> Callable[..., Any]:
    """``fixed_tasks`` whose inputs are standardised as the model's were in training."""
    if stats is None:
        return fixed_tasks
    return lambda *args, **kwargs: stats.apply_batch(fixed_tasks(*args, **kwargs))


def _evaluate_chunks(
    algorithm: Algorithm,
    meta: dict[str, Tensor],
    fixed_tasks: Callable[..., Any],
    *,
    split: str,
    spec: EpisodeSpec,
    count: int,
    chunk: int,
    steps: int,
    lr: float | None,
    progress: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Losses, scores and task ids of the first ``count`` fixed tasks, ``chunk`` at a
    time, reporting ``progress`` and polling ``should_stop`` between chunks."""
    dev = next(iter(meta.values())).device
    losses, scores, ids = [], [], []
    for start in range(0, count, chunk):
        batch = fixed_tasks(split, spec, count=min(chunk, count - start), start=start)
        loss, score = evaluate_tasks(algorithm, meta, to_episode(batch, dev), steps=steps, lr=lr, chunk=chunk)
        losses.append(loss)
        scores.append(score)
        ids.append(np.asarray(batch.task_ids))
        done = start + len(batch)
        if progress is not None:
            progress(done, count)
        if should_stop is not None and done < count and should_stop():
            break
    return (
        np.concatenate(losses).astype(np.float32),
        np.concatenate(scores).astype(np.float32),
        np.concatenate(ids),
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


@dataclasses.dataclass(frozen=True)
class _AdaptInputs:
    """One task's checked inputs as numpy arrays (see :func:`adapt`)."""

    xs: np.ndarray
    ys: np.ndarray
    xq: np.ndarray | None
    yq: np.ndarray | None
    xg: np.ndarray | None
    desc: np.ndarray


def _query_inputs(
    query: tuple[ArrayLike, ArrayLike] | ArrayLike | None, info: FamilyInfo
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if query is None:
        return None, None
    if not isinstance(query, tuple):
        return _inputs(query, info, "query"), None
    if len(query) != 2:
        raise DataError("query", "give (x, y) or x")
    xq = _inputs(query[0], info, "query")
    yq = None if query[1] is None else _targets(query[1], xq.shape[0], info, "query")
    return xq, yq


def _desc_input(desc: ArrayLike | None, info: FamilyInfo, algorithm: Algorithm) -> np.ndarray:
    d = int(info.desc_dim or 0)
    if desc is None:
        if algorithm.spec.describes(info.desc_dim, algorithm.config.mnn_condition):
            raise DataError("desc", f"this {algorithm.name} model needs the task's description ({d} values)")
        return np.zeros((d,), dtype=np.float32)
    values = np.asarray(desc, dtype=np.float64).reshape(-1)
    if values.size != d or not np.isfinite(values).all():
        raise DataError("desc", f"needs {d} finite values, got {values.size}")
    return values.astype(np.float32)


def _adapt_inputs(
    info: FamilyInfo,
    algorithm: Algorithm,
    support: tuple[ArrayLike, ArrayLike],
    query: tuple[ArrayLike, ArrayLike] | ArrayLike | None,
    desc: ArrayLike | None,
    grid: ArrayLike | None,
) -> _AdaptInputs:
    if not isinstance(support, tuple | list) or len(support) != 2:
        raise DataError("support", "give (x, y)")
    xs = _inputs(support[0], info, "support")
    ys = _targets(support[1], xs.shape[0], info, "support")
    xq, yq = _query_inputs(query, info)
    xg = None if grid is None else _inputs(grid, info, "grid")
    if algorithm.name == "protonet" and len(np.unique(ys)) != info.ways:
        raise DataError("support", f"every class 0..{info.ways - 1} needs at least one support example")
    return _AdaptInputs(xs, ys, xq, yq, xg, _desc_input(desc, info, algorithm))


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
    grid: ArrayLike | None = None,
) -> AdaptResult:
    """Adapt a meta-trained model to one new task.

    ``support`` is ``(x, y)``; ``query`` is ``(x, y)``, ``x`` alone, or None. ``x``
    is ``[N, *input_shape]`` (or flat ``[N, prod(input_shape)]``); ``y`` holds
    numbers (regression) or labels ``0..ways-1``. ``desc`` is the task description,
    needed by models conditioned on it (seed-mnn, MNN on a family with
    descriptions). ``steps``/``lr`` default to the run's. ``on_step(i, entry)`` is
    called with each curve entry, ``i = 0..steps``. ``grid`` is more inputs to
    predict on, before and after, in the same call (e.g. a dense x grid to plot the
    adapted function): ``AdaptResult.grid`` and ``grid_before``. Raises
    :class:`DataError` naming ``support``, ``query``, ``grid``, ``desc``, ``steps`` or
    ``lr`` for bad input, and :class:`DivergenceError` naming the inner step and the
    quantity when a loss becomes NaN or inf (e.g. more steps, or a larger lr, than
    the model was meta-trained for).
    """
    if steps is not None and int(steps) < 0:
        raise DataError("steps", "must be 0 or more")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise DataError("lr", "must be a positive number")
    ckpt, algorithm, meta = restore(checkpoint_dir, device)
    inputs = _adapt_inputs(ckpt.family_info, algorithm, support, query, desc, grid)
    stats = ckpt.input_stats
    if stats is not None:  # the user's raw features, standardised as in training
        inputs = dataclasses.replace(
            inputs,
            xs=stats.apply(inputs.xs),
            xq=None if inputs.xq is None else stats.apply(inputs.xq),
            xg=None if inputs.xg is None else stats.apply(inputs.xg),
        )
    with torch.no_grad():
        result = _adapt_one(
            algorithm, meta, ckpt.family_info, inputs, algorithm.resolve_steps(steps), lr, on_step
        )
    if stats is not None:  # the adapted weights need the same standardisation
        result.metadata.update(stats.to_metadata())
    return result


def _adapt_one(
    algorithm: Algorithm,
    meta: dict[str, Tensor],
    info: FamilyInfo,
    inputs: _AdaptInputs,
    n_steps: int,
    lr: float | None,
    on_step: Callable[[int, dict[str, float]], None] | None,
) -> AdaptResult:
    """The inner loop of :func:`adapt` on checked inputs, under ``no_grad``."""
    dev = next(iter(meta.values())).device

    def tensor(array: np.ndarray | None) -> Tensor | None:
        return None if array is None else torch.from_numpy(array).to(dev)

    xs, ys, yq = tensor(inputs.xs), tensor(inputs.ys), tensor(inputs.yq)
    hs = algorithm.encode(meta, xs)
    hq = None if inputs.xq is None else algorithm.encode(meta, tensor(inputs.xq))
    hg = None if inputs.xg is None else algorithm.encode(meta, tensor(inputs.xg))
    fast, ctx = algorithm.start(meta, hs, ys, tensor(inputs.desc))
    curve: list[dict[str, float]] = []

    def predict(f: dict[str, Tensor], h: Tensor | None) -> np.ndarray:
        if h is None:
            return np.zeros((0, info.ways), dtype=np.float32)
        return algorithm.forward(meta, f, ctx, h).float().cpu().numpy()

    def observe(i: int, f: dict[str, Tensor]) -> None:
        entry = _curve_entry(algorithm, meta, f, ctx, info, (hs, ys), None if yq is None else (hq, yq))
        curve.append(entry)
        for name, value in entry.items():
            if not math.isfinite(value):
                raise DivergenceError(i, name, value, phase="adaptation")
        if on_step is not None:
            on_step(i, dict(entry))

    before, grid_before = predict(fast, hq), predict(fast, hg)
    observe(0, fast)
    lrs = algorithm.inner_lrs(meta) if lr is None else lr
    fast = algorithm.inner_loop(meta, fast, ctx, hs, ys, n_steps, lrs, True, observe)
    weights = {k: v.detach().cpu().contiguous() for k, v in algorithm.weights(meta, fast, ctx).items()}
    return AdaptResult(
        weights=weights,
        curve=curve,
        predictions=predict(fast, hq),
        predictions_before=before,
        grid=None if hg is None else predict(fast, hg),
        grid_before=None if hg is None else grid_before,
    )


def _curve_entry(
    algorithm: Algorithm,
    meta: dict[str, Tensor],
    fast: dict[str, Tensor],
    ctx: Any,
    info: FamilyInfo,
    support: tuple[Tensor, Tensor],
    query: tuple[Tensor | None, Tensor] | None,
) -> dict[str, float]:
    """Support (and query) loss, and accuracy when classifying, of the fast weights."""
    entry: dict[str, float] = {}
    for prefix, pair in (("support", support), ("query", query)):
        if pair is None or pair[0] is None:
            continue
        out = algorithm.forward(meta, fast, ctx, pair[0])
        entry[f"{prefix}_loss"] = float(algorithm.criterion(out, pair[1]))
        if info.classification:
            entry[f"{prefix}_accuracy"] = float(algorithm.score(out, pair[1]))
    return entry
