"""Tags and notes of runs and experiments, the part of :class:`~metaweb.client.api.Client`
that annotates (``POST .../tags``, ``DELETE .../tags/{tag}``, ``PUT .../note``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from metaweb.client.types import Experiment, Run

if TYPE_CHECKING:
    from metaweb.client.transport import Transport


def _segment(tag: str) -> str:
    """A tag as one path segment: percent-encoded, dots too, so never ``..``."""
    return quote(tag.strip(), safe="").replace(".", "%2E")


class AnnotationsMixin:
    """Mixed into ``Client``, which gives ``http``, ``_t`` and ``experiment_id``."""

    http: Transport

    if TYPE_CHECKING:

        def _t(self, team: str | None) -> str: ...

        def experiment_id(self, ref: str | int, *, create: bool = False, team: str | None = None) -> int: ...

    def _annotate(self, method: str, path: str, body: Any = None) -> Any:
        return self.http.json(method, path, body=body)

    def run_tag(self, run_id: int, tags: list[str], *, team: str | None = None) -> Run:
        """Put tags on a run (all or none); ``tag:<name>`` in ``runs(q=...)`` finds it."""
        return self._annotate("POST", f"{self._t(team)}/runs/{int(run_id)}/tags", {"tags": list(tags)})

    def run_untag(self, run_id: int, tag: str, *, team: str | None = None) -> Run:
        """Take a tag off a run (nothing happens if it does not carry it)."""
        return self._annotate("DELETE", f"{self._t(team)}/runs/{int(run_id)}/tags/{_segment(tag)}")

    def run_note(self, run_id: int, note: str, *, version: str | None = None, team: str | None = None) -> Run:
        """Replace the run's Markdown note; with ``version`` (the run's ``note_version``
        as read), refused when someone saved the note since."""
        body = {"note": note, "note_version": version}
        return self._annotate("PUT", f"{self._t(team)}/runs/{int(run_id)}/note", body)

    def experiment_tag(
        self, experiment: str | int, tags: list[str], *, team: str | None = None
    ) -> Experiment:
        """Put tags on an experiment (by id or name); the run search's ``tag:`` finds its runs."""
        path = f"{self._t(team)}/experiments/{self.experiment_id(experiment, team=team)}/tags"
        return self._annotate("POST", path, {"tags": list(tags)})

    def experiment_untag(self, experiment: str | int, tag: str, *, team: str | None = None) -> Experiment:
        path = f"{self._t(team)}/experiments/{self.experiment_id(experiment, team=team)}/tags/{_segment(tag)}"
        return self._annotate("DELETE", path)

    def experiment_note(
        self, experiment: str | int, note: str, *, version: str | None = None, team: str | None = None
    ) -> Experiment:
        path = f"{self._t(team)}/experiments/{self.experiment_id(experiment, team=team)}/note"
        return self._annotate("PUT", path, {"note": note, "note_version": version})
