"""One glyphs meta-training run in a fresh process, timed: wall, user and system seconds.

``engine_throughput.py`` starts this script once per row, so that every row begins
with a fresh allocator: ``--allocator glibc`` leaves glibc's defaults (what every run
got before), ``--allocator tuned`` applies the project's settings the way the workers
and the command line do (``workers.metalearn.runtime.prepare_process``).

    .venv/bin/python benchmarks/_cpu_times.py --algorithm protonet --iterations 100 --threads 2 \\
        --allocator tuned

``--recipe maml`` (or ``protonet``) times one of ``quality.py --omniglot-level``'s recipes
instead (``OMNIGLOT_LEVEL``, training seed ``--seed``), without its val checks.

Prints one JSON line: ``{"wall_s", "user_s", "sys_s", "peak_rss_mb", "iterations", ...}``.
Only the training is timed (the glyph bank is loaded before the clock starts).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def glyph_config(algorithm: str, iterations: int, device: str) -> dict:
    """The issue's workload: 5-way 1-shot, 32 filters, meta-batch 25 (quality.py's settings)."""
    return {
        "algorithm": algorithm,
        "family": {"name": "glyphs"},
        "ways": 5,
        "shots": 1,
        "query": 10,
        "meta_batch": 25,
        "inner_steps": 1,
        "inner_lr": 0.4,
        "conv_filters": 32,
        "iterations": iterations,
        "eval_interval": 10**6,
        "eval_tasks": 5,
        "checkpoint_interval": 10**6,
        "compile": "off",
        "device": device,
        "seed": 0,
    }


def _config(args: argparse.Namespace) -> dict:
    if args.recipe is None:
        return glyph_config(args.algorithm, args.iterations, args.device)
    from benchmarks._quality_glyphs import OMNIGLOT_LEVEL, recipe_config

    recipe = next(r for r in OMNIGLOT_LEVEL if r.key == args.recipe)
    config = recipe_config(recipe, args.iterations, args.seed).model_dump(mode="json")
    return config | {"eval_interval": 10**6, "checkpoint_interval": 10**6, "device": args.device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithm", default="protonet", choices=("protonet", "maml"))
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--allocator", choices=("glibc", "tuned"), default="tuned")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--recipe", choices=("protonet", "maml"), help="an Omniglot-level recipe instead")
    parser.add_argument("--seed", type=int, default=0, help="with --recipe: its training seed")
    args = parser.parse_args()

    from workers.metalearn.runtime import prepare_process, set_threads

    if args.allocator == "tuned":
        with tempfile.TemporaryDirectory() as cache:
            prepared = prepare_process(threads=args.threads, compile_cache=cache)
    else:
        set_threads(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from workers.metalearn.api import meta_train
    from workers.metalearn.config import FamilySpec
    from workers.metalearn.families import make_family
    from workers.metalearn.types import EpisodeSpec

    family = make_family(FamilySpec(name="glyphs"))
    family.sample("train", 1, EpisodeSpec(shots=1, query=1, ways=5), seed=0)  # load the glyph bank
    before, wall = os.times(), time.perf_counter()
    meta_train(_config(args), family)
    wall, after = time.perf_counter() - wall, os.times()
    print(
        json.dumps(
            {
                "algorithm": args.recipe or args.algorithm,
                "recipe": args.recipe,
                "allocator": args.allocator,
                "allocator_applied": args.allocator == "tuned" and prepared.allocator,
                "threads": torch.get_num_threads(),
                "iterations": args.iterations,
                "wall_s": round(wall, 2),
                "user_s": round(after.user - before.user, 2),
                "sys_s": round(after.system - before.system, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


if __name__ == "__main__":
    main()
