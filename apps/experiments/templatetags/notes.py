"""``{{ run.note|markdown }}``: a note rendered by ``apps.experiments.markup``."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from apps.experiments.markup import markdown_to_html

register = template.Library()


@register.filter(name="markdown")
def markdown(text: str | None) -> SafeString:
    return markdown_to_html(text or "")
