"""``Client(url, token)``: the MetaWeb API in Python, one method per endpoint.

Every method acts in one team: the ``team`` argument, else the client's ``team``,
else the one team the token belongs to (a token is scoped to one team). Failures
raise :class:`~metaweb.client.errors.ApiError` with the API's message and field.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from metaweb.client.annotations import AnnotationsMixin
from metaweb.client.errors import ApiError
from metaweb.client.run_files import RunFilesMixin
from metaweb.client.saved_views import SavedViewsMixin
from metaweb.client.transport import Transport, opened_for_upload
from metaweb.client.types import (
    Adaptation,
    Alias,
    Comparison,
    Experiment,
    MetaModel,
    MetaModelDetail,
    MetaModelPage,
    Run,
    RunEvent,
    RunPage,
    Series,
    Sweep,
    SweepDetail,
    SweepPage,
    TaskSet,
    Team,
)


class Client(AnnotationsMixin, SavedViewsMixin, RunFilesMixin):
    def __init__(self, url: str, token: str, *, team: str | None = None) -> None:
        self.http = Transport(url, token)
        self.url = self.http.url
        self._team = team

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- teams -------------------------------------------------------------------

    def teams(self) -> list[Team]:
        return self.http.json("GET", "/teams")

    @property
    def team(self) -> str:
        """The default team: the one given, else the token's own team."""
        if self._team is None:
            teams = self.teams()
            if len(teams) != 1:
                raise ApiError(0, "This login belongs to several teams: name one (--team, or team=...).")
            self._team = teams[0]["slug"]
        return self._team

    def _t(self, team: str | None) -> str:
        return f"/teams/{_slug(team or self.team)}"

    # -- experiments and task sets ---------------------------------------------

    def experiments(self, *, name: str = "", tag: str = "", team: str | None = None) -> list[Experiment]:
        """The team's experiments; ``name``: the one of that name (any case); ``tag``: those tagged."""
        return self.http.json("GET", f"{self._t(team)}/experiments", params={"name": name, "tag": tag})

    def experiment_create(self, name: str, *, description: str = "", team: str | None = None) -> Experiment:
        body = {"name": name, "description": description}
        return self.http.json("POST", f"{self._t(team)}/experiments", body=body)

    def experiment_update(
        self,
        experiment: str | int,
        *,
        name: str | None = None,
        description: str | None = None,
        team: str | None = None,
    ) -> Experiment:
        """Rename an experiment (by id or name) or change its description."""
        body = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
        experiment_id = self.experiment_id(experiment, team=team)
        return self.http.json("PATCH", f"{self._t(team)}/experiments/{experiment_id}", body=body)

    def experiment_id(self, ref: str | int, *, create: bool = False, team: str | None = None) -> int:
        """An experiment's id from its id or name; ``create`` opens a missing one."""
        if isinstance(ref, int):
            return ref
        found = self.experiments(name=ref, team=team)
        if found:
            return found[0]["id"]
        if create:
            return self.experiment_create(ref, team=team)["id"]
        raise ApiError(404, f"The team has no experiment called {ref!r}.", loc=["experiment"])

    def tasksets(self, *, team: str | None = None) -> list[TaskSet]:
        return self.http.json("GET", f"{self._t(team)}/tasksets")

    def taskset(self, taskset_id: int, *, team: str | None = None) -> TaskSet:
        return self.http.json("GET", f"{self._t(team)}/tasksets/{int(taskset_id)}")

    def taskset_create(
        self,
        name: str,
        family: str,
        *,
        params: dict | None = None,
        description: str = "",
        team: str | None = None,
    ) -> TaskSet:
        body = {"name": name, "family": family, "params": params or {}, "description": description}
        return self.http.json("POST", f"{self._t(team)}/tasksets", body=body)

    def taskset_upload(
        self,
        name: str,
        data_file: str | os.PathLike[str],
        *,
        family: str = "table",
        params: dict | None = None,
        description: str = "",
        team: str | None = None,
    ) -> TaskSet:
        """A task set from a CSV, or a zip of ``class/*.png`` folders (the upload form's rules)."""
        fields = {
            "name": name,
            "family": family,
            "params": json.dumps(params or {}),
            "description": description,
        }
        with opened_for_upload(data_file, "data_file") as handle:
            files = {"data_file": (Path(data_file).name, handle)}
            return self.http.json("POST", f"{self._t(team)}/tasksets/upload", data=fields, files=files)

    def taskset_id(self, ref: str | int, *, team: str | None = None) -> int:
        """A task set's id from its id or its name (any case)."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return int(ref)
        for taskset in self.tasksets(team=team):
            if taskset["name"].casefold() == ref.strip().casefold():
                return taskset["id"]
        raise ApiError(404, f"The team has no task set called {ref!r}.", loc=["taskset"])

    # -- runs ---------------------------------------------------------------------

    def runs(
        self,
        *,
        q: str = "",
        sort: str = "",
        cursor: str = "",
        limit: int = 50,
        archived: str = "hide",
        view: str = "",
        team: str | None = None,
    ) -> RunPage:
        """One page of runs; ``archived``: ``hide`` (the default), ``only`` or ``include``;
        ``view``: a saved view's name, the runs it shows (instead of q, sort, archived)."""
        params = {"q": q, "sort": sort, "cursor": cursor, "limit": limit, "archived": archived, "view": view}
        return self.http.json("GET", f"{self._t(team)}/runs", params=params)

    def iter_runs(
        self, *, q: str = "", sort: str = "", archived: str = "hide", view: str = "", team: str | None = None
    ) -> Iterator[Run]:
        """Every run matching ``q`` (or shown by the saved ``view``), page after page (200 a request)."""
        cursor, ask = "", {"q": q, "sort": sort, "archived": archived, "view": view, "team": team}
        while True:
            page = self.runs(cursor=cursor, limit=200, **ask)
            yield from page["results"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def run(self, run_id: int, *, team: str | None = None) -> Run:
        return self.http.json("GET", f"{self._t(team)}/runs/{int(run_id)}")

    def run_launch(
        self,
        *,
        experiment: str | int,
        taskset: str | int,
        config: dict[str, Any],
        queue: str = "cpu",
        team: str | None = None,
    ) -> Run:
        """Queue a meta-training run; ``config`` is the engine's TrainConfig less ``family``."""
        body = {
            "experiment_id": self.experiment_id(experiment, team=team),
            "taskset_id": self.taskset_id(taskset, team=team),
            "queue": queue,
            "config": config,
        }
        return self.http.json("POST", f"{self._t(team)}/runs", body=body)

    def run_cancel(self, run_id: int, *, team: str | None = None) -> Run:
        return self.http.json("POST", f"{self._t(team)}/runs/{int(run_id)}/cancel")

    def runs_archive(self, run_ids: list[int], *, team: str | None = None) -> list[Run]:
        """Archive ended runs (all or none): run lists leave them out unless asked."""
        body = {"ids": [int(i) for i in run_ids]}
        return self.http.json("POST", f"{self._t(team)}/runs/archive", body=body)

    def runs_restore(self, run_ids: list[int], *, team: str | None = None) -> list[Run]:
        """Bring archived runs back to the run lists (all or none)."""
        body = {"ids": [int(i) for i in run_ids]}
        return self.http.json("POST", f"{self._t(team)}/runs/restore", body=body)

    def run_clone(self, run_id: int, *, config: dict | None = None, team: str | None = None) -> Run:
        body = {"config": config or {}}
        return self.http.json("POST", f"{self._t(team)}/runs/{int(run_id)}/clone", body=body)

    def run_metrics(
        self,
        run_id: int,
        name: str,
        *,
        lo: float | None = None,
        hi: float | None = None,
        points: int = 500,
        team: str | None = None,
    ) -> Series:
        """One metric, downsampled to at most ``points`` (min-max buckets) over [lo, hi]."""
        params = {"name": name, "lo": lo, "hi": hi, "points": points}
        return self.http.json("GET", f"{self._t(team)}/runs/{int(run_id)}/metrics", params=params)

    def run_metrics_csv(self, run_id: int, *, team: str | None = None) -> str:
        """Every stored point, as CSV text ``step,name,value``."""
        return self.http.text(f"{self._t(team)}/runs/{int(run_id)}/metrics.csv")

    def run_events(self, run_id: int, *, team: str | None = None) -> list[RunEvent]:
        return self.http.json("GET", f"{self._t(team)}/runs/{int(run_id)}/events")

    def run_checkpoint(self, run_id: int, path: str | os.PathLike[str], *, team: str | None = None) -> str:
        """Download the newest checkpoint's safetensors to ``path``; returns its sha256."""
        return self.http.download(f"{self._t(team)}/runs/{int(run_id)}/checkpoint", path)[0]

    # -- sweeps -------------------------------------------------------------------

    def sweeps(self, *, before: int | None = None, limit: int = 50, team: str | None = None) -> SweepPage:
        params = {"before": before, "limit": limit}
        return self.http.json("GET", f"{self._t(team)}/sweeps", params=params)

    def iter_sweeps(self, *, team: str | None = None) -> Iterator[Sweep]:
        """Every sweep of the team, newest first, page after page (200 a request)."""
        before = None
        while True:
            page = self.sweeps(before=before, limit=200, team=team)
            yield from page["results"]
            before = page["next_before"]
            if before is None:
                return

    def sweep(self, sweep_id: int, *, team: str | None = None) -> SweepDetail:
        """One sweep with its leaderboard and its runs pooled across seeds."""
        return self.http.json("GET", f"{self._t(team)}/sweeps/{int(sweep_id)}")

    def sweep_launch(
        self,
        *,
        experiment: str | int,
        taskset: str | int,
        dimensions: dict[str, list[Any] | str],
        strategy: str = "grid",
        config: dict[str, Any] | None = None,
        samples: int = 0,
        seed: int = 0,
        metric: str = "val_loss",
        max_concurrent: int = 1,
        queue: str = "cpu",
        name: str = "",
        early_stop: bool = False,
        team: str | None = None,
    ) -> SweepDetail:
        """Launch a sweep: ``dimensions`` maps a setting to its values (a list, or the
        launch form's text: ``"1..5 step 1"``, ``"1e-4..1e-1 log"``); ``config`` holds
        the settings every run shares (the engine's TrainConfig less ``family``);
        ``early_stop`` stops poor runs at ASHA's rungs (always on for ``asha``)."""
        body = {
            "experiment_id": self.experiment_id(experiment, create=True, team=team),
            "taskset_id": self.taskset_id(taskset, team=team),
            "config": config or {},
            "dimensions": dimensions,
            "strategy": strategy,
            "samples": samples,
            "seed": seed,
            "metric": metric,
            "max_concurrent": max_concurrent,
            "queue": queue,
            "name": name,
            "early_stop": early_stop,
        }
        return self.http.json("POST", f"{self._t(team)}/sweeps", body=body)

    def sweep_stop(self, sweep_id: int, *, team: str | None = None) -> SweepDetail:
        """Start no more runs, and cancel the sweep's queued and running ones."""
        return self.http.json("POST", f"{self._t(team)}/sweeps/{int(sweep_id)}/stop")

    # -- meta-models ----------------------------------------------------------------

    def models(self, *, before: int | None = None, limit: int = 50, team: str | None = None) -> MetaModelPage:
        params = {"before": before, "limit": limit}
        return self.http.json("GET", f"{self._t(team)}/models", params=params)

    def model(self, model_id: int, *, team: str | None = None) -> MetaModelDetail:
        return self.http.json("GET", f"{self._t(team)}/models/{int(model_id)}")

    def model_resolve(self, ref: str | int, *, team: str | None = None) -> MetaModel:
        """``name@alias``, ``name:version``, ``name`` (its newest version) or an id."""
        return self.http.json("GET", f"{self._t(team)}/model-refs", params={"ref": str(ref)})

    def model_card(self, model_id: int, *, team: str | None = None) -> dict[str, Any]:
        return self.http.json("GET", f"{self._t(team)}/models/{int(model_id)}/card")

    def model_alias(self, model_id: int, alias: str, *, team: str | None = None) -> Alias:
        """Point ``<name>@<alias>`` at this version (``production`` needs an approve verdict)."""
        path = f"{self._t(team)}/models/{int(model_id)}/alias"
        return self.http.json("POST", path, body={"alias": alias})

    def model_weights(self, model_id: int, path: str | os.PathLike[str], *, team: str | None = None) -> str:
        """Download the weights (safetensors) to ``path``; returns their sha256."""
        return self.http.download(f"{self._t(team)}/models/{int(model_id)}/weights", path)[0]

    def model_upload(
        self,
        weights_file: str | os.PathLike[str],
        *,
        name: str,
        experiment: str | int,
        taskset: str | int,
        config: dict[str, Any],
        taskset_version: int | None = None,
        description: str = "",
        team: str | None = None,
    ) -> MetaModel:
        """Register your own safetensors weights as a meta-model (checked against ``config``)."""
        fields: dict[str, Any] = {
            "name": name,
            "experiment_id": self.experiment_id(experiment, create=True, team=team),
            "taskset_id": self.taskset_id(taskset, team=team),
            "config": json.dumps(config),
            "description": description,
        }
        if taskset_version is not None:
            fields["taskset_version"] = int(taskset_version)
        with opened_for_upload(weights_file, "weights_file") as handle:
            files = {"weights_file": (Path(weights_file).name, handle, "application/octet-stream")}
            return self.http.json("POST", f"{self._t(team)}/models", data=fields, files=files)

    def compare(
        self,
        *,
        adaptations: list[int] = (),
        models: list[int] = (),
        team: str | None = None,  # type: ignore[assignment]
    ) -> Comparison:
        """The side-by-side comparison of 2-6 adaptation runs and meta-models (their
        600-task evaluations): per item the metric, curve, and paired test against the first."""
        params = [("adaptation", int(a)) for a in adaptations] + [("model", int(m)) for m in models]
        return self.http.json("GET", f"{self._t(team)}/comparison", params=params)

    # -- adaptations ----------------------------------------------------------------

    def adaptation_launch(
        self, model_id: int, *, target: str = "test_task", team: str | None = None, **options: Any
    ) -> Adaptation:
        """Queue an adaptation: ``target`` is test_task (``task_index``), batch, or custom
        (``support`` and ``query`` as ``{"x": [[...], ...], "y": [...]}``); ``steps``, ``lr``."""
        body = {"target": target, **options}
        return self.http.json("POST", f"{self._t(team)}/models/{int(model_id)}/adaptations", body=body)

    def adaptation_csv(
        self,
        model_id: int,
        support: str | os.PathLike[str],
        *,
        query: str | os.PathLike[str] | None = None,
        steps: int | None = None,
        lr: float | None = None,
        queue: str = "cpu",
        desc: list[float] | None = None,
        team: str | None = None,
    ) -> Adaptation:
        """Adapt to your own task: support (and query) CSVs, inputs then the target column."""
        fields: dict[str, Any] = {"queue": queue}
        if steps is not None:
            fields["steps"] = int(steps)
        if lr is not None:
            fields["lr"] = float(lr)
        if desc:
            fields["desc"] = ",".join(repr(float(v)) for v in desc)
        with contextlib.ExitStack() as stack:
            files = {
                "support_file": (
                    Path(support).name,
                    stack.enter_context(opened_for_upload(support, "support_file")),
                )
            }
            if query is not None:
                files["query_file"] = (
                    Path(query).name,
                    stack.enter_context(opened_for_upload(query, "query_file")),
                )
            path = f"{self._t(team)}/models/{int(model_id)}/adaptations/csv"
            return self.http.json("POST", path, data=fields, files=files)

    def adaptation(self, run_id: int, *, team: str | None = None) -> Adaptation:
        return self.http.json("GET", f"{self._t(team)}/adaptations/{int(run_id)}")

    # -- external runs (what ``track`` uses) --------------------------------------------

    def external_run_create(
        self,
        *,
        experiment: str | int,
        taskset: str | int | None = None,
        algorithm: str = "maml",
        config: dict | None = None,
        total_steps: int = 0,
        team: str | None = None,
    ) -> Run:
        """Open a running external run; a missing experiment is created. Without
        ``taskset`` the run is filed under the team's oldest task set."""
        body = {
            "experiment_id": self.experiment_id(experiment, create=True, team=team),
            "taskset_id": self._default_taskset(team)
            if taskset is None
            else self.taskset_id(taskset, team=team),
            "algorithm": algorithm,
            "total_steps": total_steps,
            "config": config or {},
        }
        return self.http.json("POST", f"{self._t(team)}/external-runs", body=body)

    def _default_taskset(self, team: str | None) -> int:
        tasksets = self.tasksets(team=team)
        if not tasksets:
            raise ApiError(
                422, "The team has no task set to file the run under: create one first.", loc=["taskset"]
            )
        return min(tasksets, key=lambda t: (t["created_at"], t["id"]))["id"]

    def external_run_finish(
        self,
        run_id: int,
        *,
        status: str,
        error: str = "",
        summary: dict | None = None,
        team: str | None = None,
    ) -> Run:
        body = {"status": status, "error": error, "summary": summary or {}}
        return self.http.json("POST", f"{self._t(team)}/runs/{int(run_id)}/finish", body=body)

    def follow(self, run_id: int, *, on_update: Any = None, team: str | None = None) -> Run:
        """Wait for the run to finish, calling ``on_update(Progress)`` as it advances
        (over its websocket); returns the finished run. See :mod:`metaweb.client.live`."""
        from metaweb.client.live import follow

        return follow(self, run_id, team=team, on_update=on_update)

    def track(self, *, experiment: str | int, team: str | None = None, **options: Any) -> Any:
        """Log your own training loop as an external run; see :func:`metaweb.client.tracking.track`."""
        from metaweb.client.tracking import track

        return track(self, experiment=experiment, team=team, **options)


def _slug(team: str) -> str:
    """A team slug for a URL path: letters, digits, ``-`` and ``_`` only (never a path)."""
    if not team or not all(c.isalnum() or c in "-_" for c in team):
        raise ApiError(0, f"{team!r} is not a team's short name (letters, digits, - and _).", loc=["team"])
    return team
