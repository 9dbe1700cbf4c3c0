"""``metaweb runs ...``: launch (and follow), list, show, cancel, archive and restore,
tag, untag and note, metrics, follow; files, upload and download (:mod:`.run_files`)."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from typing import Any

from metaweb.cli import output, run_files
from metaweb.cli.main import OK, RUN_EXIT, client_for, read_json_file
from metaweb.client.api import Client
from metaweb.client.errors import ApiError
from metaweb.client.types import Run

RUN_COLUMNS = ("id", "status", "kind", "algorithm", "step", "experiment", "created")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    runs = sub.add_parser("runs", help="meta-training runs").add_subparsers(
        dest="runs_command", required=True
    )
    launch = runs.add_parser("launch", parents=[common], help="queue a meta-training run")
    launch.add_argument("--taskset", required=True, help="the task set's name (or id)")
    launch.add_argument("--config", required=True, help="a JSON file: the run's TrainConfig (no family)")
    launch.add_argument("--experiment", default="cli", help="the experiment's name (created if missing)")
    launch.add_argument("--queue", default="cpu", help="cpu or gpu")
    launch.add_argument(
        "--follow", action="store_true", help="show progress; exit 0/1/2 on success/failure/cancel"
    )
    launch.set_defaults(func=cmd_launch)
    ls = runs.add_parser("ls", parents=[common], help="list runs, newest first")
    ls.add_argument("--query", "-q", default="", help="the run search language, e.g. 'status:running'")
    ls.add_argument("--sort", default="", help="a column, '-' first for descending")
    ls.add_argument("--limit", type=int, default=50, help="at most this many runs (default 50)")
    ls.add_argument(
        "--archived",
        choices=("hide", "only", "include"),
        default="hide",
        help="archived runs: left out (default), only them, or with the others",
    )
    ls.add_argument("--view", default="", help="a saved view's name: the runs it shows, in its order")
    ls.set_defaults(func=cmd_ls)
    views = runs.add_parser("views", parents=[common], help="the team's saved views of the run list")
    views.set_defaults(func=cmd_views)
    for name, func, text in (
        ("archive", cmd_archive, "archive ended runs: lists leave them out"),
        ("restore", cmd_archive, "bring archived runs back to the lists"),
    ):
        command = runs.add_parser(name, parents=[common], help=text)
        command.add_argument("ids", type=int, nargs="+", metavar="id")
        command.set_defaults(func=func, restore=name == "restore")
    tag = runs.add_parser("tag", parents=[common], help="put tags on a run (find them with -q tag:NAME)")
    tag.add_argument("id", type=int)
    tag.add_argument("tags", nargs="+", metavar="tag")
    tag.set_defaults(func=cmd_tag)
    untag = runs.add_parser("untag", parents=[common], help="take a tag off a run")
    untag.add_argument("id", type=int)
    untag.add_argument("tag")
    untag.set_defaults(func=cmd_untag)
    note = runs.add_parser("note", parents=[common], help="replace a run's Markdown note")
    note.add_argument("id", type=int)
    note.add_argument("file", help="a Markdown file, or - for stdin")
    note.set_defaults(func=cmd_note)
    for name, func, text in (
        ("show", cmd_show, "one run"),
        ("cancel", cmd_cancel, "cancel a run"),
        ("follow", cmd_follow, "follow a run until it ends; exit 0/1/2"),
    ):
        command = runs.add_parser(name, parents=[common], help=text)
        command.add_argument("id", type=int)
        command.set_defaults(func=func)
    metrics = runs.add_parser("metrics", parents=[common], help="a run's metrics")
    metrics.add_argument("id", type=int)
    metrics.add_argument("--csv", action="store_true", help="every point as CSV: step,name,value")
    metrics.set_defaults(func=cmd_metrics)
    run_files.add_commands(runs, common)


def _row(run: Run) -> list[Any]:
    step = f"{run['step']}/{run['total_steps']}" if run["total_steps"] else run["step"]
    return [
        run["id"],
        run["status"],
        run["kind"],
        run["algorithm"],
        step,
        run["experiment_id"],
        run["created_at"],
    ]


def follow_and_exit(client: Client, run_id: int, args: argparse.Namespace) -> int:
    """Show the run's progress until it ends; the exit code says how it ended."""
    line = output.ProgressLine()
    run = client.follow(run_id, on_update=line)
    if args.json:
        output.emit_json(run)
    elif run["status"] == "failed":
        sys.stderr.write(f"Run {run['id']} failed: {run['error']}\n")
    else:
        print(f"Run {run['id']} {run['status']}.")
    return RUN_EXIT.get(run["status"], 1)


