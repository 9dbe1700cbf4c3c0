"""Where the forest's thresholds come from, and what it costs
(``apps/experiments/analysis/forest.py``, ``importance.py``).

Made-up sweeps over a rate (log-spaced), the seed and an irrelevant two-value
setting, whose final loss is ``shape(log10 rate + 2.5)`` plus Gaussian noise (sd 0.3):

* ``u``: ``x**2``, the rate best in the middle of its range, which Spearman's rho
  cannot see;
* ``noise``: no dependence at all.

Each is drawn ``--draws`` times as a grid (5 rates x 3 seeds, 15 runs) and as a
random search (20 runs, 4 seeds, rates log-uniform). A draw is *flagged* when the
rate's reading says "matters, but not monotonically" (no clear rank link, at least
``FOREST_CLEAR_SHARE`` of a forest whose out-of-bag R² is at least ``FOREST_CLEAR_R2``).
A good rule flags the U shapes and never the noise.

Then the cost: the rank tests alone against rank tests and forest, on a 20-run sweep
and on the compare page's largest case (500 runs, 15 varying keys, one metric),
medians of ``--repeats``, measured in the same run.

    .venv/bin/python benchmarks/importance_forest.py [--draws 150] [--seed-base 1000] [--repeats 5]

The thresholds were chosen on the default draws (seeds from 1000) and checked on
``--seed-base 5000``.

Last line: ``RESULT u_flagged_grid=<n>/<draws> u_flagged_random=<n>/<draws>
noise_flagged=<n>/<2 draws> noise_max_r2=<x> sweep_forest_ms=<x> sweep_rank_ms=<x>
page_forest_ms=<x> page_rank_ms=<x> page_forest_vs_rank=<x>``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "metaweb.settings.test_sqlite")

from apps.experiments.analysis.importance import sweep_importance  # noqa: E402

SETTINGS = ["inner_lr", "seed", "steps"]
SHAPES = {"u": lambda x: x * x, "noise": lambda x: 0.0}


def draw(shape: str, seed: int, *, grid: bool) -> list[tuple[dict, float]]:
    rnd = random.Random(seed)
    rates = [10 ** (-4 + 3 * i / 4) for i in range(5)]
    points = [(lr, s) for s in range(3) for lr in rates] if grid else [
        (10 ** rnd.uniform(-4, -1), s) for s in range(4) for _ in range(5)
    ]  # fmt: skip
    return [
        (
            {"inner_lr": lr, "seed": s, "steps": rnd.choice([1, 5])},
            SHAPES[shape](math.log10(lr) + 2.5) + rnd.gauss(0, 0.3),
        )
        for lr, s in points
    ]


def rate_of(runs: list[tuple[dict, float]]):
    found = sweep_importance(SETTINGS, runs, metric="val_loss", maximize=False)
    return next(item for item in found if item.setting == "inner_lr")


def flagged(shape: str, draws: int, base: int, *, grid: bool) -> tuple[int, list[float]]:
    rates = [rate_of(draw(shape, base + i, grid=grid)) for i in range(draws)]
    return sum(item.not_monotone for item in rates), [item.forest_r2 for item in rates]


def page_runs(count: int = 500, keys: int = 15) -> list[tuple[dict, float]]:
    rnd = random.Random(0)
    runs = []
    for _ in range(count):
        point = {f"k{j}": rnd.choice([0.001, 0.01, 0.1, 1.0]) for j in range(keys - 1)}
        point["seed"] = rnd.randrange(5)
        runs.append((point, math.log10(point["k0"]) ** 2 + rnd.gauss(0, 0.5)))
    return runs


def timed(runs: list[tuple[dict, float]], *, forest: bool, repeats: int) -> float:
    settings = list(runs[0][0])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        sweep_importance(settings, runs, metric="val_loss", maximize=False, forest=forest)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=150)
    parser.add_argument("--seed-base", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    base = args.seed_base
    u_grid, _ = flagged("u", args.draws, base, grid=True)
    u_random, _ = flagged("u", args.draws, base, grid=False)
    noise_grid, r2_grid = flagged("noise", args.draws, base, grid=True)
    noise_random, r2_random = flagged("noise", args.draws, base, grid=False)
    noise_max_r2 = max(r2_grid + r2_random)
    print(f"U-shaped rate flagged: grid {u_grid}/{args.draws}, random {u_random}/{args.draws}")
    print(
        f"noise flagged: {noise_grid + noise_random}/{2 * args.draws}; its largest OOB R2 {noise_max_r2:.3f}"
    )
    rate_of(draw("u", 0, grid=True))  # the first fit imports scikit-learn: not timed
    sweep = draw("u", 1, grid=False)
    page = page_runs()
    sweep_forest, sweep_rank = (
        timed(sweep, forest=True, repeats=args.repeats),
        timed(sweep, forest=False, repeats=args.repeats),
    )
    page_forest, page_rank = (
        timed(page, forest=True, repeats=args.repeats),
        timed(page, forest=False, repeats=args.repeats),
    )
    print(f"20-run sweep: {sweep_forest:.1f} ms with the forest, {sweep_rank:.1f} ms rank tests alone")
    print(f"500 runs x 15 keys: {page_forest:.1f} ms with the forest, {page_rank:.1f} ms rank tests alone")
    print(
        f"RESULT u_flagged_grid={u_grid}/{args.draws} u_flagged_random={u_random}/{args.draws} "
        f"noise_flagged={noise_grid + noise_random}/{2 * args.draws} noise_max_r2={noise_max_r2:.3f} "
        f"sweep_forest_ms={sweep_forest:.1f} sweep_rank_ms={sweep_rank:.1f} page_forest_ms={page_forest:.1f} "
        f"page_rank_ms={page_rank:.1f} page_forest_vs_rank={page_forest / page_rank:.1f}"
    )


if __name__ == "__main__":
    main()
