"""Follow a run live over its websocket (``/ws/runs/<id>/``, bearer-token auth),
as the run page does: ``run.state`` on connect, then ``run.progress``,
``run.status`` and ``run.warning`` (a loss spike, in ``Progress.warning`` for that
one update) events. The socket only notifies; the finished run is read back
from the API. If the socket cannot be opened (a proxy that drops websockets), the
run is polled instead, every ``poll_seconds``.

``websockets`` is imported here, on first use, so that ``import metaweb.client``
stays light.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from metaweb.client.errors import ApiError
from metaweb.client.types import FINISHED, Run

if TYPE_CHECKING:
    from metaweb.client.api import Client

#: Websocket close codes of the consumers: not logged in / not visible.
REFUSED = {4403: (403, "The server refused the live connection (not allowed)."), 4404: (404, "No such run.")}
#: Without any message for this long, the run is read from the API (a missed event cannot hang us).
QUIET_SECONDS = 10.0
#: run.state carries every stored point; allow big runs.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Progress:
    run_id: int
    status: str
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    eta_seconds: float | None = None
    error: str = ""
    #: The engine's warning (a loss spike) that this update brings, else "".
    warning: str = ""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def _loss_of(points: dict[str, Any]) -> float | None:
    """The newest value of the first loss-like series (train_loss, loss, ...)."""
    names = sorted(points, key=lambda n: (n not in ("train_loss", "loss"), "loss" not in n, n))
    for name in names:
        series = points.get(name) or []
        if series and "loss" in name:
            return float(series[-1][1])
    return None


def apply(progress: Progress, message: dict[str, Any]) -> Progress:
    """The progress after one websocket message (another run's is ignored)."""
    kind = message.get("type")
    about = message.get("run", {}).get("id") if kind == "run.state" else message.get("run_id")
    if about is not None and about != progress.run_id:
        return progress
    progress = replace(progress, warning="") if progress.warning else progress
    if kind == "run.warning":
        return replace(progress, warning=str(message.get("message") or ""))
    if kind == "run.state":
        run = message.get("run", {})
        loss = _loss_of(message.get("metrics") or {})
        return replace(
            progress,
            status=run.get("status", progress.status),
            step=run.get("step", progress.step),
            total_steps=run.get("total_steps", progress.total_steps),
            eta_seconds=run.get("eta_seconds"),
            loss=loss if loss is not None else progress.loss,
            error=run.get("error") or "",
        )
    if kind == "run.progress":
        loss = message.get("loss")
        if loss is None:
            loss = _loss_of(message.get("points") or {})
        return replace(
            progress,
            step=message.get("step", progress.step),
            total_steps=message.get("total_steps", progress.total_steps),
            eta_seconds=message.get("eta_seconds", progress.eta_seconds),
            loss=loss if loss is not None else progress.loss,
        )
    if kind == "run.status":
        return replace(
            progress,
            status=message.get("status", progress.status),
            step=message.get("step", progress.step) or progress.step,
            error=message.get("error") or "",
        )
    return progress


def _from_run(run: Run) -> Progress:
    return Progress(
        run_id=run["id"],
        status=run["status"],
        step=run["step"],
        total_steps=run["total_steps"],
        error=run["error"],
    )


def follow(
    client: Client,
    run_id: int,
    *,
    team: str | None = None,
    on_update: Callable[[Progress], None] | None = None,
    poll_seconds: float = 2.0,
) -> Run:
    """Report the run's progress to ``on_update`` until it finishes; returns the run."""
    notify = on_update or (lambda _p: None)
    progress = _from_run(client.run(run_id, team=team))
    notify(progress)
    failures = 0
    while not progress.finished:
        try:
            progress = _follow_socket(client, run_id, progress, notify, team=team)
            failures = 0
        except ApiError:
            raise
        except Exception:  # the socket broke or could not open: re-read, retry, then poll
            failures += 1
            progress = replace(progress, **_fresh(client, run_id, team))
            notify(progress)
            if failures >= 3:
                progress = _poll(client, run_id, progress, notify, team=team, every=poll_seconds)
            else:
                time.sleep(min(5.0, 0.5 * 2**failures))
        if progress.finished:  # the socket said so: the database has the last word
            run = client.run(run_id, team=team)
            progress = replace(progress, **_fresh_of(run))
            if progress.finished:
                return run
    return client.run(run_id, team=team)


def _fresh(client: Client, run_id: int, team: str | None) -> dict[str, Any]:
    return _fresh_of(client.run(run_id, team=team))


def _fresh_of(run: Run) -> dict[str, Any]:
    return {
        "status": run["status"],
        "step": run["step"],
        "total_steps": run["total_steps"],
        "error": run["error"],
    }


def _socket_url(client: Client, run_id: int) -> str:
    base = client.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{base}/ws/runs/{int(run_id)}/"


def _follow_socket(
    client: Client, run_id: int, progress: Progress, notify: Callable[[Progress], None], *, team: str | None
) -> Progress:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    headers = {"Authorization": client.http.session.headers["Authorization"]}
    with connect(
        _socket_url(client, run_id),
        origin=client.url,  # type: ignore[arg-type]
        additional_headers=headers,
        max_size=MAX_MESSAGE_BYTES,
        proxy=None,
    ) as socket:
        while not progress.finished:
            try:
                text = socket.recv(timeout=QUIET_SECONDS)
            except TimeoutError:
                progress = replace(progress, **_fresh(client, run_id, team))
                notify(progress)
                continue
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else None
                if code in REFUSED:
                    raise ApiError(*REFUSED[code]) from None
                raise
            progress = apply(progress, json.loads(text))
            notify(progress)
    return progress


def _poll(
    client: Client,
    run_id: int,
    progress: Progress,
    notify: Callable[[Progress], None],
    *,
    team: str | None,
    every: float,
) -> Progress:
    while not progress.finished:
        time.sleep(every)
        progress = replace(progress, **_fresh(client, run_id, team))
        notify(progress)
    return progress