def cmd_launch(args: argparse.Namespace) -> int:
    run_config = read_json_file(args.config, "config")
    with client_for(args) as client:
        experiment = client.experiment_id(args.experiment, create=True)
        run = client.run_launch(
            experiment=experiment, taskset=args.taskset, config=run_config, queue=args.queue
        )
        if args.follow:
            if not args.json:
                print(f"Run {run['id']} queued on {run['queue']}: {client.url}/runs/{run['id']}/")
            return follow_and_exit(client, run["id"], args)
        if args.json:
            output.emit_json(run)
        else:
            print(f"Run {run['id']} queued on {run['queue']}: {client.url}/runs/{run['id']}/")
    return OK


def cmd_ls(args: argparse.Namespace) -> int:
    limit = max(1, args.limit)
    with client_for(args) as client:
        found: list[Run] = []
        for run in client.iter_runs(q=args.query, sort=args.sort, archived=args.archived, view=args.view):
            found.append(run)
            if len(found) >= limit:
                break
    if args.json:
        output.emit_json(found)
    elif not found:
        print("No runs match." if args.query or args.view or args.archived != "hide" else "No runs yet.")
    else:
        output.table(RUN_COLUMNS, [_row(r) for r in found])
    return OK


def cmd_views(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        found = client.saved_views()
        url = client.url
    if args.json:
        output.emit_json(found)
    elif not found:
        print("No saved views yet: save one from the run list, or with Client.saved_view_create.")
    else:
        rows = [[v["id"], v["name"], v["query"], v["created_by"], url + v["list_url"]] for v in found]
        output.table(("id", "name", "query", "by", "url"), rows)
    return OK


def cmd_show(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        run = client.run(args.id)
    if args.json:
        output.emit_json(run)
        return OK
    items: list[tuple[str, Any]] = [(k, run[k]) for k in ("id", "status", "kind", "algorithm", "queue")]  # type: ignore[literal-required]
    items += [
        ("step", f"{run['step']}/{run['total_steps']}"),
        ("experiment", run["experiment_id"]),
        ("task set", f"{run['taskset_id']} v{run['taskset_version']}"),
        ("seed", run["seed"]),
        ("created", run["created_at"]),
        ("started", run["started_at"]),
        ("finished", run["finished_at"]),
    ]
    if run["error"]:
        items.append(("error", run["error"]))
    if run["tags"]:
        items.append(("tags", ", ".join(run["tags"])))
    metrics = run["summary"].get("metrics") if isinstance(run["summary"].get("metrics"), dict) else {}
    items += [(f"final {name}", value) for name, value in sorted(metrics.items())]
    output.pairs(items)
    return OK


def cmd_cancel(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        run = client.run_cancel(args.id)
    if args.json:
        output.emit_json(run)
    else:
        done = run["status"] == "cancelled"
        print(f"Run {run['id']} {'cancelled' if done else 'will stop at its next step (cancel requested)'}.")
    return OK


def cmd_archive(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        change = client.runs_restore if args.restore else client.runs_archive
        runs = change(args.ids)
    if args.json:
        output.emit_json(runs)
    else:
        numbers = ", ".join(str(run["id"]) for run in runs)
        done = "Restored" if args.restore else "Archived"
        print(f"{done} {len(runs)} run{'s' * (len(runs) != 1)}: {numbers}.")
    return OK


def cmd_tag(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        run = client.run_tag(args.id, args.tags)
    return _tags_shown(run, args)


def cmd_untag(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        run = client.run_untag(args.id, args.tag)
    return _tags_shown(run, args)


def _tags_shown(run: Run, args: argparse.Namespace) -> int:
    if args.json:
        output.emit_json(run)
    else:
        print(f"Run {run['id']} tags: {', '.join(run['tags']) or '(none)'}.")
    return OK


def cmd_note(args: argparse.Namespace) -> int:
    if args.file == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(args.file, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ApiError(0, f"Cannot read the note {args.file}: {exc}.") from None
    with client_for(args) as client:
        run = client.run_note(args.id, text)
    if args.json:
        output.emit_json(run)
    else:
        print(f"Run {run['id']}: note saved ({len(run['note'])} characters).")
    return OK


def cmd_follow(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        return follow_and_exit(client, args.id, args)


def cmd_metrics(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        text = client.run_metrics_csv(args.id)
    if args.csv:
        sys.stdout.write(text)
        return OK
    rows = [(r["name"], int(r["step"]), float(r["value"])) for r in csv.DictReader(io.StringIO(text))]
    if args.json:
        output.emit_json([{"name": n, "step": s, "value": v} for n, s, v in rows])
        return OK
    summary: dict[str, list[Any]] = {}
    for name, step, value in rows:  # ordered by name, then step
        entry = summary.setdefault(name, [name, 0, step, step, value])
        entry[1] += 1
        entry[3], entry[4] = step, value
    if not summary:
        print("No metrics stored yet.")
    else:
        output.table(("metric", "points", "first step", "last step", "last value"), list(summary.values()))
    return OK
