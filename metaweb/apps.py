"""The project's own app config: it loads the Celery app when Django starts."""

from __future__ import annotations

from django.apps import AppConfig


class MetaWebConfig(AppConfig):
    name = "metaweb"
    verbose_name = "MetaWeb"

    def ready(self) -> None:
        # The Celery app becomes the current app, so that ``shared_task``s bind to it
        # in every Django process (web, worker, embedded worker, management commands).
        import metaweb.celery  # noqa: F401
