"""``metaweb adapt MODEL``: adapt a meta-model to your task (support and query CSVs),
to one of its meta-test tasks, or to the 600-task batch; ``--follow`` waits and
prints the loss before and after adapting."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from metaweb.cli import output
from metaweb.cli.main import OK, RUN_EXIT, UsageError, client_for
from metaweb.client.api import Client
from metaweb.client.types import Adaptation


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    adapt = sub.add_parser("adapt", parents=[common], help="adapt a meta-model to a task")
    adapt.add_argument("model", help="name@alias, name:version, name or id")
    adapt.add_argument("--support", help="a CSV of support points: inputs, then the target")
    adapt.add_argument("--query", help="a CSV of held-out points to score (with --support)")
    adapt.add_argument("--task-index", type=int, help="one of the meta-test tasks (0..599) instead")
    adapt.add_argument("--batch", action="store_true", help="the 600-task batch evaluation instead")
    adapt.add_argument("--steps", type=int, help="inner steps")
    adapt.add_argument("--lr", type=float, help="inner learning rate")
    adapt.add_argument("--queue", default="cpu")
    adapt.add_argument("--follow", action="store_true", help="wait; print before/after; exit 0/1/2")
    adapt.set_defaults(func=cmd_adapt)


def _launch(client: Client, model_id: int, args: argparse.Namespace) -> Adaptation:
    chosen = sum([args.support is not None, args.task_index is not None, args.batch])
    if chosen != 1:
        raise UsageError("choose one of --support CSV, --task-index N or --batch")
    if args.query and not args.support:
        raise UsageError("--query goes with --support")
    if args.support:
        return client.adaptation_csv(
            model_id, args.support, query=args.query, steps=args.steps, lr=args.lr, queue=args.queue
        )
    options: dict[str, Any] = {"queue": args.queue}
    if args.steps is not None:
        options["steps"] = args.steps
    if args.lr is not None:
        options["lr"] = args.lr
    if args.batch:
        return client.adaptation_launch(model_id, target="batch", **options)
    return client.adaptation_launch(model_id, target="test_task", task_index=args.task_index, **options)


def cmd_adapt(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        model = client.model_resolve(args.model)
        adaptation = _launch(client, model["id"], args)
        run_id = adaptation["run_id"]
        if not args.follow:
            if args.json:
                output.emit_json(adaptation)
            else:
                print(f"Adaptation run {run_id} of {model['name']} v{model['version']} queued.")
            return OK
        if not args.json:
            print(f"Adapting {model['name']} v{model['version']}: run {run_id}.")
        client.follow(run_id, on_update=output.ProgressLine())
        adaptation = client.adaptation(run_id)
    if args.json:
        output.emit_json(adaptation)
    else:
        _print_result(adaptation)
    return RUN_EXIT.get(adaptation["status"], 1)


def _print_result(adaptation: Adaptation) -> None:
    result = adaptation["result"]
    if adaptation["status"] != "succeeded" or result is None:
        sys.stderr.write(
            f"Adaptation run {adaptation['run_id']} {adaptation['status']}: {adaptation['error']}\n"
        )
        return
    ci = f" ± {result['ci95']:.4g}" if result["ci95"] is not None else ""
    print(
        f"{result['metric']} before {_num(result['before'])}, after {_num(result['after'])}{ci} "
        f"({result['n_steps']} steps, {result['n_tasks']} task(s))."
    )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
