"""Serve the ASGI app with daphne: ``python manage.py serve --host 127.0.0.1 --port 8000``.

Without REDIS_URL (``settings.EMBEDDED_WORKER``, what ``make run`` uses) it also
runs a Celery worker and the run watchdog in daemon threads of this process
(``workers.embedded``), and registers daphne's event loop so that the worker's
channel-layer sends reach the in-memory layer on that loop. With REDIS_URL it
only serves: start workers with ``make worker`` and the watchdog with ``make beat``.

Static files are served by the app itself with ``--static`` (the default when
DEBUG or METAWEB_DEV is on), from the finders, like runserver. In production, run
``manage.py collectstatic`` and let the web server in front serve STATIC_ROOT
under STATIC_URL; then pass ``--no-static``.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.management.base import BaseCommand

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Serve MetaWeb with daphne; without REDIS_URL, also run the embedded worker and watchdog."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--static",
            action="store_true",
            default=None,
            help="Serve static files from the app (default when DEBUG or METAWEB_DEV is on).",
        )
        parser.add_argument("--no-static", dest="static", action="store_false")
        parser.add_argument(
            "--no-worker",
            action="store_true",
            help="Do not start the embedded worker, even without REDIS_URL.",
        )

    def handle(self, *args, host: str, port: int, static: bool | None, no_worker: bool, **options) -> None:
        # daphne.server installs Twisted's asyncio reactor: import it before anything else imports Twisted.
        import daphne.server
        from daphne.endpoints import build_endpoint_description_strings

        from apps.experiments.events import set_server_loop
        from metaweb.asgi import application, http_application
        from metaweb.daphne_limits import BodyLimitedServer

        serve_static = static if static is not None else bool(settings.DEBUG or settings.DEV)
        app = application
        if serve_static:
            from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

            app = ASGIStaticFilesHandler(application)

        embedded = settings.EMBEDDED_WORKER and not no_worker
        if embedded:
            from workers import embedded as embedded_worker

            # The in-memory channel layer lives on daphne's loop: workers send onto it.
            set_server_loop(daphne.server.twisted_loop)
            embedded_worker.start()

        mode = "embedded worker and watchdog" if embedded else "no worker (start them with `make worker`)"
        self.stdout.write(
            f"Serving on http://{host}:{port}/ with {mode}; static files {'on' if serve_static else 'off'}."
        )
        server = BodyLimitedServer(
            limit_for=http_application.limit_for_type,
            application=app,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,
            verbosity=1,
            server_name="metaweb",
        )
        server.run()
