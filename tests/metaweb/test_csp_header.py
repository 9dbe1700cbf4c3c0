"""Every response carries the Content-Security-Policy (django-csp); no template has an
inline style or script (the browser check is ``tests/e2e/test_csp.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.mark.django_db
def test_the_login_page_carries_the_policy(client):
    policy = client.get("/accounts/login/")["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'" and directives["img-src"] == "'self' data:"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'self'"


def test_no_template_has_inline_styles_or_scripts():
    inline = re.compile(
        r"""style=["']|<style\b|<script(?![^>]*\b(src=|type="application/json"))|\son[a-z]+="""
    )
    found = [
        f"{path.relative_to(TEMPLATES)}:{number}"
        for path in TEMPLATES.rglob("*.html")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if inline.search(line)
    ]
    assert found == []
