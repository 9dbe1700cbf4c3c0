"""``{{ p|p_value }}``: a p-value as pages show it (``< 0.001``, else 3 digits; '' for
None), the rule of ``apps.reviews.comparison.display.p_text``."""

from __future__ import annotations

from django import template

from apps.reviews.comparison.display import p_text

register = template.Library()


@register.filter(name="p_value")
def p_value(p: float | None) -> str:
    return p_text(p)
