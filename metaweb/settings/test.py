"""The test suite: real PostgreSQL and Redis (``make test``), defaulting to 127.0.0.1."""

import os

os.environ.setdefault("METAWEB_DEV", "1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/metaweb")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")

from metaweb.settings.base import *  # noqa: E402,F403
from metaweb.settings.base import BASE_DIR  # noqa: E402

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DATA_DIR = BASE_DIR / "var" / "test"
MEDIA_ROOT = DATA_DIR / "media"
RUNS_DIR = DATA_DIR / "runs"
# STORAGES (base.py) follow DATA_DIR and MEDIA_ROOT; METAWEB_STORAGE_URL picks an object store.
