"""The common shape of every algorithm, and the one inner-loop step they share.

An algorithm is a small object over plain parameter dicts. Each task goes through
the same four pieces, written for ONE task and mapped over the tasks of a
meta-batch with :func:`torch.func.vmap`:

``encode(meta, x)``
    inputs -> what the adaptable part sees (identity, or body features computed
    once per task for ANIL, ProtoNets and the conv MNN);
``start(meta, xs, ys, desc) -> (fast, ctx)``
    the task's initial *fast weights* (adapted by gradient steps) and its fixed
    context (ProtoNets' prototypes, seed-mnn's description);
``forward(meta, fast, ctx, x)``
    predictions;
:func:`inner_step`
    one gradient step on the support loss, shared by every algorithm, training
    and evaluation alike.

On top of these, :class:`Algorithm` provides the batched meta-loss, the
meta-gradient, the batched evaluation (query loss after each step) and the
single-task adaptation used by ``api.adapt``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import grad, vmap

from workers.metalearn.algorithms.analytic import AnalyticMAML
from workers.metalearn.algorithms.fused import FusedMLP, layer_prefixes
from workers.metalearn.config import TrainConfig
from workers.metalearn.episodes import Episode, FamilyInfo
from workers.metalearn.specs import AlgorithmSpec
from workers.metalearn.types import TaskPool

Params = dict[str, Tensor]
LearningRates = float | Tensor | Mapping[str, Tensor]


def inner_step(
    grad_fn: Callable[..., Params],
    fast: Params,
    lrs: LearningRates,
    args: tuple[Any, ...],
    first_order: bool = False,
) -> Params:
    """One gradient step on the fast weights: ``fast - lr * d loss / d fast``.

    ``grad_fn(fast, *args)`` is a :func:`torch.func.grad` of the support loss. Left
    as is, the step stays differentiable with respect to the meta-parameters
    (second-order MAML); ``first_order`` detaches the gradient, which drops the
    second-order terms (FOMAML, Reptile). ``lrs`` is a scalar, or a dict of
    per-parameter learning rates (Meta-SGD).
    """
    grads = grad_fn(fast, *args)
    if first_order:
        grads = {name: g.detach() for name, g in grads.items()}
    # One op per tensor (``add`` with alpha, ``addcmul``): the step is on the hot path.
    if isinstance(lrs, Mapping):
        return {name: torch.addcmul(fast[name], lrs[name], grads[name], value=-1) for name in fast}
    if isinstance(lrs, Tensor):
        return {name: torch.addcmul(fast[name], lrs, grads[name], value=-1) for name in fast}
    return {name: torch.add(fast[name], grads[name], alpha=-lrs) for name in fast}


#: CPU capabilities (``torch.backends.cpu.get_cpu_capability()``) with 256-bit lanes.
_X86_VECTOR = ("AVX2", "AVX512")


def compile_options(cpu: bool) -> dict[str, Any]:
    """Inductor's options for a compiled meta-loss.

    On the CPU it calls its kernels from C++ rather than Python (``cpp_wrapper``:
    these graphs are small, so the wrapper's overhead shows), and on x86 it
    vectorises with 256-bit lanes even where AVX-512 exists: MLP widths such as 40
    are multiples of 8 but not of 16, so 512-bit loops end in masked tails (about
    10% on the 2-core AMD EPYC of ``benchmarks/engine_throughput.py``). It also
    stores every intermediate read more than once (``realize_reads_threshold=1``)
    instead of recomputing it inside each consumer's loop: an unrolled inner loop
    reads each activation and error in several contractions, and recomputing them
    there made the compiled MAML meta-gradient about 20% slower (1.23 against 1.00 ms
    closed form, 2.03 against 1.61 ms through autograd, 2-core Xeon, 2026-11-30).
    And it lets the C compiler fuse multiplies and adds into FMA instructions
    (``-ffp-contract=fast``; one rounding instead of two): the compiled MAML
    iteration took 1.01-1.03 ms against 1.09-1.16 without, alternating, 3 runs each.
    """
    if not cpu:
        return {}
    options: dict[str, Any] = {
        "cpp_wrapper": True,
        "realize_reads_threshold": 1,
        "cpp.enable_floating_point_contract_flag": "fast",
    }
    if torch.backends.cpu.get_cpu_capability() in _X86_VECTOR:
        options["cpp.simdlen"] = 256
    return options


class Algorithm:
    """Base class: subclasses define ``init_params``, ``start`` and ``forward``
    (and ``encode``, ``inner_lrs``, ``weights`` when the defaults do not fit).

    ``meta_params`` are a flat ``dict[str, Tensor]``; the training loop owns them
    and hands them to :meth:`meta_grads`; nothing here keeps state between calls.
    """

    #: The algorithm's facts (:mod:`workers.metalearn.specs`); ``name`` and ``adapts``
    #: (whether adaptation takes gradient steps) are read from it.
    spec: ClassVar[AlgorithmSpec]
    name: ClassVar[str] = ""
    adapts: ClassVar[bool] = True
    #: The fused inner loop of the adapted MLP layers (:mod:`.fused`), or None: the
    #: generic ``vmap(grad(...))`` path.
    fused: FusedMLP | None = None
    #: MAML's meta-gradient in closed form over the fused MLP (:mod:`.analytic`), or
    #: None: autograd through the inner loop. Used on the CPU (:meth:`place`).
    analytic: AnalyticMAML | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "spec" in cls.__dict__:
            cls.name = cls.spec.name
            cls.adapts = cls.spec.adapts

    def __init__(self, config: TrainConfig, info: FamilyInfo):
        self.config = config
        self.info = info
        self.first_order = bool(config.first_order)
        self.train_steps = int(config.inner_steps) if self.adapts else 0
        # Built once: the support-loss gradient and the batched per-task losses.
        self._support_grad = grad(self._support_loss)
        self._batched_task_loss = vmap(self._task_loss, in_dims=(None, 0))
        self._meta_grads_fn = self.closed_form_grads

    # ----- which inner-loop implementation trains --------------------------------------
    def enable_fused(self, fast_names: list[str]) -> None:
        """Train with the fused inner loop over the MLP layers holding ``fast_names``
        (called by algorithms whose adapted part is an MLP)."""
        self.fused = FusedMLP(layer_prefixes(fast_names), self.info.classification)
        self._batched_task_loss = self._fused_task_loss

    def enable_analytic(self) -> None:
        """Compute the meta-gradient in closed form (:mod:`.analytic`): for algorithms whose
        meta-parameters are exactly the fused MLP's initial weights, at a fixed inner rate."""
        assert self.fused is not None, "the closed form needs the fused inner loop"
        self.analytic = AnalyticMAML(self.fused)

    def use_generic(self) -> None:
        """Train with the generic ``torch.func`` path (the fused path's reference)."""
        self.fused = self.analytic = None
        self._batched_task_loss = vmap(self._task_loss, in_dims=(None, 0))

    def use_autograd(self) -> None:
        """Differentiate the fused inner loop with autograd (the closed form's reference)."""
        self.analytic = None

    def place(self, device: torch.device) -> None:
        """Settle the path for the device that trains: the closed form on the CPU; on a
        GPU, autograd through the fused loop, the path ``benchmarks/gpu_check.sh`` measured."""
        if device.type != "cpu":
            self.use_autograd()

    @property
    def path(self) -> str:
        """``"analytic"``, ``"fused"`` or ``"generic"``: how meta-training differentiates."""
        if self.analytic is not None:
            return "analytic"
        return "generic" if self.fused is None else "fused"

    # ----- to define in subclasses -------------------------------------------------
    def init_params(self) -> Params:
        """Fresh meta-parameters (called under a fixed torch seed)."""
        raise NotImplementedError

    def encode(self, meta: Params, x: Tensor) -> Tensor:
        return x

    def start(self, meta: Params, xs: Tensor, ys: Tensor, desc: Tensor) -> tuple[Params, Params]:
        raise NotImplementedError

    def forward(self, meta: Params, fast: Params, ctx: Params, x: Tensor) -> Tensor:
        raise NotImplementedError

    def inner_lrs(self, meta: Params) -> LearningRates:
        return self.config.inner_lr

    def rate_name(self, name: str) -> str:
        """The meta-parameter holding fast weight ``name``'s learned inner rate (Meta-SGD)."""
        raise NotImplementedError(f"{self.name} learns no inner rates")

    def weights(self, meta: Params, fast: Params, ctx: Params) -> Params:
        """The task's target-network weights after adaptation (for ``adapt``)."""
        return dict(fast)

    def task_pool(self) -> TaskPool | None:
        """The fixed pool of training tasks (config ``train_tasks``), or None: a fresh
        meta-batch every step."""
        size = self.config.train_tasks
        return None if size is None else TaskPool(size=int(size), seed=int(self.config.seed))

    @property
    def default_steps(self) -> int:
        """Inner steps used for evaluation and adaptation unless told otherwise."""
        return self.train_steps

    # ----- losses ----------------------------------------------------------------
    def criterion(self, out: Tensor, y: Tensor) -> Tensor:
        if self.info.classification:
            return F.cross_entropy(out, y)
        return (out - y).square().mean()  # F.mse_loss, minus its broadcast checks

    def score(self, out: Tensor, y: Tensor) -> Tensor:
        """Accuracy when classifying, MSE for regression."""
        if self.info.classification:
            return (out.argmax(dim=-1) == y).to(out.dtype).mean()
        return (out - y).square().mean()

    def _support_loss(self, fast: Params, meta: Params, ctx: Params, x: Tensor, y: Tensor) -> Tensor:
        return self.criterion(self.forward(meta, fast, ctx, x), y)

    # ----- the inner loop (one task) -----------------------------------------------
    def inner_loop(
        self,
        meta: Params,
        fast: Params,
        ctx: Params,
        xs: Tensor,
        ys: Tensor,
        steps: int,
        lrs: LearningRates,
        first_order: bool,
        observe: Callable[[int, Params], None] | None = None,
    ) -> Params:
        """``steps`` calls of :func:`inner_step`; ``observe(i, fast)`` after step ``i``."""
        for i in range(1, steps + 1):
            fast = inner_step(self._support_grad, fast, lrs, (meta, ctx, xs, ys), first_order)
            if observe is not None:
                observe(i, fast)
        return fast

    def _task_loss(self, meta: Params, ep: Episode) -> tuple[Tensor, Tensor]:
        """Post-adaptation query loss and score of one task (the meta-objective)."""
        xs, xq = self.encode(meta, ep.xs), self.encode(meta, ep.xq)
        fast, ctx = self.start(meta, xs, ep.ys, ep.desc)
        fast = self.inner_loop(
            meta, fast, ctx, xs, ep.ys, self.train_steps, self.inner_lrs(meta), self.first_order
        )
        out = self.forward(meta, fast, ctx, xq)
        return self.criterion(out, ep.yq), self.score(out, ep.yq)

    # ----- the fused inner loop (all tasks at once) ------------------------------------
    def _encode_batch(self, meta: Params, x: Tensor) -> Tensor:
        """``encode`` of a meta-batch's inputs ``[B, N, ...]`` as ``[B, N, features]``
        (the fused path's backbones have no per-task statistics, so tasks can share a call)."""
        return self.encode(meta, x.flatten(0, 1)).reshape(x.shape[0], x.shape[1], -1)

    def fused_adapt(self, meta: Params, ep: Episode, first_order: bool) -> tuple[Params, Tensor]:
        """Every task's fast weights ``[B, ...]`` after ``train_steps`` fused inner steps,
        and the encoded query inputs ``[B, N, features]``."""
        assert self.fused is not None, "the fused inner loop is not enabled"
        xs, xq = self._encode_batch(meta, ep.xs), self._encode_batch(meta, ep.xq)
        fast, _ = self.start(meta, xs, ep.ys, ep.desc)
        grad_fn = self.fused.support_grad_constant if first_order else self.fused.support_grad
        lrs = self.inner_lrs(meta)
        for _ in range(self.train_steps):
            fast = inner_step(grad_fn, fast, lrs, (xs, ep.ys), first_order)
        return fast, xq

    def _fused_task_loss(self, meta: Params, ep: Episode) -> tuple[Tensor, Tensor]:
        """What ``vmap(_task_loss)`` returns, from the fused inner loop."""
        assert self.fused is not None
        fast, xq = self.fused_adapt(meta, ep, self.first_order)
        out = self.fused.forward(fast, xq)
        return self.fused.losses(out, ep.yq), self.fused.scores(out, ep.yq)

    # ----- batched entry points ----------------------------------------------------
    def meta_loss(self, meta: Params, ep: Episode) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean post-adaptation query loss over the tasks of ``ep`` (``vmap``-ed)."""
        losses, scores = self._batched_task_loss(meta, ep)
        loss = losses.mean()
        return loss, self._metrics(loss, scores)

    def _metrics(self, loss: Tensor, scores: Tensor) -> dict[str, Tensor]:
        metrics = {"loss": loss.detach()}
        if self.info.classification:
            metrics["accuracy"] = scores.detach().mean()
        return metrics

    def closed_form_grads(self, meta: Params, ep: Episode) -> tuple[Params, Tensor, Tensor]:
        """The closed-form meta-gradient, and each task's query loss and score ``[B]``."""
        assert self.analytic is not None
        lrs = self.inner_lrs(meta)
        assert not isinstance(lrs, Tensor), "the closed form takes a fixed rate or one per weight"
        with torch.no_grad():
            weights, rates, losses, scores = self.analytic.meta_grads(
                meta, (ep.xs, ep.ys), (ep.xq, ep.yq), self.train_steps, lrs, self.first_order, inner_step
            )
        found = {**weights, **{self.rate_name(name): g for name, g in rates.items()}}
        return {name: found[name] for name in meta}, losses, scores  # in the weights' order

    def meta_grads(self, meta: Params, ep: Episode) -> tuple[Params, dict[str, Tensor]]:
        """The meta-gradient of :meth:`meta_loss` with respect to ``meta`` (which must
        require grad), and the step's metrics."""
        if self.analytic is not None:
            grads, losses, scores = self._meta_grads_fn(meta, ep)
            return grads, self._metrics(losses.mean(), scores)
        loss, metrics = self.meta_loss(meta, ep)
        names = list(meta)
        grads = torch.autograd.grad(loss, [meta[n] for n in names], allow_unused=True)
        out = {n: torch.zeros_like(meta[n]) if g is None else g for n, g in zip(names, grads, strict=True)}
        return out, metrics

    def compile(self, *, cpu: bool = False) -> None:
        """``torch.compile`` the batched meta-loss (pays off on long runs only; see
        :mod:`workers.metalearn.compiling`), with :func:`compile_options`. The fused
        path switches to its broadcast contractions, which inductor fuses into one
        loop nest for the forward pass and one for the backward; MAML's closed form
        (:mod:`.analytic`) compiles as one graph with no backward."""
        self._eager_task_loss, self._eager_grads_fn = self._batched_task_loss, self._meta_grads_fn
        self._compiled_form(True)
        if self.analytic is not None:
            options = compile_options(cpu)
            self._meta_grads_fn = torch.compile(self.closed_form_grads, options=options, fullgraph=True)
        else:
            self._batched_task_loss = torch.compile(self._batched_task_loss, options=compile_options(cpu))

    def prepare_compiled(self) -> None:
        """Switch to the contractions of a compiled graph, for a caller that compiles
        its own graph around :meth:`closed_form_grads` (:mod:`~workers.metalearn.metastep`)."""
        self._compiled_form(True)

    def _compiled_form(self, compiled: bool) -> None:
        """The fused path's contractions: broadcast sums when compiled, ``bmm`` when eager."""
        if self.fused is not None:
            self.fused.broadcast = compiled

    def uncompile(self) -> None:
        """Back to the eager meta-loss (after a failed compile)."""
        self._compiled_form(False)
        self._batched_task_loss = getattr(self, "_eager_task_loss", self._batched_task_loss)
        self._meta_grads_fn = getattr(self, "_eager_grads_fn", self._meta_grads_fn)

    # ----- evaluation ----------------------------------------------------------------
    def _task_eval(self, meta: Params, ep: Episode, steps: int, lr: float | None) -> tuple[Tensor, Tensor]:
        xs, xq = self.encode(meta, ep.xs), self.encode(meta, ep.xq)
        fast, ctx = self.start(meta, xs, ep.ys, ep.desc)
        losses = [self.criterion(self.forward(meta, fast, ctx, xq), ep.yq)]

        def observe(_: int, f: Params) -> None:
            losses.append(self.criterion(self.forward(meta, f, ctx, xq), ep.yq))

        lrs = self.inner_lrs(meta) if lr is None else lr
        fast = self.inner_loop(meta, fast, ctx, xs, ep.ys, steps, lrs, True, observe)
        return torch.stack(losses), self.score(self.forward(meta, fast, ctx, xq), ep.yq)

    def evaluate_batch(
        self, meta: Params, ep: Episode, steps: int | None = None, lr: float | None = None
    ) -> tuple[Tensor, Tensor]:
        """Query losses ``[B, steps+1]`` (before and after each step) and the
        post-adaptation score ``[B]`` of every task, without meta-gradients."""
        steps = self.resolve_steps(steps)
        meta = {k: v.detach() for k, v in meta.items()}
        with torch.no_grad():
            return vmap(partial(self._task_eval, steps=steps, lr=lr), in_dims=(None, 0))(meta, ep)

    def resolve_steps(self, steps: int | None) -> int:
        if not self.adapts:
            return 0
        return self.default_steps if steps is None else int(steps)
