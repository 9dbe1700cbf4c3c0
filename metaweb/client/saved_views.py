"""The run list's saved views, the part of :class:`~metaweb.client.api.Client` that
reads and keeps them (``GET``/``POST .../saved-views``, ``DELETE .../saved-views/{id}``);
``Client.runs(view=...)`` lists the runs of one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metaweb.client.errors import ApiError
from metaweb.client.types import SavedView

if TYPE_CHECKING:
    from metaweb.client.transport import Transport


class SavedViewsMixin:
    """Mixed into ``Client``, which gives ``http`` and ``_t``."""

    http: Transport

    if TYPE_CHECKING:

        def _t(self, team: str | None) -> str: ...

    def saved_views(self, *, team: str | None = None) -> list[SavedView]:
        """The team's saved views, by name."""
        return self.http.json("GET", f"{self._t(team)}/saved-views")

    def saved_view_create(
        self,
        name: str,
        *,
        query: str = "",
        columns: list[str] | None = None,
        sort: str = "",
        kind: str = "",
        filters: dict[str, str] | None = None,
        team: str | None = None,
    ) -> SavedView:
        """Save a view for the whole team (``filters`` as the run list's query string
        spells them: ``{"status": "succeeded", "algorithm": "maml"}``)."""
        body = {
            "name": name,
            "query": query,
            "columns": columns or [],
            "sort": sort,
            "kind": kind,
            "filters": filters or {},
        }
        return self.http.json("POST", f"{self._t(team)}/saved-views", body=body)

    def saved_view_delete(self, view: str | int, *, team: str | None = None) -> dict[str, Any]:
        """Delete a view, by id or name (any case): its creator or a team admin."""
        view_id = view if isinstance(view, int) else self._saved_view_id(view, team=team)
        return self.http.json("DELETE", f"{self._t(team)}/saved-views/{int(view_id)}")

    def _saved_view_id(self, name: str, *, team: str | None) -> int:
        for found in self.saved_views(team=team):
            if found["name"].lower() == name.strip().lower():
                return found["id"]
        raise ApiError(404, f"No saved view called {name!r}.")
