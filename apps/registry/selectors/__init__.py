"""Reads for the registry; permission filtering happens here, once.

``metamodels``: meta-models, aliases, lineage, reviews. ``adaptations``: adaptations
and adapted models. ``comparison`` (side by side) and ``leaderboard`` read stored
evaluations through ``apps/registry/comparison/`` (load, analysis, display);
``picker``: what the compare page offers to pick, or to evaluate first.
"""

from apps.registry.selectors.adaptations import *  # noqa: F403
from apps.registry.selectors.comparison import *  # noqa: F403
from apps.registry.selectors.leaderboard import *  # noqa: F403
from apps.registry.selectors.metamodels import *  # noqa: F403
from apps.registry.selectors.picker import *  # noqa: F403
