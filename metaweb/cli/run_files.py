"""``metaweb runs files|upload|download``: the files a run keeps (MLflow's artifacts)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from metaweb.cli import output
from metaweb.cli.main import OK, client_for
from metaweb.client.errors import ApiError

FILE_COLUMNS = ("id", "name", "size", "sha256", "created_by", "created_at")


def add_commands(runs: Any, common: argparse.ArgumentParser) -> None:
    """Under ``metaweb runs``."""
    files = runs.add_parser("files", parents=[common], help="the files a run keeps")
    files.add_argument("id", type=int)
    files.set_defaults(func=cmd_files)
    upload = runs.add_parser("upload", parents=[common], help="keep a local file with a run")
    upload.add_argument("id", type=int)
    upload.add_argument("path", help="the local file")
    upload.add_argument("--name", default="", help="its name in the run (default: the file's own)")
    upload.set_defaults(func=cmd_upload)
    download = runs.add_parser("download", parents=[common], help="download one of a run's files")
    download.add_argument("id", type=int)
    download.add_argument("file", help="the file's name in the run, or its id")
    download.add_argument("-o", "--output", default="", help="where to write it (default: its name, here)")
    download.set_defaults(func=cmd_download)


def cmd_files(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        found = client.run_files(args.id)
    if args.json:
        output.emit_json(found)
    elif not found:
        print(f"Run {args.id} keeps no files.")
    else:
        output.table(FILE_COLUMNS, [[item[c] for c in FILE_COLUMNS] for item in found])  # type: ignore[literal-required]
    return OK


def cmd_upload(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        kept = client.run_file_upload(args.id, args.path, name=args.name)
    if args.json:
        output.emit_json(kept)
    else:
        print(f"Run {args.id} keeps {kept['name']} ({kept['size']:,} bytes, sha256 {kept['sha256']}).")
    return OK


def cmd_download(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        found = client.run_files(args.id)
        matches = [f for f in found if f["name"] == args.file or str(f["id"]) == args.file]
        if not matches:
            raise ApiError(
                0, f"Run {args.id} keeps no file called {args.file!r} (see: metaweb runs files {args.id})."
            )
        kept = matches[0]
        target = Path(args.output or Path(kept["name"]).name)
        sha256 = client.run_file_download(args.id, kept["id"], target)
    if sha256 != kept["sha256"]:
        os.unlink(target)
        raise ApiError(
            0, f"The download's sha256 {sha256} is not the stored file's {kept['sha256']}; removed it."
        )
    if args.json:
        output.emit_json({**kept, "path": str(target)})
    else:
        print(f"{target}: {kept['size']:,} bytes, sha256 {sha256}")
    return OK
