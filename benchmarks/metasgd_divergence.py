"""Does Meta-SGD with 5 second-order inner steps diverge on sinusoid, outside the engine too?

A run launched with ``algorithm: metasgd, inner_steps: 5`` and the other defaults
(inner lr 0.01, Adam 1e-3, meta-batch 25, K=5, 10 query points) fails a few hundred
steps in with "training diverged". This script asks whether that is the engine or the
algorithm. For each seed it meta-trains:

* **reference**: an independent Meta-SGD (Li et al. 2017), written here with nothing
  from the engine: one task at a time, ``autograd.grad(create_graph=True)`` through the
  inner steps, PyTorch's default ``nn.Linear`` initialisation, a learned rate per
  weight starting at the inner lr, Adam on weights and rates together;
* **engine**: ``workers.metalearn.api.meta_train`` on the same setting.

Each side reports the iteration at which its loss or meta-gradient norm first stopped
being finite (or that it stayed finite), and the largest learned rate on the way.

Which change of setting stops it is ``benchmarks/divergence_remedies.py --cases metasgd``.

    .venv/bin/python benchmarks/metasgd_divergence.py [--seeds 3] [--iterations 800] [--steps 5]

Last line: ``RESULT reference_diverged=<n>/<seeds> engine_diverged=<n>/<seeds>
reference_first=<iteration> engine_first=<iteration>`` (first: the earliest divergence, 0 if
none).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.divergence_remedies import BASE, train  # noqa: E402
from workers.metalearn.checkpoint import load_checkpoint  # noqa: E402

INNER_LR, META_LR, META_BATCH, SHOTS, QUERY = (
    BASE[key] for key in ("inner_lr", "meta_lr", "meta_batch", "shots", "query")
)


def _mlp(x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    for i in range(0, len(weights) - 2, 2):
        x = torch.relu(torch.nn.functional.linear(x, weights[i], weights[i + 1]))
    return torch.nn.functional.linear(x, weights[-2], weights[-1])


def reference(seed: int, steps: int, iterations: int) -> tuple[int, float]:
    """(iteration of the first non-finite loss or norm, 0 if none; the largest rate seen)."""
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(1, 40), torch.nn.Linear(40, 40), torch.nn.Linear(40, 1)]
    weights = [p.detach().clone().requires_grad_() for layer in layers for p in (layer.weight, layer.bias)]
    rates = [torch.full_like(w, INNER_LR).requires_grad_() for w in weights]
    optimiser = torch.optim.Adam(weights + rates, lr=META_LR)
    largest = INNER_LR
    for iteration in range(1, iterations + 1):
        optimiser.zero_grad()
        loss = 0.0
        for _ in range(META_BATCH):  # Finn et al.'s sinusoid: amplitude U[0.1, 5], phase U[0, pi]
            amplitude, phase = 0.1 + 4.9 * torch.rand(()), math.pi * torch.rand(())
            x = torch.rand(SHOTS + QUERY, 1) * 10 - 5
            y = amplitude * torch.sin(x - phase)
            fast = weights
            for _ in range(steps):
                inner = torch.nn.functional.mse_loss(_mlp(x[:SHOTS], fast), y[:SHOTS])
                grads = torch.autograd.grad(inner, fast, create_graph=True)
                fast = [w - r * g for w, r, g in zip(fast, rates, grads, strict=True)]
            query = torch.nn.functional.mse_loss(_mlp(x[SHOTS:], fast), y[SHOTS:]) / META_BATCH
            query.backward()
            loss += query.item()
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in weights + rates])).item()
        if not (math.isfinite(loss) and math.isfinite(norm)):
            return iteration, largest
        optimiser.step()
        largest = max(largest, max(r.detach().abs().max().item() for r in rates))
    return 0, largest


def engine(seed: int, steps: int, iterations: int, folder: Path) -> tuple[int, float]:
    """The same for ``meta_train``: the step its DivergenceError names, and the largest rate
    in its last good checkpoint."""
    diverged = train("metasgd", {**BASE, "inner_steps": steps}, seed, iterations, folder, checkpoints=50)
    params = load_checkpoint(folder).params
    return diverged, max(v.abs().max().item() for k, v in params.items() if k.startswith("lr."))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=800)
    parser.add_argument("--steps", type=int, default=5, help="inner steps in meta-training")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    found: dict[str, list[int]] = {"reference": [], "engine": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            sides = {
                "reference": reference(seed, args.steps, args.iterations),
                "engine": engine(seed, args.steps, args.iterations, Path(tmp) / f"seed-{seed}"),
            }
            for side, (step, largest) in sides.items():
                what = f"diverged at iteration {step}" if step else f"finite for {args.iterations} iterations"
                print(f"seed {seed} {side:9}: {what}; largest learned rate {largest:.3f}", flush=True)
                found[side].append(step)
    first = {side: min((s for s in steps if s), default=0) for side, steps in found.items()}
    counts = {side: sum(1 for s in steps if s) for side, steps in found.items()}
    print(
        f"RESULT reference_diverged={counts['reference']}/{args.seeds} "
        f"engine_diverged={counts['engine']}/{args.seeds} "
        f"reference_first={first['reference']} engine_first={first['engine']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
