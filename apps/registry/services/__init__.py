"""Writes for the registry of meta-models.

``metamodels``: registering a training run as the next version of a name, moving
aliases. ``uploads``: registering an external safetensors file. ``staging``: the
files' temporary folder and its atomic publication. Import from
``apps.registry.services``.
"""

from apps.registry.services.metamodels import *  # noqa: F403
from apps.registry.services.task_maps import *  # noqa: F403
from apps.registry.services.uploads import *  # noqa: F403
