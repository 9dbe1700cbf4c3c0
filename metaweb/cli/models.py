"""``metaweb models ...``: list, show, pull (weights, checked against the registry's
sha256), push (register your own safetensors), alias, compare."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from metaweb.cli import output
from metaweb.cli.main import OK, client_for, read_json_file
from metaweb.client.errors import ApiError


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    models = sub.add_parser("models", help="meta-models in the registry").add_subparsers(
        dest="models_command", required=True
    )
    ls = models.add_parser("ls", parents=[common], help="list meta-models, newest first")
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(func=cmd_ls)
    show = models.add_parser("show", parents=[common], help="a meta-model's card")
    show.add_argument("model", help="name@alias, name:version, name or id")
    show.set_defaults(func=cmd_show)
    pull = models.add_parser("pull", parents=[common], help="download a meta-model's weights")
    pull.add_argument("model", help="name@alias, name:version, name or id")
    pull.add_argument("-o", "--output", help="the file to write (default <name>-v<version>.safetensors)")
    pull.set_defaults(func=cmd_pull)
    push = models.add_parser("push", parents=[common], help="register your own safetensors weights")
    push.add_argument("file", help="a .safetensors file")
    push.add_argument("--config", required=True, help="a JSON file: the TrainConfig the weights fit")
    push.add_argument("--taskset", required=True, help="the task set's name or id")
    push.add_argument("--name", help="the model's name (default: the file's name)")
    push.add_argument("--experiment", default="cli", help="the experiment's name (created if missing)")
    push.add_argument("--description", default="")
    push.set_defaults(func=cmd_push)
    alias = models.add_parser("alias", parents=[common], help="point name@alias at a version")
    alias.add_argument("model", help="name:version or id")
    alias.add_argument("alias", help="e.g. candidate or production")
    alias.set_defaults(func=cmd_alias)
    compare = models.add_parser("compare", parents=[common], help="compare 2-6 models or adaptations")
    compare.add_argument("models", nargs="*", help="meta-models (their 600-task evaluations)")
    compare.add_argument("--adaptation", type=int, action="append", default=[], help="an adaptation run id")
    compare.set_defaults(func=cmd_compare)


def cmd_ls(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        rows = client.models(limit=max(1, min(args.limit, 200)))["results"]
    if args.json:
        output.emit_json(rows)
    elif not rows:
        print("No meta-models yet.")
    else:
        output.table(
            ("id", "name", "version", "algorithm", "source", "created"),
            [[m["id"], m["name"], m["version"], m["algorithm"], m["source"], m["created_at"]] for m in rows],
        )
    return OK


def cmd_show(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        found = client.model_resolve(args.model)
        detail = client.model(found["id"])
    if args.json:
        output.emit_json(detail)
        return OK
    card = detail["card"]
    output.pairs(
        [
            ("id", card["id"]),
            ("model", f"{card['name']} v{card['version']}"),
            ("algorithm", card["algorithm"]),
            ("source", card["source"]),
            ("aliases", ", ".join(card.get("aliases") or []) or "-"),
            ("sha256", card["weights"]["sha256"]),
            ("bytes", card["weights"]["bytes"]),
            ("adaptations", len(detail["adaptations"])),
            ("created", f"{card['created_at']} by {card['created_by']}"),
        ]
    )
    return OK


def cmd_pull(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        found = client.model_resolve(args.model)
        target = Path(args.output or f"{found['name']}-v{found['version']}.safetensors")
        sha256 = client.model_weights(found["id"], target)
    if sha256 != found["weights_sha256"]:
        os.unlink(target)
        raise ApiError(
            0, f"The download's sha256 {sha256} is not the registry's {found['weights_sha256']}; removed it."
        )
    result = {
        "id": found["id"],
        "name": found["name"],
        "version": found["version"],
        "file": str(target),
        "sha256": sha256,
    }
    if args.json:
        output.emit_json(result)
    else:
        print(f"Saved {found['name']} v{found['version']} to {target} (sha256 {sha256}, checked).")
    return OK


def cmd_push(args: argparse.Namespace) -> int:
    run_config = read_json_file(args.config, "config")
    name = args.name or Path(args.file).name.split(".")[0]
    with client_for(args) as client:
        model = client.model_upload(
            args.file,
            name=name,
            experiment=args.experiment,
            taskset=args.taskset,
            config=run_config,
            description=args.description,
        )
    if args.json:
        output.emit_json(model)
    else:
        sha = model["weights_sha256"]
        print(f"Registered {model['name']} v{model['version']} (id {model['id']}, sha256 {sha}).")
    return OK


def cmd_alias(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        found = client.model_resolve(args.model)
        moved = client.model_alias(found["id"], args.alias)
    if args.json:
        output.emit_json(moved)
    else:
        print(f"{moved['model_name']}@{moved['alias']} now points at {found['name']} v{found['version']}.")
    return OK


def cmd_compare(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        ids = [client.model_resolve(ref)["id"] for ref in args.models]
        result = client.compare(adaptations=args.adaptation, models=ids)
    if args.json:
        output.emit_json(result)
        return OK
    print(f"{result['metric']} over {result['n_tasks']} task(s), {result['kind']}:")
    rows = []
    for item in result["items"]:
        paired = item.get("paired") or {}
        rows.append(
            [
                item["name"],
                item["version"],
                item["picked"],
                item["before"],
                item["after"],
                paired.get("p_value"),
                item["outcome"] or "reference",
            ]
        )
    output.table(("model", "version", "picked", "before", "after", "p", "outcome"), rows)
    for note in result.get("notes") or []:
        print(f"note: {note}")
    return OK
