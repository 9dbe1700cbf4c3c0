"""Meta-iterations per second of the engine's second-order MAML against a plain loop.

The workload (Finn et al. 2017's sinusoid): MLP 1-40-40-1, K=5 support and 10 query
points per task, inner lr 0.01, meta-batch 25 (``--meta-batch``), Adam 1e-3, with 1
and with 5 inner steps. One meta-iteration = meta-gradient + Adam step on a
pre-sampled meta-batch (the same pool of batches for every side; sampling is left
out of all of them).

* reference: a plain per-task Python loop, ``torch.autograd.grad(create_graph=True)``
  for each inner step, on a hand-written ``F.linear`` MLP (no module overhead).
* generic: the engine's ``torch.func`` path, ``vmap`` over tasks of ``grad`` inner
  steps (what MLP runs used before the fused path; still the conv net's path).
* autograd: the fused MLP inner loop (``algorithms/fused.py``), differentiated by
  autograd, eager: MAML's CPU path before the closed form (CPU only: on a GPU it
  is the fused side).
* closed form (GPU only): the CPU's closed form, eager, timed on the GPU beside the
  autograd path a GPU run takes, so that the GPU's choice can be made on figures; not
  counted in ``best_speedup_5step``.
* fused: what a run gets on this device by default unless ``compile: auto``
  compiles it: on the CPU, MAML's meta-gradient in closed form over the fused loop
  (``algorithms/analytic.py``: the inner loop forward, then Hessian-vector products
  backward, no autograd); on a GPU, the autograd side's path.
* fused+compile: what a compiled run steps with: on the CPU the engine's compiled
  iteration (``workers/metalearn/metastep.py``: the closed-form meta-gradient,
  clipping and Adam as one graph); on a GPU the fused meta-loss compiled, then
  autograd and Adam. Both with the engine's options (``algorithms/base.compile_options``),
  its contractions written as broadcast sums that inductor fuses into loop nests.
  Its compile is timed cold (an empty cache folder) and, in a fresh process, from
  the persistent cache that the cold compile filled (what every later run of the
  same shape pays).

Every side's meta-gradient is compared with the reference's on the same batch
before anything is timed (relative difference below 1e-4; under ``--bf16`` the largest
difference is reported, ``bf16_rel_diff_5step``, and a warning printed from 5e-2).
Sides alternate, after a warm-up; each figure is the median of ``--repeats``
(``--slow-repeats`` for the reference and generic sides: at meta-batch 1000 on a GPU
one reference iteration takes about 10 s, so ``gpu_check.sh`` times it once).

* ``default_speedup_5step``: what a 10,000-iteration run launched with the
  defaults (``compile: auto``) gets at 5 steps, compile time included, divided by
  the reference: the rule of ``workers/metalearn/compiling.py`` compiles it when
  the cache holds its graph (the compile from the cache amortised over the run);
  ``default_first_run_speedup_5step`` is the first run of a shape (auto stays eager).
* ``best_speedup_5step``: the fastest side's steady rate over the reference's.

``--glyphs N`` adds glyphs ProtoNets and MAML rows (5-way 1-shot, 32 filters,
meta-batch 25, N iterations, each in a fresh process, ``benchmarks/_cpu_times.py``)
with wall, user and system time, under glibc's defaults and the tuned allocator.

    .venv/bin/python benchmarks/engine_throughput.py [--threads 1] [--device cpu|cuda] \\
        [--meta-batch 25] [--bf16] [--no-compile] [--glyphs 100] [--repeats 5]

Last line: ``RESULT maml_speedup_5step=<x> maml_speedup_1step=<x> ours_its_5step=<x>
default_speedup_5step=<x> best_speedup_5step=<x> ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
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
from workers.metalearn.episodes import Episode, FamilyInfo, batch_seed, to_episode  # noqa: E402
from workers.metalearn.families import episode_spec, make_family  # noqa: E402
from workers.metalearn.loop import make_optimizer  # noqa: E402
from workers.metalearn.metastep import MetaStep  # noqa: E402

SHOTS, QUERY, INNER_LR, META_LR = 5, 10, 0.01, 1e-3
RUN_ITERATIONS = 10_000
SLOW = ("reference", "generic")  # timed over --slow-iterations
INFO = FamilyInfo(name="sinusoid", version=1, kind="regression", input_shape=(1,), desc_dim=2, ways=1)


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

    def __init__(self, init: dict[str, torch.Tensor], grads_fn: Callable, device: torch.device, bf16: bool):
        self.meta = {k: v.detach().clone().to(device).requires_grad_() for k, v in init.items()}
        self.opt = make_optimizer(TrainConfig(meta_lr=META_LR), self.meta)  # the engine's Adam
        self.grads_fn = grads_fn
        self.bf16 = bf16

    def grads(self, ep: Episode) -> list[torch.Tensor]:
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with ctx:
            return [g.float() for g in self.grads_fn(self.meta, ep)]

    def iteration(self, ep: Episode) -> None:
        for p, g in zip(self.meta.values(), self.grads(ep), strict=True):
            p.grad = g
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


class StepSide(Side):
    """The engine's compiled iteration on the CPU (``workers/metalearn/metastep.py``):
    closed-form meta-gradient, clipping and Adam in one graph; the first iteration
    is eager, as in a run (it creates Adam's state)."""

    def __init__(self, init: dict[str, torch.Tensor], alg, device: torch.device):
        super().__init__(init, engine_grads(alg), device, False)
        self.step = MetaStep(alg, self.opt, self.meta, None, cpu=True)

    def grads(self, ep: Episode) -> list[torch.Tensor]:  # the compiled graph's, on copies
        return self.step.warm(ep).grads

    def iteration(self, ep: Episode) -> None:
        if self.step.ready():
            self.step(ep, META_LR)
        else:
            super().iteration(ep)


def compiled_side(init: dict[str, torch.Tensor], steps: int, device: torch.device, bf16: bool) -> Side:
    """What a compiled run steps with on ``device``."""
    alg = algorithm(steps, device, "fused", False)
    if alg.analytic is not None:
        return StepSide(init, alg, device)
    alg.compile(cpu=device.type == "cpu")
    return Side(init, engine_grads(alg), device, bf16)


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


def algorithm(steps: int, device: torch.device, path: str, compiled: bool):
    config = TrainConfig(
        algorithm="maml", inner_steps=steps, inner_lr=INNER_LR, meta_lr=META_LR, hidden=(40, 40)
    )
    alg = make_algorithm(config, INFO)
    alg.place(device)  # the path a run on this device trains with
    if path == "generic":
        alg.use_generic()
    elif path == "autograd":
        alg.use_autograd()
    elif path == "analytic":
        alg.enable_analytic()
    if compiled:
        alg.compile(cpu=device.type == "cpu")
    return alg


def engine_grads(alg) -> Callable:
    return lambda meta, ep: list(alg.meta_grads(meta, ep)[0].values())


def make_sides(steps: int, args: argparse.Namespace, device: torch.device) -> dict[str, Side]:
    init = algorithm(steps, device, "fused", False).init_params()
    sides = {
        "reference": Side(init, lambda m, ep: reference_meta_grads(m, ep, steps), device, False),
        "generic": Side(init, engine_grads(algorithm(steps, device, "generic", False)), device, args.bf16),
        "fused": Side(init, engine_grads(algorithm(steps, device, "fused", False)), device, args.bf16),
    }
    if device.type == "cpu":  # on a GPU the fused side is this path already
        sides["autograd"] = Side(
            init, engine_grads(algorithm(steps, device, "autograd", False)), device, False
        )
    else:  # the CPU's closed form, timed on the GPU too; not a GPU run's path (yet), so not "best"
        sides["closed form"] = Side(
            init, engine_grads(algorithm(steps, device, "analytic", False)), device, args.bf16
        )
    if args.compile:
        sides["fused+compile"] = compiled_side(init, steps, device, args.bf16)
    return sides


def check_sides(sides: dict[str, Side], ep: Episode, steps: int, bf16: bool) -> dict[str, float]:
    """Every side's meta-gradient against the reference's, on the same batch and weights.
    Returns the seconds of each side's first call (the compiled side's is its compile)."""
    first, grads = {}, {}
    for name, side in sides.items():
        started = time.perf_counter()
        grads[name] = side.grads(ep)
        first[name] = time.perf_counter() - started
    limit = 5e-2 if bf16 else 1e-4
    for name, g in grads.items():
        if name == "reference":
            continue
        diff = relative_difference(g, grads["reference"])
        print(f"  {steps} step(s): meta-gradient {name} vs reference: relative difference {diff:.2e}")
        if bf16:  # bf16's error is a finding to report, not a reason to measure nothing
            first["bf16_rel_diff"] = max(first.get("bf16_rel_diff", 0.0), diff)
            if diff >= limit:
                print(f"  {steps} step(s): WARNING {name} under bf16 is {diff:.2e} from the fp32 reference")
        else:
            assert diff < limit, f"{name} disagrees with the reference ({diff:.2e} >= {limit})"
    return first


def measure(steps: int, args: argparse.Namespace, device: torch.device, batches: list[Episode]) -> dict:
    sides = make_sides(steps, args, device)
    first = check_sides(sides, batches[0], steps, args.bf16)
    if "fused+compile" in sides:
        cold = first["fused+compile"]
        print(f"  {steps} step(s): first compiled call, cold cache (compilation) {cold:.1f} s")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    slow_iterations = args.slow_iterations or max(2, args.iterations // 4)
    for name, side in sides.items():  # warm-up (check_sides' call warmed the slow ones)
        if name not in SLOW:
            rate(side, batches, 3, device)
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for repeat in range(args.repeats):
        for name, side in sides.items():
            if name in SLOW and repeat >= (args.slow_repeats or args.repeats):
                continue
            iterations = slow_iterations if name in SLOW else args.iterations
            rates[name].append(rate(side, batches, iterations, device))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, values in rates.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {steps} step(s): {name:13s} median {medians[name]:7.1f} meta-it/s  [{shown}]")
    if device.type == "cuda":
        print(f"  {steps} step(s): peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
    medians["compile_cold_s"] = first.get("fused+compile", float("nan"))
    if "bf16_rel_diff" in first:
        medians["bf16_rel_diff"] = first["bf16_rel_diff"]
    return medians


def warm_compile_seconds(args: argparse.Namespace) -> float:
    """The compile of the 5-step graph in a fresh process, from the cache the cold compile filled."""
    cmd = [sys.executable, __file__, "--warm-compile-child", "--device", args.device]
    cmd += ["--meta-batch", str(args.meta_batch), "--threads", str(args.threads)]
    cmd += ["--bf16"] if args.bf16 else []
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    if done.returncode != 0:
        raise RuntimeError(f"warm compile child failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["compile_s"])


def warm_compile_child(args: argparse.Namespace, device: torch.device, batches: list[Episode]) -> None:
    side = compiled_side(algorithm(5, device, "fused", False).init_params(), 5, device, args.bf16)
    started = time.perf_counter()
    side.grads(batches[0])
    sync(device)
    print(json.dumps({"compile_s": time.perf_counter() - started}))


def measure_loop(args: argparse.Namespace) -> float:
    """meta-it/s of the full meta_train loop (5 steps, defaults, sampling and checks included)."""
    from workers.metalearn.api import meta_train

    config = {
        "algorithm": "maml",
        "inner_steps": 5,
        "inner_lr": INNER_LR,
        "meta_lr": META_LR,
        "meta_batch": args.meta_batch,
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


def glyph_rows(args: argparse.Namespace) -> list[dict]:
    """Glyphs ProtoNets and MAML, glibc's allocator then the tuned one, each in a fresh process."""
    rows = []
    for algorithm_name in ("protonet", "maml"):
        for allocator in ("glibc", "tuned"):
            cmd = [sys.executable, str(ROOT / "benchmarks" / "_cpu_times.py"), "--algorithm", algorithm_name]
            cmd += ["--iterations", str(args.glyphs), "--threads", str(args.glyph_threads)]
            cmd += ["--allocator", allocator, "--device", args.device]
            env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
            if done.returncode != 0:
                raise RuntimeError(f"glyph row failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"  glyphs {algorithm_name:8s} allocator {allocator:5s}: wall {row['wall_s']:6.1f} s, "
                f"user {row['user_s']:6.1f} s, sys {row['sys_s']:6.1f} s, peak RSS {row['peak_rss_mb']} MB "
                f"({row['iterations']} it, {row['threads']} threads)",
                flush=True,
            )
    return rows


def summary(five: dict, one: dict, warm_s: float) -> dict[str, float]:
    """The RESULT fields (see the module docstring)."""
    ref5 = five["reference"]
    steady = {
        k: v
        for k, v in five.items()
        if k not in ("reference", "closed form", "compile_cold_s", "bf16_rel_diff")
    }
    out = {
        "maml_speedup_5step": five["fused"] / ref5,
        "maml_speedup_1step": one["fused"] / one["reference"],
        "ours_its_5step": five["fused"],
        "default_speedup_5step": five["fused"] / ref5,
        "best_speedup_5step": max(steady.values()) / ref5,
        "default_first_run_speedup_5step": five["fused"] / ref5,
        "generic_speedup_5step": five["generic"] / ref5,
    }
    if "autograd" in five:
        out["autograd_speedup_5step"] = five["autograd"] / ref5
    if "closed form" in five:  # on a GPU
        out["closed_form_speedup_5step"] = five["closed form"] / ref5
    if "fused+compile" in five:
        compiled = five["fused+compile"]
        run_rate = RUN_ITERATIONS / (warm_s + RUN_ITERATIONS / compiled)
        cold_rate = RUN_ITERATIONS / (five["compile_cold_s"] + RUN_ITERATIONS / compiled)
        print(
            f"  5 steps, a {RUN_ITERATIONS}-iteration run: compiled from the cache {run_rate:.1f} meta-it/s "
            f"(compile {warm_s:.1f} s), compiled cold {cold_rate:.1f} "
            f"(compile {five['compile_cold_s']:.1f} s), eager {five['fused']:.1f}"
        )
        out["default_speedup_5step"] = run_rate / ref5  # auto compiles 10,000 iterations of a cached graph
        out["compile_cold_s"] = five["compile_cold_s"]
        out["compile_cached_s"] = warm_s
    if "bf16_rel_diff" in five:
        out["bf16_rel_diff_5step"] = five["bf16_rel_diff"]
    return out


def result_figure(name: str, value: float) -> str:
    if "its" in name:
        return f"{value:.1f}"
    return f"{value:.2e}" if "diff" in name else f"{value:.2f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--meta-batch", type=int, default=25, help="tasks per meta-batch (default 25)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the engine's sides (CUDA)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per side (median; >= 5)")
    parser.add_argument("--iterations", type=int, default=40, help="meta-iterations per timed repeat")
    parser.add_argument("--slow-iterations", type=int, default=0, help="the slow sides' (default: a quarter)")
    parser.add_argument(
        "--slow-repeats", type=int, default=0, help="timed repeats of the slow sides (default: --repeats)"
    )
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the compiled side")
    parser.add_argument("--loop", action="store_true", help="also time the whole meta_train loop")
    parser.add_argument("--glyphs", type=int, default=0, help="glyph rows of this many iterations (0: none)")
    parser.add_argument("--glyph-threads", type=int, default=2, help="torch threads of the glyph rows")
    parser.add_argument("--warm-compile-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats: at least 5")
    if not 0 <= args.slow_repeats <= args.repeats:
        parser.error("--slow-repeats: between 1 and --repeats (0: as many)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.bf16 and args.device != "cuda":
        parser.error("--bf16: needs --device cuda")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    family = make_family(FamilySpec(name="sinusoid"))
    spec = episode_spec(TrainConfig(shots=SHOTS, query=QUERY), "regression")
    batches = [
        to_episode(family.sample("train", args.meta_batch, spec, seed=batch_seed(0, s)), device)
        for s in range(8)
    ]
    if args.warm_compile_child:
        warm_compile_child(args, device, batches)
        return
    cache = tempfile.TemporaryDirectory(prefix="engine-throughput-cache-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name  # cold: nothing compiled yet
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"numpy {np.__version__}, load average {os.getloadavg()[0]:.2f}; "
        f"MAML 1-40-40-1, K={SHOTS}, query {QUERY}, meta-batch {args.meta_batch}"
        f"{', bf16' if args.bf16 else ''}",
        flush=True,
    )
    five = measure(5, args, device, batches)
    one = measure(1, args, device, batches)
    warm_s = warm_compile_seconds(args) if args.compile else float("nan")
    if args.compile:
        print(f"  5 steps: compile in a fresh process from the persistent cache {warm_s:.1f} s")
    if args.loop:
        loop_rate = measure_loop(args)
        print(f"  5 steps: whole meta_train loop {loop_rate:.1f} meta-it/s (sampling, checks included)")
    if args.glyphs:
        glyph_rows(args)
    fields = summary(five, one, warm_s)
    print(f"  load average at the end {os.getloadavg()[0]:.2f}")
    print("RESULT " + " ".join(f"{k}={result_figure(k, v)}" for k, v in fields.items()))
    cache.cleanup()


if __name__ == "__main__":
    main()
