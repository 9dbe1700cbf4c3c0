"""Meta-iterations per second of the engine's second-order MAML against a plain loop.

The workload (Finn et al. 2017's sinusoid): MLP 1-40-40-1, K=5 support and 10 query
points per task, inner lr 0.01, meta-batch 25, Adam 1e-3, with 1 and with 5 inner
steps. One meta-iteration = meta-gradient + Adam step on a pre-sampled meta-batch
(the same pool of batches for both sides; sampling is left out of both).

* ours: ``workers.metalearn``'s MAML, ``vmap`` over tasks of ``torch.func.grad``
  inner steps, then one ``autograd.grad`` (``Algorithm.meta_grads``).
* reference: a plain per-task Python loop, ``torch.autograd.grad(create_graph=True)``
  for each inner step, on a hand-written ``F.linear`` MLP (no module overhead, so
  the baseline is as fast as a plain loop gets).

Both run in the same process, alternating, after a warm-up; each figure is the
median of ``--repeats`` timings. Before timing, both compute the meta-gradient of
the same batch from the same weights, and their relative difference is printed
(and must be below 1e-4). ``--loop`` also times the whole ``meta_train`` loop
(sampling, NaN checks, metrics) for the 5-step case; ``--compile`` adds a
``torch.compile``-d engine (slow to compile: long runs only).

    .venv/bin/python benchmarks/engine_throughput.py [--threads 1] [--device cpu|cuda] [--repeats 5]

Last line: ``RESULT maml_speedup_5step=<x> maml_speedup_1step=<x> ours_its_5step=<x>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from workers.metalearn.algorithms import make_algorithm  # noqa: E402
from workers.metalearn.config import FamilySpec, TrainConfig  # noqa: E402
from workers.metalearn.episodes import Episode, FamilyInfo, batch_seed, episode_spec, to_episode  # noqa: E402
from workers.metalearn.families import make_family  # noqa: E402

META_BATCH, SHOTS, QUERY, INNER_LR, META_LR = 25, 5, 10, 0.01, 1e-3


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reference_meta_grads(meta: dict[str, torch.Tensor], ep: Episode, steps: int) -> list[torch.Tensor]:
    """Plain per-task MAML: a Python loop over tasks, autograd.grad(create_graph=True)."""
    names = list(meta)
    params = [meta[n] for n in names]

    def forward(p: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        h = F.relu(F.linear(x, p[0], p[1]))
        h = F.relu(F.linear(h, p[2], p[3]))
        return F.linear(h, p[4], p[5])

    total = 0.0
    for b in range(ep.xs.shape[0]):
        fast = params
        for _ in range(steps):
            loss = F.mse_loss(forward(fast, ep.xs[b]), ep.ys[b])
            grads = torch.autograd.grad(loss, fast, create_graph=True)
            fast = [w - INNER_LR * g for w, g in zip(fast, grads, strict=True)]
        total = total + F.mse_loss(forward(fast, ep.xq[b]), ep.yq[b])
    return list(torch.autograd.grad(total / ep.xs.shape[0], params))


class Side:
    """One implementation: its own copy of the weights and its own Adam."""

    def __init__(self, init: dict[str, torch.Tensor], grads_fn: Callable, device: torch.device):
        self.meta = {k: v.detach().clone().to(device).requires_grad_() for k, v in init.items()}
        self.opt = torch.optim.Adam(self.meta.values(), lr=META_LR)
        self.grads_fn = grads_fn

    def iteration(self, ep: Episode) -> None:
        grads = self.grads_fn(self.meta, ep)
        for p, g in zip(self.meta.values(), grads, strict=True):
            p.grad = g
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def rate(side: Side, batches: list[Episode], iterations: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for i in range(iterations):
        side.iteration(batches[i % len(batches)])
    sync(device)
    return iterations / (time.perf_counter() - start)


def relative_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    diff = torch.cat([(x - y).reshape(-1) for x, y in zip(a, b, strict=True)]).norm()
    return float(diff / torch.cat([y.reshape(-1) for y in b]).norm())


def measure(steps: int, args: argparse.Namespace, device: torch.device, batches: list[Episode]) -> dict:
    config = TrainConfig(
        algorithm="maml", inner_steps=steps, inner_lr=INNER_LR, meta_lr=META_LR, hidden=(40, 40)
    )
    info = FamilyInfo(name="sinusoid", version=1, kind="regression", input_shape=(1,), desc_dim=2, ways=1)
    alg = make_algorithm(config, info)
    init = alg.init_params()

    def ours_grads(meta: dict[str, torch.Tensor], ep: Episode) -> list[torch.Tensor]:
        return list(alg.meta_grads(meta, ep)[0].values())

    sides = {
        "ours": Side(init, ours_grads, device),
        "reference": Side(init, lambda m, ep: reference_meta_grads(m, ep, steps), device),
    }
    if args.compile:
        compiled = make_algorithm(config, info)
        compiled.compile()

        def compiled_grads(meta: dict[str, torch.Tensor], ep: Episode) -> list[torch.Tensor]:
            return list(compiled.meta_grads(meta, ep)[0].values())

        sides["ours+compile"] = Side(init, compiled_grads, device)

    # Same weights, same batch: the same meta-gradient (the first compiled call compiles).
    check = {}
    for name, side in sides.items():
        t0 = time.perf_counter()
        check[name] = side.grads_fn(side.meta, batches[0])
        if name == "ours+compile":
            print(f"  {steps} step(s): first compiled call (compilation) {time.perf_counter() - t0:.1f} s")
    diffs = {
        name: relative_difference(g, check["reference"]) for name, g in check.items() if name != "reference"
    }
    for name, diff in diffs.items():
        print(f"  {steps} step(s): meta-gradient {name} vs reference: relative difference {diff:.2e}")
        assert diff < 1e-4, f"{name} disagrees with the reference ({diff:.2e})"

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for side in sides.values():  # warm-up
        rate(side, batches, 3, device)
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, side in sides.items():
            iterations = args.iterations if name != "reference" else max(3, args.iterations // 4)
            rates[name].append(rate(side, batches, iterations, device))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, values in rates.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {steps} step(s): {name:13s} median {medians[name]:7.1f} meta-it/s  [{shown}]")
    if device.type == "cuda":
        print(f"  {steps} step(s): peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
    return medians


def measure_loop(args: argparse.Namespace) -> float:
    """meta-it/s of the full meta_train loop (5 steps, sampling and checks included)."""
    import tempfile

    from workers.metalearn.api import meta_train

    config = {
        "algorithm": "maml",
        "inner_steps": 5,
        "inner_lr": INNER_LR,
        "meta_lr": META_LR,
        "meta_batch": META_BATCH,
        "shots": SHOTS,
        "query": QUERY,
        "iterations": args.iterations,
        "eval_interval": 10**6,
        "eval_tasks": 1,
        "checkpoint_interval": 10**6,
        "device": args.device,
    }
    family = make_family(FamilySpec(name="sinusoid"))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        meta_train(config, family, None, folder)
        return args.iterations / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per side (median; >= 5)")
    parser.add_argument("--iterations", type=int, default=40, help="meta-iterations per timed repeat (ours)")
    parser.add_argument("--compile", action="store_true", help="also time a torch.compile-d engine")
    parser.add_argument("--loop", action="store_true", help="also time the whole meta_train loop")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats: at least 5")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")

    family = make_family(FamilySpec(name="sinusoid"))
    spec = episode_spec(TrainConfig(shots=SHOTS, query=QUERY), "regression")
    batches = [
        to_episode(family.sample("train", META_BATCH, spec, seed=batch_seed(0, s)), device) for s in range(8)
    ]
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"numpy {np.__version__}; MAML 1-40-40-1, K={SHOTS}, query {QUERY}, meta-batch {META_BATCH}"
    )
    five = measure(5, args, device, batches)
    one = measure(1, args, device, batches)
    if args.loop:
        loop_rate = measure_loop(args)
        print(f"  5 steps: whole meta_train loop {loop_rate:.1f} meta-it/s (sampling, checks included)")
    speed5 = five["ours"] / five["reference"]
    speed1 = one["ours"] / one["reference"]
    if "ours+compile" in five:
        print(
            f"  compiled: speedup 5 steps {five['ours+compile'] / five['reference']:.2f}x, "
            f"1 step {one['ours+compile'] / one['reference']:.2f}x"
        )
    ours5 = five["ours"]
    print(
        f"RESULT maml_speedup_5step={speed5:.2f} maml_speedup_1step={speed1:.2f} ours_its_5step={ours5:.1f}"
    )


if __name__ == "__main__":
    main()
