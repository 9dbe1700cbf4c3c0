"""Quality: meta-test scores of the engine's algorithms, against the baselines of Finn et al. 2017.

**Sinusoid** (Finn, Abbeel & Levine, ICML 2017, section 5.1): MAML, FOMAML,
Reptile, Meta-SGD, ANIL and MNN, each meta-trained with K=10 shots (and 10
query points) per task, 1 inner step at lr 0.01, meta-batch 25, MLP 1-40-40-1,
Adam at meta lr 1e-3. Every model is scored on the test split's 600 fixed tasks
cut with K=5 shots (``family.fixed_tasks("test", EpisodeSpec(shots=5, ...))``)
and 100 query points each: the mean query MSE, with a 95% CI over tasks, before
adaptation and after 1 and 10 SGD steps at lr 0.01 (Meta-SGD: its learned
rates), then also at K=10. ``api.evaluate`` cuts test tasks with the training
episode (K=10), so the K=5 tasks are built here and scored with the loop's
``evaluate_tasks``, the same inner loop ``evaluate`` uses. Two baselines share
the architecture and that fine-tuning code (``benchmarks/_quality_baselines.py``):
*pretrained* (supervised regression on the pooled points of the same meta-train
tasks, then fine-tuned on the K shots) and *from scratch* (random init, then
fine-tuned), each at lr 0.01 and at the lr picked on the val split's fixed tasks.

**Glyphs** 5-way 1-shot and 5-shot: ProtoNets, MAML and ANIL (4-block conv
net, inner lr 0.4, 1 inner step), scored with ``api.evaluate`` on the test
split's 600 fixed tasks (accuracy, 95% CI), against chance (20%).

    .venv/bin/python benchmarks/quality.py --quick              # about 5 minutes on 2 CPU cores
    .venv/bin/python benchmarks/quality.py --threads 1          # about 35 minutes; writes docs/quality.md
    .venv/bin/python benchmarks/quality.py --task-pool-curve    # test error by number of training tasks
    .venv/bin/python benchmarks/quality.py --omniglot-level --threads 1   # about 35 minutes
    .venv/bin/python benchmarks/quality.py --omniglot-level --threads 1 --seed 1 --recipes maml

**Glyphs at Omniglot level** (``--omniglot-level``, issue #12 section 4): ProtoNets and
MAML, 5-way 1-shot, each trained once within 30 minutes of CPU time with the recipes of
``benchmarks/_quality_glyphs.py`` (``OMNIGLOT_LEVEL``), MAML's test-time steps picked on
600 val tasks, then scored on the 600 fixed test tasks. ``--omniglot-ablations`` trains
ProtoNets' recipe with one choice undone at a time (``OMNIGLOT_ABLATIONS``: 5-way
episodes, at the same iterations and at about the same time; a constant meta lr;
about 30 minutes on 1 thread) and writes ``docs/quality-omniglot-ablations.md``.
``--seed N`` trains with another seed (the test tasks stay the same) and ``--recipes``
picks recipes by key; either writes ``docs/quality-omniglot-seed<N>-<keys>.md``, so the
seed-0 tables stay as measured.

``--threads`` (default 2) sets torch's intra-op threads for the conv nets; the
sinusoid MLP always runs on one (its layers are 40 wide). On a 2-core machine
that other jobs share, ``--threads 1`` was 1.5-3x faster than 2 for the conv
nets too, since two threads then spin waiting for each other.

Prints progress lines, the tables, the peak RSS (self and children; must stay
under 4 GB), and last a line ``RESULT maml_k5_10step_mse=<x>
pretrained_k5_10step_mse=<x> scratch_k5_10step_mse=<x> protonet_5w1s_acc=<x>
peak_rss_mb=<x> ...``; ``protonet_5w1s_acc`` and ``maml_5w1s_acc`` are the Omniglot-level
rows' when they ran. The Markdown tables go to ``docs/quality.md`` (full run)
or to ``--markdown PATH``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks._quality_glyphs import (  # noqa: E402
    OMNIGLOT_ABLATIONS,
    OMNIGLOT_LEVEL,
    GlyphRow,
    OmniglotRow,
    glyph_markdown,
    omniglot_markdown,
    run_glyphs,
    run_omniglot_level,
)
from benchmarks._quality_report import log, peak_rss_mb  # noqa: E402
from benchmarks._quality_sinusoid import (  # noqa: E402
    BASELINE_LRS,
    MLP_THREADS,
    TEST_QUERY,
    TEST_STEPS,
    RegressionRow,
    run_sinusoid,
)
from benchmarks._task_pool_curve import DEFAULT_LEARNERS as DEFAULT_POOL_LEARNERS  # noqa: E402
from benchmarks._task_pool_curve import main as pool_curve  # noqa: E402

RSS_LIMIT_MB = 4096.0
#: Iterations of each Omniglot-level run under ``--quick`` (a smoke test of the rows, not their figures).
OMNIGLOT_QUICK_ITERATIONS = 20


@dataclass(frozen=True)
class Budget:
    name: str
    #: Meta-training iterations per sinusoid run key, and for the pretrained baseline.
    sinusoid: dict[str, int]
    #: Meta-training iterations per glyph algorithm (the same for 1-shot and 5-shot).
    glyphs: dict[str, int]
    glyph_meta_batch: int
    glyph_query: int
    conv_filters: int
    #: Test-time inner steps at which MAML and ANIL are scored on glyphs.
    glyph_eval_steps: tuple[int, ...] = (1, 3)

    def describe(self) -> str:
        sin = ", ".join(f"{k} {v}" for k, v in self.sinusoid.items())
        gly = ", ".join(f"{k} {v}" for k, v in self.glyphs.items())
        return (
            f"sinusoid iterations (meta-batch 25): {sin}; glyph iterations per shot setting "
            f"(meta-batch {self.glyph_meta_batch}, {self.glyph_query} query/class in training, "
            f"{self.conv_filters}-filter conv net): {gly}"
        )


QUICK = Budget(
    name="quick",
    sinusoid={
        "maml": 4000,
        "fomaml": 1500,
        "reptile": 1500,
        "reptile5": 1500,
        "metasgd": 1500,
        "anil": 1500,
        "mnn": 1500,
        "mnn_oracle": 1000,
        "pretrained": 4000,
    },
    glyphs={"protonet": 60, "maml": 60, "anil": 60},
    glyph_meta_batch=4,
    glyph_query=5,
    conv_filters=32,
    glyph_eval_steps=(1,),
)
FULL = Budget(
    name="full",
    sinusoid={
        "maml": 12000,
        "fomaml": 12000,
        "reptile": 12000,
        "reptile5": 12000,
        "metasgd": 12000,
        "anil": 12000,
        "mnn": 12000,
        "mnn_oracle": 6000,
        "pretrained": 12000,
    },
    glyphs={"protonet": 500, "maml": 500, "anil": 500},
    glyph_meta_batch=8,
    glyph_query=5,
    conv_filters=32,
)


# ----- output ------------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, Linux {platform.release()}"


def markdown(
    budget: Budget,
    args: argparse.Namespace,
    reg: list[RegressionRow],
    picked: dict[str, Any],
    glyphs: list[GlyphRow],
    omniglot: list[OmniglotRow],
    wall: float,
    rss: float,
) -> str:
    cmd = ".venv/bin/python benchmarks/quality.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# Meta-test quality",
        "",
        f"Generated by `{cmd.strip()}` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {machine()}; torch {torch.__version__}, CPU only, {args.threads} torch thread(s) "
        f"for the conv nets and {MLP_THREADS} for the sinusoid MLP; "
        "shared with other jobs. "
        + (f"Budget **{budget.name}**: {budget.describe()}. " if reg or glyphs else "")
        + f"Wall time {wall / 60:.1f} min, peak RSS {rss:.0f} MB.",
        "",
    ]
    if reg:
        by_key = {row.key: row for row in reg}
        lines += ["## Sinusoid regression (Finn et al. 2017, section 5.1)", ""]
        if {"maml", "pretrained", "scratch"} <= set(by_key):
            maml, pre, scr = (by_key[k].scores["k5_10"].mean for k in ("maml", "pretrained", "scratch"))
            before = by_key["maml"].scores["k5_0"].mean
            lines += [
                f"**MAML adapts:** on the 600 test tasks with K=5 shots, 10 SGD steps at lr 0.01 take MAML's "
                f"query MSE from {before:.2f} to **{maml:.2f}**; the same 10 steps "
                f"give {pre:.2f} from the pretrained network and {scr:.2f} from scratch "
                f"({pre / maml:.1f}x and {scr / maml:.1f}x MAML's error).",
                "",
            ]
        lines += [
            "Meta-training: K=10 shots and 10 query points per task, 1 inner step at lr 0.01, meta-batch 25, "
            "MLP 1-40-40-1, Adam at meta lr 1e-3, seed 0. Test: the 600 fixed meta-test tasks "
            f'(`fixed_tasks("test", ...)`), {TEST_QUERY} query points each; mean query MSE ± 95% CI over '
            "tasks, after 0, 1 and 10 steps of adaptation on the K support points. The baselines use the "
            "same network and the engine's own fine-tuning loop; *pretrained* saw the same meta-train "
            "tasks, pooled, with plain supervised regression. Their tuned lr was picked among "
            f"{', '.join(f'{lr:g}' for lr in BASELINE_LRS)} on 600 fixed **val** tasks (K=5, 10 steps).",
            "",
            "| model | meta-training | adaptation at test | K=5, 0 steps | K=5, 1 step | K=5, 10 steps "
            "| K=10, 10 steps | train time |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in reg:
            s = row.scores
            lines.append(
                f"| {row.label} | {row.training} | {row.adaptation} | {s['k5_0'].mse()} | {s['k5_1'].mse()} "
                f"| **{s['k5_10'].mse()}** | {s['k10_10'].mse()} | {row.seconds:.0f} s |"
            )
        lines += [
            "",
            "Mean query MSE at K=5 after each adaptation step (same tasks, same step sizes as above):",
            "",
            "| model | " + " | ".join(str(i) for i in range(TEST_STEPS + 1)) + " |",
            "|---|" + "---|" * (TEST_STEPS + 1),
        ]
        for row in reg:
            lines.append(
                f"| {row.label} ({row.adaptation}) | " + " | ".join(f"{v:.3f}" for v in row.curve) + " |"
            )
        lines.append("")
        notes = []
        if "reptile" in by_key:
            notes.append(
                "With 1 inner step, Reptile's update is a rescaled gradient of the pooled loss: it is joint "
                "training (Nichol et al. 2018, section 5), hence the extra row with 5 inner steps."
            )
        if "anil" in by_key or "metasgd" in by_key:
            notes.append(
                "ANIL and Meta-SGD are meta-trained for 1 inner step, and nothing stops them from making "
                "that one step large: ANIL's features grow until lr 0.01 times the largest curvature of "
                "a task's head loss exceeds 2 on some tasks (gradient descent on a quadratic then "
                "diverges), and Meta-SGD learns rates that overshoot after step 1. Their means after 10 "
                "steps are dominated by those tasks; the per-step table shows where each is best."
            )
        if "mnn_oracle" in by_key:
            notes.append(
                "MNN on sinusoid conditions its hypernetwork on the family's task description (the true "
                "amplitude and phase) when the family has one: that row is Finn et al.'s *oracle*, not a "
                "few-shot learner. The set-encoder row hides the description, so MNN reads the K shots."
            )
        lines += [f"- {n}" for n in notes] + [""]
    if glyphs:
        lines += glyph_markdown(budget, glyphs)
    if omniglot:
        lines += omniglot_markdown(omniglot, args.threads)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 5 minutes on 2 cores")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--suite", choices=("all", "sinusoid", "glyphs", "omniglot"), default="all")
    parser.add_argument(
        "--omniglot-level",
        action="store_true",
        help="only the Omniglot-level glyph rows (--suite omniglot; with --quick, 20 iterations each)",
    )
    parser.add_argument(
        "--omniglot-ablations",
        action="store_true",
        help="only ProtoNets' recipe with one choice undone at a time",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed of the Omniglot-level and ablation runs (default 0)",
    )
    parser.add_argument(
        "--recipes",
        default=None,
        help="only these Omniglot-level recipes, by key (e.g. maml or protonet,maml)",
    )
    parser.add_argument(
        "--markdown", default=None, help="write the tables here (default: docs/quality.md for a full run)"
    )
    parser.add_argument("--workdir", default=None, help="checkpoint folder (default: a temporary one)")
    parser.add_argument(
        "--task-pool-curve",
        action="store_true",
        help="only the test error of MAML and the MNN by number of training tasks (_task_pool_curve.py)",
    )
    parser.add_argument("--pool-iterations", type=int, default=3000, help="iterations per task-pool run")
    parser.add_argument(
        "--pool-learners", default=DEFAULT_POOL_LEARNERS, help="task-pool learners (also mnn_description)"
    )
    args = parser.parse_args(argv)
    if args.task_pool_curve:
        with tempfile.TemporaryDirectory(prefix="metaweb-pools-") as tmp:
            return pool_curve(args, Path(args.workdir) if args.workdir else Path(tmp))

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    budget = QUICK if args.quick else FULL
    recipes = OMNIGLOT_ABLATIONS if args.omniglot_ablations else OMNIGLOT_LEVEL
    if args.recipes:
        wanted = args.recipes.split(",")
        unknown = sorted(set(wanted) - {recipe.key for recipe in recipes})
        if unknown:
            parser.error(
                f"--recipes: no recipe {', '.join(unknown)} (have {', '.join(r.key for r in recipes)})"
            )
        recipes = tuple(recipe for recipe in recipes if recipe.key in wanted)
    if args.omniglot_level or args.omniglot_ablations:
        args.suite = "omniglot"
    default_md = "docs/quality-omniglot.md" if args.suite == "omniglot" else "docs/quality.md"
    if args.omniglot_ablations:
        default_md = "docs/quality-omniglot-ablations.md"
    if args.suite == "omniglot" and (args.seed or args.recipes):  # keep the seed-0 tables of record
        default_md = default_md.replace(".md", f"-seed{args.seed}-{'-'.join(r.key for r in recipes)}.md")
    markdown_path = args.markdown if args.markdown is not None else ("" if args.quick else default_md)
    what = "Omniglot-level glyph rows" if args.suite == "omniglot" else f"{budget.describe()}"
    log(f"quality, {budget.name} budget, {torch.get_num_threads()} torch thread(s); {what}")
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="metaweb-quality-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        reg: list[RegressionRow] = []
        picked: dict[str, Any] = {}
        glyphs: list[GlyphRow] = []
        omniglot: list[OmniglotRow] = []
        if args.suite in ("all", "sinusoid"):
            reg, picked = run_sinusoid(budget.sinusoid, workdir)
        if args.suite in ("all", "glyphs"):
            glyphs = run_glyphs(budget, workdir, args.threads)
        if args.suite == "omniglot":
            omniglot = run_omniglot_level(
                workdir, args.threads, OMNIGLOT_QUICK_ITERATIONS if args.quick else None, recipes, args.seed
            )
    wall = time.perf_counter() - started
    rss = peak_rss_mb()

    text = markdown(budget, args, reg, picked, glyphs, omniglot, wall, rss)
    print("\n" + text, flush=True)
    if markdown_path:
        path = ROOT / markdown_path if not Path(markdown_path).is_absolute() else Path(markdown_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        log(f"wrote {path}")

    by_key = {row.key: row for row in reg}
    glyph_rows = {row.label: row for row in glyphs}
    omni = {row.recipe.key: row for row in omniglot}

    def mse(key: str, cell: str = "k5_10") -> float:
        return by_key[key].scores[cell].mean if key in by_key else math.nan

    def acc(label: str, shots: int, steps: int) -> float:
        row = glyph_rows.get(label)
        return row.scores[(shots, steps)].mean if row and (shots, steps) in row.scores else math.nan

    maml, pre, scr = mse("maml"), mse("pretrained"), mse("scratch")
    if reg:
        verdict = (
            "far below"
            if maml * 3 < min(pre, scr, mse("pretrained_tuned"), mse("scratch_tuned"))
            else "NOT far below"
        )
        log(
            f"check: MAML K=5 after {TEST_STEPS} steps {maml:.3f} is {verdict} pretrained {pre:.3f} "
            f"(tuned lr: {mse('pretrained_tuned'):.3f}) and scratch {scr:.3f} "
            f"(tuned lr: {mse('scratch_tuned'):.3f})"
        )
    ok = rss < RSS_LIMIT_MB
    log(
        f"peak RSS {rss:.0f} MB (self + children), limit {RSS_LIMIT_MB:.0f} MB: "
        f"{'ok' if ok else 'EXCEEDED'}; wall {wall:.0f}s"
    )
    fields: dict[str, float] = {
        "maml_k5_10step_mse": maml,
        "pretrained_k5_10step_mse": pre,
        "scratch_k5_10step_mse": scr,
        # The Omniglot-level rows' figures when they ran, else the budget's.
        "protonet_5w1s_acc": omni["protonet"].test.mean if "protonet" in omni else acc("ProtoNets", 1, 0),
        "peak_rss_mb": rss,
        "maml_k5_0step_mse": mse("maml", "k5_0"),
        "maml_k5_1step_mse": mse("maml", "k5_1"),
        "pretrained_tuned_k5_10step_mse": mse("pretrained_tuned"),
        "scratch_tuned_k5_10step_mse": mse("scratch_tuned"),
        "fomaml_k5_10step_mse": mse("fomaml"),
        "reptile5_k5_10step_mse": mse("reptile5"),
        "metasgd_k5_1step_mse": mse("metasgd", "k5_1"),
        "anil_k5_10step_mse": mse("anil"),
        "mnn_k5_10step_mse": mse("mnn"),
        "protonet_5w5s_acc": acc("ProtoNets", 5, 0),
        "maml_5w1s_acc": omni["maml"].test.mean if "maml" in omni else acc("MAML", 1, 1),
        "maml_5w5s_acc": acc("MAML", 5, 1),
        "anil_5w1s_acc": acc("ANIL", 1, 1),
        "anil_5w5s_acc": acc("ANIL", 5, 1),
        "wall_s": wall,
    }
    for key, row in omni.items():
        fields[f"{key}_5w1s_acc"] = row.test.mean
        fields[f"{key}_5w1s_ci95"] = row.test.ci
        fields[f"{key}_5w1s_train_s"] = row.seconds
    print("RESULT " + " ".join(f"{k}={v:.4g}" for k, v in fields.items()), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
