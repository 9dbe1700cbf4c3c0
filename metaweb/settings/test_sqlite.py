"""The web tests on SQLite, the embedded default's database (``make test``'s second
pass). Everything else is ``metaweb.settings.test``; pytest-django runs the tests
in an in-memory SQLite database."""

from metaweb.settings.test import *  # noqa: F403
from metaweb.settings.test import DATA_DIR

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "test.sqlite3",
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        "TEST": {"NAME": ":memory:"},
    }
}
