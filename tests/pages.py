"""Reading the pages the tests get back: text as a person reads it, and a field's error."""

from __future__ import annotations

import html
import re


def text(response) -> str:
    """The response's body, decoded, with HTML entities turned back into characters."""
    return html.unescape(response.content.decode())


def field_error(page: str, field: str) -> str:
    """The error list that a Django form renders under ``field``; fails the test if there is none."""
    found = re.search(rf'id="id_{field}_error">(.*?)</ul>', page, re.S)
    assert found, f"no error on {field}: {page[:2000]}"
    return found.group(1)
