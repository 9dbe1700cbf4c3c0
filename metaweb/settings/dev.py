"""Local development (``make run``): DEBUG on, dev secret allowed."""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("METAWEB_DEV", "1")

from metaweb.settings.base import *  # noqa: E402,F403
