"""MetaWeb's Django project. The Celery app is loaded with Django so that
``shared_task`` and ``.delay`` bind to it."""

from metaweb.celery import app as celery_app

__all__ = ["celery_app"]
