"""The meta-training loop: sample, meta-gradient, Adam, report, evaluate, checkpoint.

Knows nothing of Django: it talks to the outside through a
:class:`~workers.metalearn.types.Reporter`. Deterministic: the meta-batch of step
``s`` is ``family.sample("train", meta_batch, episode, seed=batch_seed(seed, s))``,
networks are initialised from ``config.seed``, and a resumed run continues from
the checkpoint's weights and Adam state, so an interrupted-and-resumed CPU run
ends with the same weights, bit for bit, as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from workers.metalearn.algorithms import Algorithm, check_compatible, make_algorithm
from workers.metalearn.algorithms.base import compile_options
from workers.metalearn.algorithms.seed_mnn import SEED_MNN_EPS, SEED_MNN_LR
from workers.metalearn.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    load_checkpoint,
    load_optimizer_state,
    restore_rng,
    save_checkpoint,
)
from workers.metalearn.compiling import Decision, decide, graph_key, is_cached, mark_cached
from workers.metalearn.config import ConfigError, TrainConfig, config_to_dict, parse_config
from workers.metalearn.episodes import Episode, FamilyInfo, batch_seed, to_episode
from workers.metalearn.families import check_run_episodes, episode_spec
from workers.metalearn.metastep import MetaStep
from workers.metalearn.spikes import SpikeWatch
from workers.metalearn.types import (
    CheckpointError,
    DivergenceError,
    InputStats,
    NullReporter,
    Reporter,
    TaskFamily,
    TrainResult,
)

logger = logging.getLogger(__name__)

#: Config fields a resumed run may change: they do not alter the trajectory.
RESUMABLE_CHANGES = frozenset(
    {"iterations", "eval_interval", "eval_tasks", "checkpoint_interval", "device", "compile", "bf16"}
)
#: Tasks per vmap call when evaluating (bounds memory, not results).
EVAL_CHUNK = 100
#: Input values (support + query) that one evaluation chunk may hold. Evaluation
#: ``vmap``s the inner loop over a chunk of tasks, keeping every layer's activations
#: for the inner gradients, so memory grows with tasks x inputs: 100 glyph tasks
#: (5-way, 5+10 shots, 28x28) peaked at 4.5 GB with a fixed chunk of 100 tasks.
EVAL_INPUT_BUDGET = 1_000_000


def eval_chunk(values_per_task: int) -> int:
    """Tasks per evaluation chunk: ``EVAL_CHUNK``, fewer when tasks are large."""
    return max(1, min(EVAL_CHUNK, EVAL_INPUT_BUDGET // max(1, int(values_per_task))))


def resolve_device(requested: str | None = "auto") -> torch.device:
    """``auto`` is CUDA when available, else the CPU; ``cuda`` must be available."""
    if requested in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError({"device": "CUDA is not available on this machine"})
    return torch.device(requested)


def check_config(config: TrainConfig, family: TaskFamily) -> FamilyInfo:
    """Validate a config against a family before anything runs.

    Raises :class:`ConfigError` naming the field: the family's name, the episode
    (``shots``/``ways``/``query``, as the family's ``check_episode`` reports it),
    or the algorithm when it does not fit the family.
    """
    if family.name != config.family.name:
        raise ConfigError({"family.name": f"config names {config.family.name!r}, family is {family.name!r}"})
    info = FamilyInfo.of(family, config)
    check_compatible(config, info)
    check_run_episodes(config, family)
    return info


def family_input_stats(family: TaskFamily) -> InputStats | None:
    """The statistics the family's inputs are standardised with (``table`` CSV
    features), or None; families without ``input_stats`` (wrappers, toys) have none."""
    get = getattr(family, "input_stats", None)
    return get() if callable(get) else None


def meta_lr_factor(config: TrainConfig, step: int) -> float:
    """What the meta learning rate of (1-based) ``step`` is, as a fraction of the
    optimiser's own: 1 under the constant schedule; under ``cosine``,
    ``(1 + cos(pi * (step - 1) / iterations)) / 2``, from 1 at step 1 down to about
    ``(pi / iterations)^2 / 4`` at the last (Loshchilov & Hutter, "SGDR", ICLR 2017,
    one cycle). A pure function of the step, so a resumed run picks it up as is."""
    if config.meta_lr_schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (step - 1) / config.iterations))


def train_info(config: TrainConfig, info: FamilyInfo) -> FamilyInfo:
    """The family facts that meta-training episodes have: ``info`` with ``train_ways``
    ways where the config sets them (ProtoNets' embedding fits episodes of any ways)."""
    if not info.classification or config.train_ways is None:
        return info
    return dataclasses.replace(info, ways=int(config.train_ways))


def make_optimizer(config: TrainConfig, params: dict[str, Tensor]) -> torch.optim.Adam:
    values = list(params.values())
    if config.algorithm == "seed-mnn":  # the baseline's optimiser, kept as designed
        return torch.optim.Adam(values, lr=SEED_MNN_LR, eps=SEED_MNN_EPS)
    # Adam's default (for-loop) implementation on purpose: ``fused=True`` was about 15%
    # faster per compiled sinusoid MAML iteration, but its last-bit differences sent
    # 3 of 10 seeds of a 5-step MAML run to inf within 3,000 iterations, against 1 of
    # 10 with this one; keeping it also keeps every published figure reproducible.
    return torch.optim.Adam(values, lr=config.meta_lr)


def evaluate_tasks(
    algorithm: Algorithm,
    meta: dict[str, Tensor],
    episode: Episode,
    *,
    steps: int | None = None,
    lr: float | None = None,
    chunk: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Query losses ``[tasks, steps+1]`` and post-adaptation scores ``[tasks]``,
    ``vmap``-ed over chunks of ``chunk`` tasks (default: :func:`eval_chunk` of the
    tasks' size)."""
    losses, scores = [], []
    total = episode.tasks
    if chunk is None:
        chunk = eval_chunk(episode.xs[0].numel() + episode.xq[0].numel()) if total else EVAL_CHUNK
    for lo in range(0, total, max(1, chunk)):
        part = Episode(*(t[lo : lo + chunk] for t in episode))
        loss, score = algorithm.evaluate_batch(meta, part, steps=steps, lr=lr)
        losses.append(loss.float().cpu())
        scores.append(score.float().cpu())
    return torch.cat(losses).numpy(), torch.cat(scores).numpy()


def _checked(step: int, quantity: str, value: float) -> float:
    """``value``, or :class:`DivergenceError` naming ``step`` and ``quantity`` when it is NaN or inf."""
    if not math.isfinite(value):
        raise DivergenceError(step, quantity, value)
    return value


class _Run:
    """State of one meta-training run (kept small; the loop is :func:`meta_train`)."""

    def __init__(
        self, config: TrainConfig, family: TaskFamily, reporter: Reporter, checkpoint_dir: Path | None
    ):
        self.config = config
        self.family = family
        self.reporter = reporter
        self.checkpoint_dir = checkpoint_dir
        self.info = check_config(config, family)
        self.device = resolve_device(config.device)
        self.algorithm = make_algorithm(config, self.info)
        tinfo = train_info(config, self.info)
        #: The algorithm that meta-trains: ``algorithm`` itself, unless training
        #: episodes have other ways (``train_ways``) than validation's.
        self.trainer = self.algorithm if tinfo == self.info else make_algorithm(config, tinfo)
        self.trainer.place(self.device)
        self.meta = {
            k: v.to(self.device).requires_grad_(True) for k, v in self.algorithm.init_params().items()
        }
        self.names = list(self.meta)
        self.optimizer = make_optimizer(config, self.meta)
        #: The optimiser's own learning rates, which the schedule scales (a checkpoint's
        #: Adam state carries the last step's scaled ones).
        self.base_lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
        self.spec = episode_spec(config, family.kind)
        self.train_spec = episode_spec(config, family.kind, training=True)
        self.autocast = config.bf16 and self.device.type == "cuda"
        self.stats = family_input_stats(family)
        self.step = 0
        self.metrics: dict[str, float] = {}
        self.spikes = SpikeWatch()
        self._val: Episode | None = None
        self._describe: dict[str, Any] | None = None
        self.compiled = Decision(False, "")
        #: The whole iteration as one compiled graph, when the run compiles a closed-form
        #: meta-gradient (:mod:`.metastep`); None: meta-gradient, clipping and Adam apart.
        self.metastep: MetaStep | None = None

    # -- resume ------------------------------------------------------------------------
    def resume(self) -> int | None:
        """Continue from the latest checkpoint, if any; returns its step."""
        if self.checkpoint_dir is None:
            return None
        found = latest_checkpoint(self.checkpoint_dir)
        if found is None:
            return None
        ckpt = load_checkpoint(found)
        self._check_resumable(ckpt)
        with torch.no_grad():
            for name, value in self.meta.items():
                value.copy_(ckpt.params[name].to(value.device, value.dtype))
        load_optimizer_state(self.optimizer, self.names, ckpt.optimizer_state, ckpt.optimizer)
        restore_rng(ckpt.rng)
        self.step = ckpt.step
        self.metrics = dict(ckpt.metrics)
        if ckpt.spikes:
            try:
                self.spikes.restore(ckpt.spikes)
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(f"checkpoint: {ckpt.path} has a malformed spike window: {exc}") from exc
        return ckpt.step

    def _check_resumable(self, ckpt: Checkpoint) -> None:
        old, new = config_to_dict(ckpt.config), config_to_dict(self.config)
        changed = sorted(
            k for k in set(old) | set(new) if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)
        )
        if self.config.meta_lr_schedule != "constant" and old.get("iterations") != new.get("iterations"):
            changed.append("iterations, which the meta_lr_schedule decays over")
        if changed:
            raise CheckpointError(
                f"checkpoint: {ckpt.path.parent} holds a run with a different config ({', '.join(changed)}); "
                "use a new output folder"
            )
        if ckpt.family_info != self.info:
            raise CheckpointError(f"checkpoint: {ckpt.path} was trained on a different family")
        mine = {k: list(v.shape) for k, v in self.meta.items()}
        theirs = {k: list(v.shape) for k, v in ckpt.params.items()}
        if mine != theirs:
            raise CheckpointError(f"checkpoint: {ckpt.path} does not fit the model's parameter shapes")

    # -- compiling ---------------------------------------------------------------------------
    def _graph_facts(self) -> dict[str, Any]:
        """What the compiled meta-loss's graph depends on (its cache marker's key)."""
        return {
            "torch": torch.__version__,
            "device": self.device.type,
            "algorithm": self.config.algorithm,
            "path": self.trainer.path,
            "options": compile_options(self.device.type == "cpu"),
            "params": {k: list(v.shape) for k, v in self.meta.items()},
            "episode": [
                self.config.meta_batch,
                self.train_spec.shots,
                self.train_spec.query,
                self.train_spec.ways,
            ],
            "input_shape": list(self.info.input_shape),
            "inner_steps": self.config.inner_steps,
            "first_order": self.trainer.first_order,
            "bf16": self.autocast,
            "grad_clip": self.config.grad_clip,  # a constant of the compiled iteration's graph
        }

    def compile(self) -> Decision:
        """Compile the meta-loss when ``config.compile`` says so (:mod:`.compiling`),
        compiling at once on the next meta-batch. Under ``auto`` a compile that fails
        (no C++ compiler, say) leaves the run eager; under ``on`` it fails the run."""
        facts = self._graph_facts()
        key = graph_key(facts)
        remaining = self.config.iterations - self.step
        fused = self.trainer.fused is not None
        cuda = self.device.type == "cuda"
        decision = decide(
            self.config.compile, fused=fused, remaining=remaining, cached=is_cached(key), cuda=cuda
        )
        if decision.compile:
            started = time.perf_counter()
            try:
                self._compile_now()
            except Exception as exc:  # noqa: BLE001 - auto falls back to eager, and says why
                if self.config.compile == "on":
                    raise
                self.trainer.uncompile()
                self.metastep = None
                decision = Decision(False, f"{decision.reason}; the compile failed ({exc!r}), so eager")
            else:
                mark_cached(key, facts)
                seconds = time.perf_counter() - started
                decision = Decision(True, f"{decision.reason}; compiled in {seconds:.1f} s")
        logger.info(decision.reason)
        self.compiled = decision
        return decision

    def _compile_now(self) -> None:
        """Compile on the next meta-batch: the whole iteration where the meta-gradient
        has a closed form (on copies: nothing is stepped), else the meta-loss."""
        if self.trainer.analytic is not None:
            self.metastep = MetaStep(
                self.trainer, self.optimizer, self.meta, self.config.grad_clip, self.device.type == "cpu"
            )
            self.metastep.warm(self._episode(self.step + 1))
        else:
            self.trainer.compile(cpu=self.device.type != "cuda")
            self._meta_grads(self.step + 1)

    # -- one iteration --------------------------------------------------------------------
    def _episode(self, step: int) -> Episode:
        """The training meta-batch of ``step``."""
        pool = self.trainer.task_pool()
        if pool is None:
            seed = batch_seed(self.config.seed, step)
            batch = self.family.sample("train", self.config.meta_batch, self.train_spec, seed=seed)
        else:
            batch = self.family.sample_pool("train", self.config.meta_batch, self.train_spec, pool, step)
        if self.stats is not None:
            batch = self.stats.apply_batch(batch)
        return to_episode(batch, self.device)

    def _meta_grads(self, step: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        episode = self._episode(step)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with ctx:
            return self.trainer.meta_grads(self.meta, episode)

    def _set_lr(self, step: int) -> float:
        """Scale the optimiser's rates by the schedule at ``step``; returns the first group's."""
        factor = meta_lr_factor(self.config, step)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        return float(self.optimizer.param_groups[0]["lr"])

    def _compiled_step(self, step: int, metastep: MetaStep) -> dict[str, float]:
        done = metastep(self._episode(step), self._set_lr(step))
        out = {
            "loss": _checked(step, "loss", float(done.loss)),
            "grad_norm": _checked(step, "grad_norm", float(done.grad_norm)),
        }
        if self.info.classification:
            out["accuracy"] = float(done.scores.mean())
        return out

    def train_step(self, step: int) -> dict[str, float]:
        if self.metastep is not None and self.metastep.ready():
            return self._compiled_step(step, self.metastep)
        grads, metrics = self._meta_grads(step)
        loss = _checked(step, "loss", float(metrics["loss"]))
        for name, param in self.meta.items():
            param.grad = grads[name].to(param.dtype)
        clip = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        grad_norm = _checked(
            step, "grad_norm", float(torch.nn.utils.clip_grad_norm_(self.meta.values(), clip))
        )
        self._set_lr(step)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        out = {"loss": loss, "grad_norm": grad_norm}
        if "accuracy" in metrics:
            out["accuracy"] = float(metrics["accuracy"])
        return out

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        if self._val is None:
            batch = self.family.fixed_tasks("val", self.spec, count=self.config.eval_tasks)
            if self.stats is not None:
                batch = self.stats.apply_batch(batch)
            self._val = to_episode(batch, self.device)
        losses, scores = evaluate_tasks(self.algorithm, self.meta, self._val)
        metrics = {"val_loss": float(losses[:, -1].mean())}
        if self.info.classification:
            metrics["val_accuracy"] = float(scores.mean())
        return {key: _checked(self.step, key, value) for key, value in metrics.items()}

    # -- checkpoints -----------------------------------------------------------------------
    def save(self) -> None:
        """Checkpoint the current step, telling the reporter before (store what the
        resumed attempt will not replay) and once the checkpoint is durable."""
        if self.checkpoint_dir is None:
            return
        self.reporter.before_checkpoint(self.step)
        self._write_checkpoint()
        self.reporter.on_checkpoint(self.step)

    def _write_checkpoint(self) -> None:
        """Write the checkpoint of the current step; durable when this returns (the
        files are renamed into place)."""
        assert self.checkpoint_dir is not None
        if self._describe is None:
            self._describe = dict(self.family.describe())
        save_checkpoint(
            self.checkpoint_dir,
            step=self.step,
            config=self.config,
            family_info=self.info,
            family_describe=self._describe,
            params=self.meta,
            optimizer=self.optimizer,
            metrics=self.metrics,
            input_stats=self.stats,
            spikes=self.spikes.state(),
        )

    def result(self, status: str) -> TrainResult:
        return TrainResult(
            status=status,  # type: ignore[arg-type]
            step=self.step,
            metrics=dict(self.metrics),
            checkpoint_dir=str(self.checkpoint_dir or ""),
            compile=self.compiled.reason,
        )


def meta_train(
    config: TrainConfig | dict[str, Any],
    family: TaskFamily,
    reporter: Reporter | None = None,
    checkpoint_dir: str | Path | None = None,
) -> TrainResult:
    """Meta-train ``config.algorithm`` on ``family``; resume from ``checkpoint_dir``.

    Validates the config against the family first (:class:`ConfigError` naming the
    field). Each iteration samples a meta-batch from a seed derived from
    ``(config.seed, step)`` (``train_ways`` ways, if set), takes an Adam step on the
    meta-gradient (clipped to ``grad_clip``) at the rate ``meta_lr_schedule`` gives
    (:func:`meta_lr_factor`), and calls ``reporter.on_step(step, {"loss", "grad_norm"[,
    "accuracy"]})``. Every ``eval_interval`` steps (and at the end) it evaluates on
    the val split's fixed tasks (``reporter.on_eval(step, {"val_loss"[,
    "val_accuracy"]})``); every ``checkpoint_interval`` steps (and at the end) it
    writes a checkpoint, between ``reporter.before_checkpoint(step)`` and, once the
    checkpoint is durable, ``reporter.on_checkpoint(step)``.
    ``reporter.should_stop()`` is polled between steps: a True answer writes a
    checkpoint and returns ``status="stopped"``. A NaN or inf loss or gradient norm
    raises :class:`DivergenceError` before the update, leaving the last good
    checkpoint in place; a finite loss far above its recent level is a spike
    (:mod:`.spikes`), told through ``reporter.on_warning`` while training goes on.
    If ``checkpoint_dir`` already holds checkpoints of the same run, training
    continues from the latest one.
    """
    config = parse_config(config)
    run = _Run(
        config, family, reporter or NullReporter(), None if checkpoint_dir is None else Path(checkpoint_dir)
    )
    saved_at = run.resume()  # a stop always leaves a checkpoint, even before step 1
    if run.step < config.iterations:
        run.compile()
    while run.step < config.iterations:
        if run.reporter.should_stop():
            if run.step != saved_at:
                run.save()
            return run.result("stopped")
        step = run.step + 1
        started = time.perf_counter()
        metrics = run.train_step(step)
        run.step = step
        metrics["step_seconds"] = time.perf_counter() - started
        run.metrics.update(metrics)
        run.reporter.on_step(step, metrics)
        spike = run.spikes.observe(step, metrics["loss"])
        if spike is not None:
            run.reporter.on_warning(step, spike.kind, spike.message)
        last = step == config.iterations
        if step % config.eval_interval == 0 or last:
            val = run.validate()
            run.metrics.update(val)
            run.reporter.on_eval(step, val)
        if step % config.checkpoint_interval == 0 or last:
            run.save()
            saved_at = step
    return run.result("completed")
