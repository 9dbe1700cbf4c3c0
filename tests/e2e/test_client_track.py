"""``client.track`` on the real stack: a training script logs 10,000 points through a
TCP proxy in front of daphne; the proxy is stopped for a while mid-run. Every point
is in the database exactly once, and the run's socket (what the dashboard listens
to) received the points live and the final status."""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import urlparse

import pytest

from tests.client.proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

STEPS = 5000  # two metrics a step: 10,000 points


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


class SocketListener(threading.Thread):
    """A websocket on a run (bearer token), recording every message until the run ends."""

    def __init__(self, url: str, token: str, origin: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.origin = url, token, origin
        self.messages: list[dict] = []
        self.connected = threading.Event()

    def run(self) -> None:
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {self.token}"}
        options = {"origin": self.origin, "additional_headers": headers, "max_size": None, "proxy": None}
        with connect(self.url, **options) as ws:
            self.connected.set()
            while True:
                message = json.loads(ws.recv(timeout=120))
                self.messages.append(message)
                if message.get("type") == "run.status" and message["status"] in ("succeeded", "failed"):
                    return


def test_ten_thousand_points_survive_an_outage_and_show_live(live_stack, e2e_user):
    from apps.experiments.models import Run
    from apps.teams.token_services import api_token_create
    from metaweb.client import Client
    from tests.factories import TaskSetVersionFactory, metric_rows

    user, team = e2e_user
    TaskSetVersionFactory(taskset__team=team, taskset__name="Sines", created_by=user)
    secret = api_token_create(user=user, team=team, name="script", scope="write", expires_in_days=1).secret
    address = urlparse(live_stack.base_url)
    proxy = TcpProxy(address.hostname, address.port).start()
    client = Client(proxy.url, secret)

    with client.track(experiment="my idea", config={"lr": 0.01}, total_steps=STEPS) as run:
        listener = SocketListener(f"{live_stack.ws_base}/ws/runs/{run.id}/", secret, live_stack.base_url)
        listener.start()
        assert listener.connected.wait(30)
        for step in range(STEPS // 2):
            run.log({"loss": 1.0 / (step + 1), "acc": step / STEPS}, step=step)
        wait_for(lambda: run.sent >= 2000, "some points to arrive")
        proxy.stop()  # the network is down
        for step in range(STEPS // 2, STEPS):
            run.log({"loss": 1.0 / (step + 1), "acc": step / STEPS}, step=step)
        wait_for(lambda: run.retries >= 2, "the sender to meet the outage")
        proxy.start()  # back, on the same port
    listener.join(60)
    proxy.stop()

    stored = Run.objects.get(pk=run.id)
    assert stored.kind == "external" and stored.status == "succeeded", stored.error
    rows = metric_rows(stored)
    assert len(rows) == 2 * STEPS and len(set(rows)) == 2 * STEPS
    assert run.lost == 0 and run.dropped == 0 and run.stored == 2 * STEPS

    kinds = [m["type"] for m in listener.messages]
    assert kinds[0] == "run.state" and kinds[-1] == "run.status"
    progress = [m for m in listener.messages if m["type"] == "run.progress"]
    live_points = sum(len(series) for m in progress for series in m["points"].values())
    assert live_points == 2 * STEPS, live_points  # each stored point was sent live once
