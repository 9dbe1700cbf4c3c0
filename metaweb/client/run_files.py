"""The files a run keeps (MLflow's artifacts), the part of
:class:`~metaweb.client.api.Client` that lists, uploads and downloads them
(``GET``/``POST .../runs/{id}/files``, ``GET .../runs/{id}/files/{file_id}``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from metaweb.client.transport import opened_for_upload
from metaweb.client.types import RunFile

if TYPE_CHECKING:
    from metaweb.client.transport import Transport


class RunFilesMixin:
    """Mixed into ``Client``, which gives ``http`` and ``_t``."""

    http: Transport

    if TYPE_CHECKING:

        def _t(self, team: str | None) -> str: ...

    def run_files(self, run_id: int, *, team: str | None = None) -> list[RunFile]:
        """The run's files, by name: each with its id, size and sha256."""
        return self.http.json("GET", f"{self._t(team)}/runs/{int(run_id)}/files")

    def run_file_upload(
        self, run_id: int, path: str | os.PathLike[str], *, name: str = "", team: str | None = None
    ) -> RunFile:
        """Keep the local file ``path`` with the run, as ``name`` (default: its own
        name). A name is unique in the run, and a file is at most 20 MB by default."""
        with opened_for_upload(path, "file") as handle:
            files = {"file": (Path(path).name, handle, "application/octet-stream")}
            fields = {"name": name} if name else {}
            return self.http.json(
                "POST", f"{self._t(team)}/runs/{int(run_id)}/files", data=fields, files=files
            )

    def run_file_download(
        self, run_id: int, file_id: int, path: str | os.PathLike[str], *, team: str | None = None
    ) -> str:
        """Download one of the run's files to ``path``; returns its sha256."""
        return self.http.download(f"{self._t(team)}/runs/{int(run_id)}/files/{int(file_id)}", path)[0]
