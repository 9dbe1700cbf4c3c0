"""Settings of the stack processes that the e2e tests and the benchmarks start.

The test settings, except that ``DATA_DIR`` (checkpoints and uploads) comes from
``METAWEB_DATA_DIR``: the test process and its daphne and worker subprocesses
must agree on it, and a fresh folder per test keeps a new run from resuming an
old run's checkpoint when the test database hands out the same id again.
"""

import os
from pathlib import Path

from metaweb.settings.test import *  # noqa: F403
from metaweb.settings.test import DATA_DIR as _TEST_DATA_DIR

DATA_DIR = Path(os.environ.get("METAWEB_DATA_DIR") or _TEST_DATA_DIR)
MEDIA_ROOT = DATA_DIR / "media"
RUNS_DIR = DATA_DIR / "runs"
