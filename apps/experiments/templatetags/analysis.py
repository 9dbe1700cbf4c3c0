"""Figures as analysis pages show them.

``{{ p|p_value }}``: a p-value (``< 0.001``, else 3 digits; '' for None), the rule of
``apps.reviews.comparison.display.p_text``. ``{{ share|share }}``: a forest share as a
percentage. ``{{ items|forest_caption }}``: what an importance table's random forest
is worth (``analysis/forest.py``), or '' when no forest was fitted.
"""

from __future__ import annotations

from collections.abc import Sequence

from django import template

from apps.experiments.analysis.forest import FOREST_MIN_RUNS, FOREST_TREES
from apps.experiments.analysis.importance import FOREST_CLEAR_R2, Importance
from apps.reviews.comparison.display import p_text

register = template.Library()


@register.filter(name="p_value")
def p_value(p: float | None) -> str:
    return p_text(p)


@register.filter(name="share")
def share(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


@register.filter(name="forest_caption")
def forest_caption(items: Sequence[Importance]) -> str:
    fitted = next((item for item in items if item.forest_r2 is not None), None)
    if fitted is None:
        if any(item.n for item in items):
            return f"Forest share: fitted from {FOREST_MIN_RUNS} runs with the metric on."
        return ""
    r2 = fitted.forest_r2
    head = f"Forest share: a random forest of {FOREST_TREES} trees, out-of-bag R² {r2:.2f}"
    if r2 <= 0:
        return f"{head}: it predicts a run no better than the mean, so its shares say nothing here."
    if r2 < FOREST_CLEAR_R2:
        return f"{head}: a weak fit; read its shares with care."
    return (
        f"{head}. A setting with most of it but no clear rank link matters without being "
        "monotone (best in the middle of its range): see the parallel coordinates."
    )
