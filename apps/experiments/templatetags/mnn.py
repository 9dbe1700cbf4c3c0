"""``{{ run|mnn_condition }}``: what an MNN run's hypernetwork reads ("description" or
"support"), '' for other algorithms (``selectors.mnn_condition_of``)."""

from __future__ import annotations

from typing import Any

from django import template

from apps.experiments.selectors import mnn_condition_of

register = template.Library()


@register.filter(name="mnn_condition")
def mnn_condition(run: Any) -> str:
    """The condition of a run (or of a meta-model: anything with ``algorithm``,
    ``config`` and ``taskset_version``)."""
    return mnn_condition_of(
        algorithm=str(run.algorithm), config=run.config, family=run.taskset_version.taskset.family
    )
