"""Writes for experiments and runs.

``runs`` holds what people do from the browser (create, launch, cancel, clone),
``saved_views`` the run list's saved views, ``annotations`` the tags and notes
members put on runs and experiments, ``archive`` archiving and restoring ended runs,
``run_files`` the files a run keeps; ``execution`` holds what workers do (claim,
heartbeat, record metrics, finish, requeue after a lost heartbeat). All are re-exported here: import from
``apps.experiments.services``.
"""

from apps.experiments.services.annotations import *  # noqa: F403
from apps.experiments.services.archive import *  # noqa: F403
from apps.experiments.services.execution import *  # noqa: F403
from apps.experiments.services.retention import *  # noqa: F403
from apps.experiments.services.run_files import *  # noqa: F403
from apps.experiments.services.runs import *  # noqa: F403
from apps.experiments.services.saved_views import *  # noqa: F403
from apps.experiments.services.scheduling import *  # noqa: F403
from apps.experiments.services.sweeps import *  # noqa: F403
