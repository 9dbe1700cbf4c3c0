"""Which change of setting stops a diverging meta-training run, per algorithm?

A diverged training run's message advises changes among the algorithm's own settings
(``workers.tasks.divergence_hint``, from ``AlgorithmSpec.divergence_remedies``). This
script measures that advice. Each of :data:`CASES` is a sinusoid setting (K=5, 10 query
points, meta-batch 25, 5 inner steps, inner lr 0.01 and Adam 1e-3 unless the case
changes them) that diverged on seed 0 when probed; for each case it trains the case
itself and then each of :func:`remedies` (one change each, relative to the case's
values, where the algorithm has that setting) on ``--seeds`` seeds of ``--iterations``
iterations, and prints which stayed finite.

    .venv/bin/python benchmarks/divergence_remedies.py [--cases maml_inner_lr,metasgd] [--seeds 3]

Last line: ``RESULT <case>.<change>_finite=<n>/<seeds> ...`` (``none`` is the case
unchanged).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from workers.metalearn.api import meta_train  # noqa: E402
from workers.metalearn.config import FamilySpec, TrainConfig  # noqa: E402
from workers.metalearn.families import make_family  # noqa: E402
from workers.metalearn.specs import SPECS  # noqa: E402
from workers.metalearn.types import DivergenceError  # noqa: E402

BASE: dict[str, object] = {
    "inner_steps": 5, "inner_lr": 0.01, "meta_lr": 1e-3, "meta_batch": 25, "shots": 5, "query": 10,
}  # fmt: skip
#: Name: (algorithm, its changes from BASE). Each diverged on seed 0 within 1,500 iterations.
CASES: dict[str, tuple[str, dict[str, object]]] = {
    "maml_inner_lr": ("maml", {"inner_lr": 0.1}),
    "maml_meta_lr": ("maml", {"meta_lr": 1e-2}),
    "fomaml_inner_lr": ("fomaml", {"inner_lr": 0.1}),
    "reptile_inner_lr": ("reptile", {"inner_lr": 0.1}),
    "metasgd": ("metasgd", {}),
    "mnn_meta_lr": ("mnn", {"meta_lr": 0.3}),
}


def remedies(algorithm: str, case: dict[str, object]) -> dict[str, dict[str, object]]:
    """One change each of the settings a diverged run's message may name, relative to ``case``."""
    spec, values = SPECS[algorithm], {**BASE, **case}
    changes: dict[str, dict[str, object]] = {"none": {}}
    for field in ("meta_lr", "inner_lr"):
        for factor in (3, 10):
            if spec.applies(field):
                changes[f"{field}/{factor}"] = {field: float(values[field]) / factor}
    for steps in (3, 1):
        if spec.applies("inner_steps"):
            changes[f"inner_steps={steps}"] = {"inner_steps": steps}
    changes["grad_clip=1"] = {"grad_clip": 1.0}
    if spec.applies("first_order"):
        changes["first_order"] = {"first_order": True}
    return changes


def train(
    algorithm: str,
    settings: dict[str, object],
    seed: int,
    iterations: int,
    folder: Path,
    checkpoints: int = 0,
) -> int:
    """The step a sinusoid run's DivergenceError names, or 0 when it stayed finite; a checkpoint
    every ``checkpoints`` steps (0: only at the end) in ``folder``."""
    spec = SPECS[algorithm]
    config = TrainConfig(**{
        "algorithm": algorithm, **{k: v for k, v in settings.items() if spec.applies(k)},
        "iterations": iterations, "seed": seed, "eval_interval": iterations, "eval_tasks": 10,
        "checkpoint_interval": checkpoints or iterations, "device": "cpu", "compile": "off",
    })  # fmt: skip
    try:
        meta_train(config, make_family(FamilySpec(name="sinusoid")), None, folder)
    except DivergenceError as error:
        return error.step
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, from CASES")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=3000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    fields = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            algorithm, case = CASES[name]
            print(f"{name}: {algorithm} {case or 'at the defaults'}", flush=True)
            for label, change in remedies(algorithm, case).items():
                ends = [
                    train(algorithm, {**BASE, **case, **change}, seed, args.iterations,
                          Path(tmp) / f"{name}-{label}-{seed}".replace("/", "_"))
                    for seed in range(args.seeds)
                ]  # fmt: skip
                said = ", ".join(f"diverged at {step}" if step else "finite" for step in ends)
                print(f"  {label:14}: {said}", flush=True)
                fields.append(f"{name}.{label}_finite={sum(1 for step in ends if not step)}/{args.seeds}")
    print(f"RESULT {' '.join(fields)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
