"""The Celery application. Workers: ``celery -A metaweb worker -Q gpu,cpu``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "metaweb.settings.base")

app = Celery("metaweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])
