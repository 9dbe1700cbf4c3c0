"""Reads for reviews; permission filtering happens here, once.

``reviews``: verdict histories and latest verdicts. ``comparison`` (side by side) and
``leaderboard`` read stored evaluations through ``apps/reviews/comparison/`` (load,
analysis, display); ``picker``: what the compare page offers to pick, or to
evaluate first.
"""

from apps.reviews.selectors.comparison import *  # noqa: F403
from apps.reviews.selectors.leaderboard import *  # noqa: F403
from apps.reviews.selectors.picker import *  # noqa: F403
from apps.reviews.selectors.reviews import *  # noqa: F403
