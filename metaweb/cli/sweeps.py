"""``metaweb sweeps ...``: launch, list, show (the leaderboard and the seeds pooled),
stop."""

from __future__ import annotations

import argparse
import itertools
from typing import Any

from metaweb.cli import output
from metaweb.cli.main import OK, UsageError, client_for, read_json_file
from metaweb.client.types import SweepDetail

SWEEP_COLUMNS = ("id", "status", "strategy", "planned", "waiting", "metric", "name", "created")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    sweeps = sub.add_parser("sweeps", help="sweeps over settings").add_subparsers(
        dest="sweeps_command", required=True
    )
    launch = sweeps.add_parser("launch", parents=[common], help="launch a sweep")
    launch.add_argument("--taskset", required=True, help="the task set's name (or id)")
    launch.add_argument(
        "--dim",
        action="append",
        required=True,
        metavar="SETTING=VALUES",
        help="a dimension, as on the launch form: inner_lr=0.01,0.1 or meta_lr='1e-4..1e-1 log' (repeat it)",
    )
    launch.add_argument("--config", help="a JSON file: what every run shares (TrainConfig, no family)")
    launch.add_argument("--strategy", choices=("grid", "random", "asha", "bayes"), default="grid")
    launch.add_argument("--samples", type=int, default=0, help="runs of a random, ASHA or bayes sweep")
    launch.add_argument("--seed", type=int, default=0, help="the sampling seed (random, ASHA, bayes)")
    launch.add_argument("--metric", default="val_loss", help="what ranks the runs (default val_loss)")
    launch.add_argument("--max-concurrent", type=int, default=1, help="runs queued or running at once")
    launch.add_argument("--experiment", default="cli", help="the experiment's name (created if missing)")
    launch.add_argument("--queue", default="cpu", help="cpu or gpu")
    launch.add_argument("--name", default="", help="the sweep's name (default: made from its settings)")
    launch.add_argument(
        "--early-stop", action="store_true", help="stop poor runs at ASHA's rungs (always on for asha)"
    )
    launch.set_defaults(func=cmd_launch)
    ls = sweeps.add_parser("ls", parents=[common], help="the team's sweeps, newest first")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    ls.set_defaults(func=cmd_ls)
    for name, func, text in (
        ("show", cmd_show, "a sweep's leaderboard, its runs pooled across seeds, which settings matter"),
        ("stop", cmd_stop, "start no more runs and cancel the sweep's queued and running ones"),
    ):
        command = sweeps.add_parser(name, parents=[common], help=text)
        command.add_argument("id", type=int)
        command.set_defaults(func=func)


def _dimensions(texts: list[str]) -> dict[str, str]:
    dimensions = {}
    for text in texts:
        setting, sep, values = text.partition("=")
        if not sep or not setting.strip() or not values.strip():
            raise UsageError(f"--dim {text!r}: give SETTING=VALUES, e.g. inner_lr=0.01,0.1")
        dimensions[setting.strip()] = values.strip()
    return dimensions


def cmd_launch(args: argparse.Namespace) -> int:
    dimensions = _dimensions(args.dim)
    config = read_json_file(args.config, "config") if args.config else {}
    with client_for(args) as client:
        sweep = client.sweep_launch(
            experiment=args.experiment,
            taskset=args.taskset,
            dimensions=dimensions,
            strategy=args.strategy,
            config=config,
            samples=args.samples,
            seed=args.seed,
            metric=args.metric,
            max_concurrent=args.max_concurrent,
            queue=args.queue,
            name=args.name,
            early_stop=args.early_stop,
        )
        url = f"{client.url}/t/{client.team}/sweeps/{sweep['id']}/"
    if args.json:
        output.emit_json(sweep)
    else:
        print(f"Sweep {sweep['id']} ({sweep['name']}): {sweep['planned']} runs, {url}")
    return OK


def cmd_ls(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        found = list(itertools.islice(client.iter_sweeps(), max(1, args.limit)))
    if args.json:
        output.emit_json(found)
    elif not found:
        print("No sweeps yet.")
    else:
        rows = [[s[c if c != "created" else "created_at"] for c in SWEEP_COLUMNS] for s in found]  # type: ignore[literal-required]
        output.table(SWEEP_COLUMNS, rows)
    return OK


def _show(sweep: SweepDetail) -> None:
    better = "higher" if sweep["maximize"] else "lower"
    print(
        f"Sweep {sweep['id']} ({sweep['name']}): {sweep['status']}, {sweep['strategy']}; ranked by "
        f"{sweep['metric']} ({better} is better); {sweep['waiting']} configs waiting."
    )
    if sweep["message"]:
        print(sweep["message"])
    keys = list(sweep["dimensions"])
    rows = [
        [row["rank"], row["run_id"], row["status"], row["value"], *(row["point"].get(k) for k in keys)]
        for row in sweep["leaderboard"]
    ]
    print()
    output.table(("rank", "run", "status", sweep["metric"], *keys), rows)
    if sweep["across_seeds"]:
        labels = list(sweep["across_seeds"][0]["label"])
        pooled = [
            [
                ",".join(str(i) for i in group["run_ids"]),
                *(group["label"].get(k) for k in labels),
                group["n"],
                group["mean"],
                group["half_width"],
            ]
            for group in sweep["across_seeds"]
        ]
        print(f"\nAcross seeds: the mean of {sweep['metric']}'s final value and its 95% CI half-width")
        output.table(("runs", *labels, "n", "mean", "ci95"), pooled)
    if any(item["n"] for item in sweep["importance"]):
        print(f"\nWhich settings go with {sweep['metric']} (succeeded runs; strongest first)")
        columns = ("setting", "test", "n", "effect", "p", "forest", "reading")
        rows = [
            [_percent(item[c]) if c == "forest" else item[c] for c in columns] for item in sweep["importance"]
        ]  # type: ignore[literal-required]
        output.table(columns, rows)
        r2 = next((item["forest_r2"] for item in sweep["importance"] if item["forest_r2"] is not None), None)
        if r2 is not None:
            print(f"forest: each setting's share of a random forest's importance; out-of-bag R² {r2:.2f}")


def _percent(share: float | None) -> str | None:
    return None if share is None else f"{share:.0%}"


def cmd_show(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        sweep = client.sweep(args.id)
    if args.json:
        output.emit_json(sweep)
    else:
        _show(sweep)
    return OK


def cmd_stop(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        sweep = client.sweep_stop(args.id)
    if args.json:
        output.emit_json(sweep)
    else:
        print(f"Sweep {sweep['id']} {sweep['status']}: {sweep['message']}")
    return OK
