"""Reading the pages the tests get back: text as a person reads it, a field's error, and
what a form would submit."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser


def text(response) -> str:
    """The response's body, decoded, with HTML entities turned back into characters."""
    return html.unescape(response.content.decode())


def field_error(page: str, field: str) -> str:
    """The error list that a Django form renders under ``field``; fails the test if there is none."""
    found = re.search(rf'id="id_{field}_error">(.*?)</ul>', page, re.S)
    assert found, f"no error on {field}: {page[:2000]}"
    return found.group(1)


class _FormReader(HTMLParser):
    """Collects what a browser submits for the form ``form_id`` as rendered."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.inside = found.get("id") == self.form_id
        if not self.inside or "disabled" in found:
            return
        name = found.get("name")
        if tag == "input" and name and found.get("type", "text") not in ("submit", "button", "file"):
            if found.get("type") not in ("checkbox", "radio") or "checked" in found:
                self.values[name] = found.get("value", "on" if found.get("type") == "checkbox" else "")
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select:
            if "selected" in found or self._select not in self.values:  # else the first option
                self.values[self._select] = found.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def form_values(page: str, form_id: str) -> dict[str, str]:
    """What submitting the form ``form_id`` of ``page`` unchanged would send (its
    defaults, as a browser fills them in)."""
    reader = _FormReader(form_id)
    reader.feed(page)
    return reader.values
