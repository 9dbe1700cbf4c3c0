"""Writes for the registry.

``metamodels``: registering meta-models, aliases, verdicts, uploads.
``adaptations``: launching adaptations and storing what they produce.
Both are re-exported here: import from ``apps.registry.services``.
"""

from apps.registry.services.adaptations import *  # noqa: F403
from apps.registry.services.metamodels import *  # noqa: F403
