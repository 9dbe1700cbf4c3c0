"""The Celery application. Workers: ``celery -A metaweb worker -Q gpu,cpu``."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "metaweb.settings.base")

app = Celery("metaweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])


@worker_init.connect
def prepare_training_process(sender: object = None, **_: object) -> None:
    """Allocator, torch threads and compile cache, once, before the pool forks (its
    processes inherit them): ``workers.metalearn.runtime``. ``make run``'s embedded
    worker has set its own thread count before this runs, and keeps it."""
    from django.conf import settings

    from workers.metalearn.runtime import prepare_process, torch_threads

    processes = int(getattr(sender, "concurrency", None) or 1)
    prepare_process(
        threads=torch_threads(processes=processes), compile_cache=settings.DATA_DIR / "compile-cache"
    )
