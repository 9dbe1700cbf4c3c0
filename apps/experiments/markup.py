"""Markdown notes to HTML: the one function that renders them, for every page.

markdown-it-py parses CommonMark with raw HTML turned off (a ``<script>`` in a
note is shown as text) and refuses ``javascript:``, ``vbscript:``, ``file:`` and
``data:`` links itself; nh3 (the Ammonia sanitiser) then keeps only the tags and
attributes listed here, links to http, https and mailto (and relative ones), and
sets ``rel="noopener noreferrer"`` on every link. Images are not kept: a note
cannot load anything from another site. Either step alone would do; both run.
"""

from __future__ import annotations

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

ALLOWED_TAGS = frozenset(
    {
        *(f"h{level}" for level in range(1, 7)),
        *("p", "br", "hr", "blockquote", "pre", "code", "strong", "em", "del", "s"),
        *("ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td"),
    }
)
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer"

_PARSER = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)


def markdown_to_html(text: str) -> SafeString:
    """``text`` (Markdown) as sanitised HTML, safe to put in a page as it is."""
    if not text or not text.strip():
        return mark_safe("")  # noqa: S308 - empty
    html = nh3.clean(
        _PARSER.render(text),
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    )
    return mark_safe(html)  # noqa: S308 - nh3 output, allow-listed above
