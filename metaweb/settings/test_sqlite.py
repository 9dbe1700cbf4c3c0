"""The web tests on SQLite, the embedded default's database (``make test``'s second
pass). Everything else is ``metaweb.settings.test``.

The test database is a file, as under ``make run``, with the same options (busy
timeout, immediate transactions, WAL): an in-memory database shares its cache
between connections, whose table locks fail at once instead of waiting, so tests
where a worker thread writes beside the test would fail there and not in real use.
One file per test process, in the temporary folder; pytest-django creates and
deletes it.
"""

import os
import tempfile
from pathlib import Path

from metaweb.settings.test import *  # noqa: F403  (first: it sets the environment base.py reads)
from metaweb.settings.test import SQLITE_OPTIONS

_TEST_DB = Path(tempfile.gettempdir()) / f"metaweb-test-{os.getpid()}.sqlite3"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _TEST_DB,
        "OPTIONS": SQLITE_OPTIONS,
        "TEST": {"NAME": _TEST_DB},
    }
}
