"""The MetaWeb Python client: ``Client(url, token)`` over the JSON API, and
``client.track(...)`` to log your own training loop as a run.

    from metaweb.client import Client
    client = Client("https://metaweb.example.com", "mwp_...")
    with client.track(experiment="my-idea", config={"lr": 0.01}, total_steps=1000) as run:
        for step in range(1000):
            run.log({"loss": loss}, step=step)

Importing this package imports neither Django, Celery nor torch (a test checks).
"""

from metaweb.client.api import Client
from metaweb.client.errors import ApiError, NetworkError
from metaweb.client.tracking import TrackedRun

__all__ = ["ApiError", "Client", "NetworkError", "TrackedRun"]
