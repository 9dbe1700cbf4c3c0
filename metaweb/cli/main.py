"""The parser, the shared options, login, and the one place errors become a line."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from metaweb.cli import config, output
from metaweb.client.api import Client
from metaweb.client.errors import ApiError

#: Exit codes: done, an error, and (sysexits' EX_USAGE) a usage mistake. ``--follow``
#: exits with RUN_EXIT of the finished run.
OK, ERROR, USAGE = 0, 1, 64
RUN_EXIT = {"succeeded": 0, "failed": 1, "cancelled": 2}


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, not argparse's usage block and exit 2
        raise UsageError(f"{message} (see '{self.prog} --help')")


def client_for(args: argparse.Namespace) -> Client:
    stored = config.load()
    url, token = stored.get("url"), stored.get("token")
    if not url or not token:
        raise ApiError(
            0, "Not logged in: run 'metaweb login --url URL' first (or set METAWEB_URL and METAWEB_TOKEN)."
        )
    return Client(url, token, team=args.team or stored.get("team"))


def read_json_file(path: str, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except OSError as exc:
        raise ApiError(0, f"Cannot read the {what} {path}: {exc.strerror}.") from None
    except ValueError as exc:
        raise ApiError(0, f"The {what} {path} is not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise ApiError(0, f"The {what} {path} must hold a JSON object.")
    return value


def _read_token(args: argparse.Namespace) -> str:
    if args.token:
        return args.token
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return getpass.getpass("API token (Settings, API tokens): ").strip()


def cmd_login(args: argparse.Namespace) -> int:
    token = _read_token(args)
    if not token:
        raise ApiError(0, "No token given: pass --token, pipe it on stdin, or type it at the prompt.")
    client = Client(args.url, token, team=args.team)
    try:
        teams = client.teams()
    finally:
        client.close()
    if not teams:
        raise ApiError(0, "This token belongs to no team you are in.")
    team = args.team or teams[0]["slug"]
    if team not in {t["slug"] for t in teams}:
        raise ApiError(0, f"This token cannot act in team {team!r}.", loc=["team"])
    path = config.save({"url": client.url, "token": token, "team": team})
    role = next(t["role"] for t in teams if t["slug"] == team)
    if args.json:
        output.emit_json({"url": client.url, "team": team, "role": role, "config": str(path)})
    else:
        print(f"Logged in to {client.url}, team {team} ({role}). Saved to {path}.")
    return OK


def build_parser() -> Parser:
    from metaweb.cli import adapt, models, runs, sweeps

    parser = Parser(prog="metaweb", description="MetaWeb from the command line.")
    common = Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for machines")
    common.add_argument("--team", help="the team's short name (default: the login's team)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    login = sub.add_parser("login", parents=[common], help="store a server address and API token")
    login.add_argument("--url", required=True, help="the server, e.g. https://metaweb.example.com")
    login.add_argument("--token", help="the token (else read from stdin or a prompt)")
    login.set_defaults(func=cmd_login)
    runs.add_commands(sub, common)
    sweeps.add_commands(sub, common)
    models.add_commands(sub, common)
    adapt.add_commands(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (errors are one line on stderr)."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except UsageError as exc:
        return _fail(f"usage: {exc}", USAGE)
    except ApiError as exc:
        return _fail(str(exc), ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted.", 130)
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if isinstance(exc.code, int) else OK
    except Exception as exc:  # a bug: still one line, the traceback only on request
        if os.environ.get("METAWEB_DEBUG"):
            traceback.print_exc()
        return _fail(f"unexpected {type(exc).__name__}: {exc} (METAWEB_DEBUG=1 shows the traceback)", ERROR)


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"metaweb: error: {message}\n")
    return code
