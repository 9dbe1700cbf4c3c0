"""Where the loss-spike thresholds come from (``workers/metalearn/spikes.py``).

Meta-trains each case with the engine (1 thread, no checkpoints), keeps every step's
loss, and for each step past the first 50 computes the two figures the spike rule
reads (``spike_figures``): the loss's ratio to the median of the 50 steps before, and
how many median absolute deviations of the log loss it stands above that median. Then
it replays the losses through ``SpikeWatch`` as the loop does.

The cases are the runs that trained normally (every algorithm that regresses on
sinusoid, digits classification, and with ``--glyphs`` the conv net on glyphs, about
10 more minutes) and 5-step second-order MAML on sinusoid, which spikes: a meta-batch
whose 5 inner steps overshoot. A good threshold stays above every normal run's peak
and below the 5-step runs' spikes.

    .venv/bin/python benchmarks/spike_thresholds.py [--glyphs] [--maml5-seeds 7]

Last line: ``RESULT normal_max_mads=<x> normal_max_ratio=<x> normal_told=<n>
maml5_spiking=<n>/<seeds> maml5_min_spike_mads=<x> watch_us_per_step=<x>
watch_vs_quickest_step_pct=<x>`` (normal_told: notices in the normal runs, which should
be 0; the last: the watch's cost per step against the quickest case's wall time per step,
measured in the same run).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from workers.metalearn.config import parse_config  # noqa: E402
from workers.metalearn.families import make_family  # noqa: E402
from workers.metalearn.loop import meta_train  # noqa: E402
from workers.metalearn.spikes import SPIKE_WINDOW, SpikeWatch, spike_figures  # noqa: E402
from workers.metalearn.types import DivergenceError, NullReporter  # noqa: E402

SINUSOID = {"iterations": 4000, "eval_interval": 4000, "checkpoint_interval": 4000}
DIGITS = {**SINUSOID, "family": {"name": "digits"}, "iterations": 1500}
GLYPHS = {**SINUSOID, "family": {"name": "glyphs"}, "iterations": 300, "conv_filters": 32, "shots": 1}


def normal_cases(glyphs: bool) -> list[tuple[str, dict]]:
    cases = [
        (f"sinusoid {algorithm} seed {seed}", {**SINUSOID, "algorithm": algorithm, "seed": seed})
        for algorithm in ("maml", "fomaml", "reptile", "metasgd", "anil", "mnn")
        for seed in (0, 1)
    ]
    cases.append(("sinusoid seed-mnn seed 0", {**SINUSOID, "algorithm": "seed-mnn", "seed": 0}))
    cases += [(f"digits {a}", {**DIGITS, "algorithm": a, "seed": 0}) for a in ("maml", "anil", "protonet")]
    if glyphs:
        cases += [(f"glyphs {a}", {**GLYPHS, "algorithm": a, "seed": 0}) for a in ("maml", "protonet")]
    return cases


class Losses(NullReporter):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.losses.append(float(metrics["loss"]))


def train(config: dict) -> tuple[list[float], str, float]:
    """The run's step losses, how it ended, and its wall seconds per step (set-up and
    evaluations included)."""
    parsed = parse_config(config)
    losses = Losses()
    started = time.perf_counter()
    try:
        meta_train(parsed, make_family(parsed.family), losses)
        end = "ok"
    except DivergenceError as error:
        end = f"diverged at step {error.step}"
    return losses.losses, end, (time.perf_counter() - started) / max(1, len(losses.losses))


def peaks(losses: list[float]) -> tuple[float, float]:
    """The largest MADs-above-median and ratio-to-median over the run's steps."""
    logs = [math.log(v) for v in losses]
    mads, ratio = -math.inf, 0.0
    for i in range(SPIKE_WINDOW, len(logs)):
        r, m = spike_figures(logs[i - SPIKE_WINDOW : i], logs[i])
        mads, ratio = max(mads, m), max(ratio, r)
    return mads, ratio


def told(losses: list[float]) -> list:
    watch = SpikeWatch()
    return [n for step, loss in enumerate(losses, 1) if (n := watch.observe(step, loss))]


def watch_cost(losses: list[float]) -> float:
    """Microseconds per ``SpikeWatch.observe`` over these losses."""
    watch = SpikeWatch()
    started = time.perf_counter()
    for step, loss in enumerate(losses, 1):
        watch.observe(step, loss)
    return (time.perf_counter() - started) / len(losses) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--glyphs", action="store_true", help="also the glyphs conv nets (about 10 minutes)")
    parser.add_argument("--maml5-seeds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    normal_mads, normal_ratio, normal_told, cost, quickest = -math.inf, 0.0, 0, 0.0, math.inf
    print(f"{'case':32s} {'steps':>6s} {'max MADs':>9s} {'max ratio':>10s} told  end")
    for name, config in normal_cases(args.glyphs):
        losses, end, per_step = train(config)
        quickest = min(quickest, per_step)
        mads, ratio = peaks(losses)
        notices = told(losses)
        normal_mads, normal_ratio = max(normal_mads, mads), max(normal_ratio, ratio)
        normal_told += len(notices)
        cost = max(cost, watch_cost(losses))
        print(f"{name:32s} {len(losses):6d} {mads:9.1f} {ratio:10.3g} {len(notices):4d}  {end}", flush=True)
    spiking, least = 0, math.inf
    for seed in range(args.maml5_seeds):
        losses, end, _ = train({**SINUSOID, "algorithm": "maml", "inner_steps": 5, "seed": seed})
        notices = told(losses)
        logs = [math.log(v) for v in losses]
        for notice in (n for n in notices if n.kind == "spike"):
            i = notice.step - 1
            least = min(least, spike_figures(logs[i - SPIKE_WINDOW : i], logs[i])[1])
        spiking += bool(notices)
        steps = ", ".join(str(n.step) for n in notices) or "-"
        name = f"sinusoid maml 5-step seed {seed}"
        print(f"{name:32s} {len(losses):6d} told at {steps}  {end}", flush=True)
    print(
        f"RESULT normal_max_mads={normal_mads:.1f} normal_max_ratio={normal_ratio:.3g} "
        f"normal_told={normal_told} maml5_spiking={spiking}/{args.maml5_seeds} "
        f"maml5_min_spike_mads={least:.1f} watch_us_per_step={cost:.1f} "
        f"watch_vs_quickest_step_pct={100 * cost / (quickest * 1e6):.2f}"
    )


if __name__ == "__main__":
    main()
