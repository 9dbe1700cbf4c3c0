"""Meta-SGD's closed-form meta-gradient against autograd through the fused loop (CPU).

The workload is ``engine_throughput.py``'s (sinusoid, MLP 1-40-40-1, K=5, 10 query
points, meta-batch 25, 5 inner steps, Adam 1e-3), with Meta-SGD's learned rate per
weight. One meta-iteration = meta-gradient + Adam step on a pre-sampled meta-batch.
Four sides, alternating after a warm-up, each the median of ``--repeats``:

* autograd: the fused inner loop differentiated by autograd, eager (Meta-SGD's CPU
  path before its closed form; still its GPU path): the baseline;
* closed form: ``algorithms/analytic.py`` (eager: a run's path until ``auto`` compiles);
* autograd compiled: the fused meta-loss compiled, then autograd and Adam;
* closed form compiled: the engine's compiled iteration (``metastep.py``: the
  closed-form meta-gradient, clipping and Adam as one graph), a compiled run's path.

Every side's meta-gradient (weights and rates) is checked against the autograd
side's before timing (relative difference below 1e-5, each part on its own).

    .venv/bin/python benchmarks/metasgd_throughput.py [--threads 1] [--repeats 5]

Last line: ``RESULT metasgd_closed_speedup=<x> metasgd_compiled_speedup=<x> ...``:
each closed-form side over its autograd counterpart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "benchmarks"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import torch  # noqa: E402
from engine_throughput import (  # noqa: E402
    INFO,
    INNER_LR,
    QUERY,
    SHOTS,
    Side,
    StepSide,
    engine_grads,
    rate,
    relative_difference,
)

from workers.metalearn.algorithms import make_algorithm  # noqa: E402
from workers.metalearn.config import FamilySpec, TrainConfig  # noqa: E402
from workers.metalearn.episodes import batch_seed, to_episode  # noqa: E402
from workers.metalearn.families import episode_spec, make_family  # noqa: E402

CPU = torch.device("cpu")


def algorithm(path: str):
    config = TrainConfig(algorithm="metasgd", inner_steps=5, inner_lr=INNER_LR, hidden=(40, 40))
    alg = make_algorithm(config, INFO)
    if path == "autograd":
        alg.use_autograd()
    return alg


def make_sides() -> dict[str, Side]:
    init = algorithm("closed form").init_params()
    generator = torch.Generator().manual_seed(0)
    for name, value in init.items():  # learned rates apart, as after training
        if name.startswith("lr."):
            value.copy_(torch.empty(value.shape).uniform_(0.005, 0.02, generator=generator))
    compiled = algorithm("autograd")
    compiled.compile(cpu=True)
    return {
        "autograd": Side(init, engine_grads(algorithm("autograd")), CPU, False),
        "closed form": Side(init, engine_grads(algorithm("closed form")), CPU, False),
        "autograd compiled": Side(init, engine_grads(compiled), CPU, False),
        "closed form compiled": StepSide(init, algorithm("closed form"), CPU),
    }


def check(sides: dict[str, Side], ep) -> dict[str, float]:
    """Each side's meta-gradient against the autograd side's; returns each first call's seconds."""
    names = list(sides["autograd"].meta)
    ref = dict(zip(names, sides["autograd"].grads(ep), strict=True))
    first = {}
    for name, side in sides.items():
        started = time.perf_counter()
        ours = dict(zip(names, side.grads(ep), strict=True))
        first[name] = time.perf_counter() - started
        for part in (
            [n for n in names if n.startswith("lr.")],
            [n for n in names if not n.startswith("lr.")],
        ):
            diff = relative_difference([ours[n] for n in part], [ref[n] for n in part])
            assert diff < 1e-5, f"{name} disagrees with autograd ({diff:.2e})"
        print(
            f"  {name:21s} meta-gradient vs autograd: within 1e-5; first call {first[name]:.1f} s", flush=True
        )
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per side (median)")
    parser.add_argument("--iterations", type=int, default=100, help="meta-iterations per timed repeat")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache = tempfile.TemporaryDirectory(prefix="metasgd-throughput-cache-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name
    family = make_family(FamilySpec(name="sinusoid"))
    spec = episode_spec(TrainConfig(shots=SHOTS, query=QUERY), "regression")
    batches = [to_episode(family.sample("train", 25, spec, seed=batch_seed(0, s)), CPU) for s in range(8)]
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}; "
        f"Meta-SGD 1-40-40-1, K={SHOTS}, query {QUERY}, meta-batch 25, 5 inner steps",
        flush=True,
    )
    sides = make_sides()
    check(sides, batches[0])
    for side in sides.values():
        rate(side, batches, 5, CPU)
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, side in sides.items():
            rates[name].append(rate(side, batches, args.iterations, CPU))
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        print(f"  {name:21s} median {value:7.1f} meta-it/s  [{', '.join(f'{v:.1f}' for v in rates[name])}]")
    fields = {
        "metasgd_closed_speedup": median["closed form"] / median["autograd"],
        "metasgd_compiled_speedup": median["closed form compiled"] / median["autograd compiled"],
        "metasgd_closed_its": median["closed form"],
        "metasgd_compiled_its": median["closed form compiled"],
        "metasgd_autograd_its": median["autograd"],
        "metasgd_autograd_compiled_its": median["autograd compiled"],
    }
    print(
        "RESULT " + " ".join(f"{k}={v:.2f}" if "speedup" in k else f"{k}={v:.1f}" for k, v in fields.items())
    )
    cache.cleanup()


if __name__ == "__main__":
    main()
