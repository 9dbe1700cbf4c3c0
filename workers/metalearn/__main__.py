"""Command line: ``python -m workers.metalearn {train,evaluate,adapt}``.

    python -m workers.metalearn train --config run.json --out runs/sine [--data table.csv] \\
        [--set mnn_condition=support --set train_tasks=1000]
    python -m workers.metalearn evaluate --checkpoint runs/sine --split test [--count 600] \\
        [--steps 10] [--shots 5]
    python -m workers.metalearn adapt --checkpoint runs/sine --support support.csv \\
        [--query query.csv] --steps 10 --lr 0.01 --out runs/sine-task

Metrics go to ``DIR/metrics.jsonl`` as JSON lines; progress to stderr (a bar on a
terminal, plain lines otherwise). Exit codes: 0 done (or stopped by Ctrl-C after a
checkpoint), 1 training diverged, 2 bad input (config, data, checkpoint, files).
Config errors are found before torch is imported, so they are quick.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from workers.metalearn.config import ConfigError, TrainConfig, parse_config
from workers.metalearn.types import SPLITS, CheckpointError, DataError, DivergenceError
from workers.metalearn.uploads import check_class_count, class_order, label_indices, read_points

EXIT_OK, EXIT_DIVERGED, EXIT_BAD_INPUT = 0, 1, 2
THREADS_HELP = "torch CPU threads (default: the CPUs this process may use, or $METAWEB_TORCH_THREADS)"


class CliError(Exception):
    """Bad input found by the command line itself (a file, a flag)."""


# ----- progress and metrics ------------------------------------------------------------------
class Progress:
    """A one-line bar on a terminal, a plain line every ~5% otherwise."""

    def __init__(self, total: int, stream: IO[str] = sys.stderr, start: int = 0):
        self.total = max(1, total)
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.perf_counter()
        self.first = start
        self.last_draw = 0.0
        self.every = max(1, self.total // 20)
        self.info: dict[str, float] = {}

    def _text(self, step: int) -> str:
        elapsed = time.perf_counter() - self.started
        rate = (step - self.first) / elapsed if elapsed > 0 else 0.0
        fields = " ".join(f"{k} {v:.4g}" for k, v in self.info.items())
        return f"{step}/{self.total} {fields} {rate:.1f} it/s"

    def update(self, step: int, info: dict[str, float], force: bool = False) -> None:
        self.info.update(info)
        if self.tty:
            now = time.perf_counter()
            if force or now - self.last_draw > 0.1 or step == self.total:
                width = 24
                filled = int(width * step / self.total)
                bar = "#" * filled + "." * (width - filled)
                self.stream.write(f"\r[{bar}] {self._text(step)}\033[K")
                self.stream.flush()
                self.last_draw = now
        elif force or step % self.every == 0 or step == self.total:
            self.stream.write(self._text(step) + "\n")
            self.stream.flush()

    def note(self, line: str) -> None:
        """A line of its own, under the bar on a terminal (redrawn at the next update)."""
        self.stream.write(("\r\033[K" if self.tty else "") + line + "\n")
        self.stream.flush()
        self.last_draw = 0.0

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class CliReporter:
    """The training loop's :class:`~workers.metalearn.types.Reporter` for the CLI:
    JSON lines to ``metrics.jsonl``, progress to stderr, Ctrl-C to a clean stop."""

    def __init__(self, metrics_file: IO[str], progress: Progress):
        self.metrics_file = metrics_file
        self.progress = progress
        self.stop_requested = False

    def _write(self, record: dict[str, Any]) -> None:
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self._write({"event": "step", "step": step, **metrics})
        shown = {k: v for k, v in metrics.items() if k in ("loss", "accuracy")}
        self.progress.update(step, shown)

    def on_warning(self, step: int, kind: str, message: str) -> None:
        self._write({"event": "warning", "step": step, "kind": kind, "message": message})
        self.progress.note(f"warning: {message}")

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self._write({"event": "eval", "step": step, **metrics})
        self.progress.update(step, metrics, force=not self.progress.tty)

    def should_stop(self) -> bool:
        return self.stop_requested

    def before_checkpoint(self, step: int) -> None:
        return None  # every line is flushed as it is written

    def on_checkpoint(self, step: int) -> None:
        return None

    def request_stop(self, *_: Any) -> None:
        if self.stop_requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stop_requested = True
        sys.stderr.write("\nstopping after this step (Ctrl-C again to abort)...\n")


# ----- files ---------------------------------------------------------------------------------
def _read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise CliError(f"{path}: not valid JSON ({exc})") from None


def read_table(
    path: str, info: Any, *, need_target: bool, field: str, classes: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """Inputs ``[N, input_size]``, targets ``[N]`` (or None) and, when classifying,
    the class names in label order, from a CSV file read by the rule of
    :mod:`workers.metalearn.uploads.points` (a header column ``y``, ``label`` or
    ``target`` wherever it is, else the last column). ``classes`` given (a query
    set): its labels must be among them."""
    file = Path(path)
    if not file.is_file():
        raise CliError(f"{path}: no such file")
    try:
        points = read_points(
            file,
            input_size=math.prod(info.input_shape),
            classification=info.classification,
            need_target=need_target,
            name=file.name,
        )
        if points.labels is None:
            return points.x, points.y, classes
        if classes is None:
            classes = class_order(points.labels)
            check_class_count(classes, info.ways)
        labels = np.asarray(label_indices(points.labels, classes, points.where), dtype=np.int64)
    except DataError as error:
        raise DataError(f"{field}: {error.field}", error.message) from None
    return points.x, labels, classes


# ----- commands ------------------------------------------------------------------------------
def _make_family(config: TrainConfig, data: str | None) -> Any:
    from workers.metalearn.families import make_family

    return make_family(config.family, data_path=data if data is not None else config.family.data)


def _with_settings(data: Any, settings: Sequence[str]) -> Any:
    """The config file's object with ``--set key=value`` applied (the value read as
    JSON when it parses, e.g. ``train_tasks=100``, ``mnn_condition=support``)."""
    if not settings:
        return data
    if not isinstance(data, dict):
        raise CliError("--config: must hold a JSON object")
    data = dict(data)
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--set: give key=value, not {item!r}")
        try:
            data[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            data[key.strip()] = text
    return data


def _condition_note(config: TrainConfig, family: Any) -> str:
    """What an MNN reads, for the progress stream ('' for the other algorithms)."""
    from workers.metalearn.specs import SPECS

    condition = SPECS[config.algorithm].condition(family.desc_dim, config.mnn_condition)
    return f"{config.algorithm} conditioned on the {condition}\n" if config.algorithm == "mnn" else ""


def cmd_train(args: argparse.Namespace) -> int:
    config = parse_config(_with_settings(_read_json(args.config), args.set or []))
    family = _make_family(config, args.data)
    _prepare(args.threads)
    from workers.metalearn.api import meta_train
    from workers.metalearn.checkpoint import latest_checkpoint, load_checkpoint

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    found = latest_checkpoint(out)
    start = load_checkpoint(found).step if found is not None else 0
    if start:
        sys.stderr.write(f"resuming from step {start} in {out}\n")
    sys.stderr.write(_condition_note(config, family))
    progress = Progress(config.iterations, start=start)
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as metrics_file:
        reporter = CliReporter(metrics_file, progress)
        previous = signal.signal(signal.SIGINT, reporter.request_stop)
        try:
            result = meta_train(config, family, reporter, out)
        finally:
            signal.signal(signal.SIGINT, previous)
            progress.close()
    sys.stderr.write(f"{result.compile}\n")
    summary = {"status": result.status, "step": result.step, "checkpoint": str(out), **result.metrics}
    print(json.dumps(summary))
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from workers.metalearn.api import evaluate
    from workers.metalearn.checkpoint import load_checkpoint

    family = None
    if args.data is not None:
        family = _make_family(load_checkpoint(args.checkpoint).config, args.data)
    result = evaluate(
        args.checkpoint,
        split=args.split,
        count=args.count,
        steps=args.steps,
        lr=args.lr,
        family=family,
        batch_size=args.batch_size,
        shots=args.shots,
        query=args.query,
    )
    summary = {
        "split": args.split,
        "metric": result.metric,
        "mean": result.mean,
        "ci95": result.ci95,
        "tasks": int(result.scores.size),
        "steps": result.steps,
        "query_loss_by_step": [float(v) for v in result.losses.mean(axis=0)],
    }
    sys.stderr.write(
        f"{args.split} {result.metric}: {result.mean:.4f} ± {result.ci95:.4f} "
        f"({result.scores.size} tasks, {result.steps} steps)\n"
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        detail = {
            **summary,
            "task_ids": result.task_ids.tolist(),
            "scores": result.scores.tolist(),
            "losses": result.losses.tolist(),
        }
        (out / "eval.json").write_text(json.dumps(detail), encoding="utf-8")
    print(json.dumps(summary))
    return EXIT_OK


def cmd_adapt(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from workers.metalearn.api import adapt
    from workers.metalearn.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    info = ckpt.family_info
    xs, ys, classes = read_table(args.support, info, need_target=True, field="support")
    query: Any = None
    if args.query:
        xq, yq, _ = read_table(args.query, info, need_target=False, field="query", classes=classes)
        query = (xq, yq)
    desc = None
    if args.desc is not None:
        try:
            desc = [float(v) for v in args.desc.split(",")]
        except ValueError:
            raise DataError("desc", "give comma-separated numbers") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as metrics_file:

        def on_step(step: int, entry: dict[str, float]) -> None:
            metrics_file.write(json.dumps({"event": "adapt", "step": step, **entry}) + "\n")
            shown = " ".join(f"{k} {v:.4g}" for k, v in entry.items())
            sys.stderr.write(f"step {step}: {shown}\n")

        result = adapt(ckpt.path, (xs, ys), query, steps=args.steps, lr=args.lr, on_step=on_step, desc=desc)
    save_file(result.weights, str(out / "weights.safetensors"), metadata={"format": "pt", **result.metadata})
    if query is not None:
        with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            if info.classification:
                assert classes is not None
                ways = result.predictions.shape[1]
                writer.writerow(["label", "label_before", *[f"logit_{k}" for k in range(ways)]])
                for after, before in zip(result.predictions, result.predictions_before, strict=True):
                    named = [classes[int(after.argmax())], classes[int(before.argmax())]]
                    writer.writerow([*named, *[f"{v:.6g}" for v in after]])
            else:
                writer.writerow(["y", "y_before"])
                for after, before in zip(result.predictions, result.predictions_before, strict=True):
                    writer.writerow([f"{after[0]:.6g}", f"{before[0]:.6g}"])
    summary = {
        "steps": len(result.curve) - 1,
        "before": result.curve[0],
        "after": result.curve[-1],
        "out": str(out),
    }
    (out / "result.json").write_text(
        json.dumps({**summary, "curve": result.curve}, indent=1), encoding="utf-8"
    )
    print(json.dumps(summary))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.metalearn", description="MetaWeb's meta-learning engine."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="meta-train (resumes from --out's latest checkpoint)")
    train.add_argument("--config", required=True, help="run config, JSON (see workers/metalearn/config.py)")
    train.add_argument("--out", required=True, help="run folder: checkpoints and metrics.jsonl")
    train.add_argument("--data", help="data file for families that read one (table)")
    train.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config setting, e.g. --set mnn_condition=support --set train_tasks=100",
    )
    train.add_argument("--threads", type=int, help=THREADS_HELP)
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="the standard protocol on a split's fixed tasks")
    ev.add_argument("--checkpoint", required=True, help="run folder or step-NNNNNN folder")
    ev.add_argument("--split", default="test", choices=SPLITS)
    ev.add_argument("--count", type=int, default=600, help="fixed tasks to evaluate (default 600)")
    ev.add_argument("--steps", type=int, help="inner steps (default: the run's)")
    ev.add_argument("--lr", type=float, help="inner learning rate (default: the run's)")
    ev.add_argument("--shots", type=int, help="support examples per task/class (default: the run's)")
    ev.add_argument("--query", type=int, help="query examples per task/class (default: the run's)")
    ev.add_argument(
        "--batch-size", type=int, help="tasks per vmap call (default: as many as fit, at most 100)"
    )
    ev.add_argument("--data", help="data file for families that read one (table)")
    ev.add_argument("--out", help="folder for eval.json (per-task scores and losses)")
    ev.add_argument("--threads", type=int, help=THREADS_HELP)
    ev.set_defaults(func=cmd_evaluate)

    ad = sub.add_parser("adapt", help="adapt to one new task given as CSV")
    ad.add_argument("--checkpoint", required=True, help="run folder or step-NNNNNN folder")
    ad.add_argument(
        "--support",
        required=True,
        help="CSV: the input columns, then the target (or a header naming it y, label or target)",
    )
    ad.add_argument("--query", help="CSV: the same columns; the target may be left out")
    ad.add_argument("--desc", help="task description, comma-separated (models conditioned on it)")
    ad.add_argument("--steps", type=int, help="inner steps (default: the run's)")
    ad.add_argument("--lr", type=float, help="inner learning rate (default: the run's)")
    ad.add_argument(
        "--out", required=True, help="folder for weights.safetensors, metrics.jsonl, predictions.csv"
    )
    ad.add_argument("--threads", type=int, help=THREADS_HELP)
    ad.set_defaults(func=cmd_adapt)
    return parser


def _prepare(threads: int | None) -> None:
    """The process setup every training process gets (``workers.metalearn.runtime``:
    allocator, threads, compile cache in ``$METAWEB_DATA_DIR/compile-cache``, which is
    ``var/compile-cache`` by default, shared with ``make run``)."""
    if threads is not None and threads < 1:
        raise CliError("--threads: must be at least 1")
    from workers.metalearn.runtime import prepare_process, torch_threads

    try:
        count = threads if threads is not None else torch_threads()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    data_dir = Path(os.environ.get("METAWEB_DATA_DIR") or "var")
    done = prepare_process(threads=count, compile_cache=data_dir / "compile-cache")
    import torch

    torch.set_num_threads(threads if threads is not None else done.threads)  # --threads wins
    allocator = "tuned (workers.metalearn.runtime)" if done.allocator else "unchanged (not glibc)"
    sys.stderr.write(
        f"process: {torch.get_num_threads()} torch thread(s), allocator {allocator}, "
        f"compile cache {done.compile_cache}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command != "train":  # train prepares once the config has been validated
            _prepare(args.threads)
        return int(args.func(args))
    except ConfigError as exc:
        for field, message in exc.errors.items():
            sys.stderr.write(f"error: config {field}: {message}\n")
        return EXIT_BAD_INPUT
    except (DataError, CheckpointError, CliError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    except DivergenceError as exc:
        sys.stderr.write(f"error: {exc}; the last good checkpoint is kept\n")
        return EXIT_DIVERGED


if __name__ == "__main__":
    sys.exit(main())
