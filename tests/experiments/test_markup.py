"""Notes are Markdown rendered by one function and sanitised with nh3: hostile
input never reaches the page. Checked on the function and on the pages' HTML."""

from __future__ import annotations

import re
from html import unescape as html_unescape
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from apps.experiments import services
from apps.experiments.markup import markdown_to_html
from tests.factories import ExperimentFactory, RunFactory, TaskSetVersionFactory

HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<svg onload="alert(1)"><circle/></svg>',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](  javascript:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](&#x6A;avascript&#x3A;alert(1))",
    "[x](%6Aavascript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "![x](javascript:alert(1))",
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    "<javascript:alert(1)>",
    "[x][r]\n\n[r]: javascript:alert(1)",
    '[x](https://ok.example/ "title" onmouseover="alert(1)")',
    "<iframe src=https://evil.example></iframe>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "<<script>script>alert(1)<</script>/script>",
    "`<script>` and ```\n<script>alert(1)</script>\n```",
    "> <img src=x onerror=alert(1)>\n\n- <a href=javascript:alert(1)>y</a>",
    "<details open ontoggle=alert(1)>",
    "<form action=javascript:alert(1)><button>go</button></form>",
]

SAFE_TAGS = {"h1", "h2", "h3", "p", "br", "hr", "blockquote", "pre", "code", "strong", "em", "del", "s"}
SAFE_TAGS |= {"ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td"}
SAFE_SCHEMES = ("http:", "https:", "mailto:")


class Elements(HTMLParser):
    """Every start tag and its attributes, as a browser's tokenizer reads them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def dangers(html: str) -> list[str]:
    """What in ``html`` could run script or load something: a tag outside the
    allow-list, an ``on*`` or ``style`` attribute, a URL with another scheme."""
    parser = Elements()
    parser.feed(html)
    parser.close()
    found = []
    for tag, attrs in parser.found:
        if tag not in SAFE_TAGS:
            found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name in ("style", "src", "action", "formaction"):
                found.append(f"{tag}[{name}]")
            if name == "href":
                url = re.sub(r"[\x00-\x20]", "", html_unescape(value or "")).lower()
                scheme = re.match(r"[a-z][a-z0-9+.-]*:", url)
                if scheme and not url.startswith(SAFE_SCHEMES):
                    found.append(f"href={value}")
    return found


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_markdown_is_inert(text):
    html = str(markdown_to_html(text))
    assert dangers(html) == [], html


def test_the_check_finds_what_it_looks_for():
    """The check above can fail: it catches each kind of danger in raw HTML."""
    assert dangers('<script>x</script><img src=x onerror=y><a href=" JaVa&#83;cript:x">') == [
        "<script>",
        "<img>",
        "img[src]",
        "img[onerror]",
        "href= JaVaScript:x",
    ]
    assert dangers('<a href="data:text/html,x">') == ["href=data:text/html,x"]
    assert dangers('<p style="x">') == ["p[style]"]


def test_markdown_renders_headings_lists_links_and_code():
    html = str(
        markdown_to_html(
            "# Result\n\n- one\n- two\n\n1. first\n\n[paper](https://arxiv.org/abs/1703.03400) "
            "[mail](mailto:team@example.com) [run](/runs/3/)\n\n```python\nprint('<b>')\n```\n\n"
            "| a | b |\n|---|---|\n| 1 | 2 |\n\n~~old~~ *em* **strong** `x<y`"
        )
    )
    assert "<h1>Result</h1>" in html
    assert "<ul>\n<li>one</li>" in html and "<ol>\n<li>first</li>" in html
    assert '<a href="https://arxiv.org/abs/1703.03400" rel="noopener noreferrer">paper</a>' in html
    assert '<a href="mailto:team@example.com" rel="noopener noreferrer">mail</a>' in html
    assert '<a href="/runs/3/" rel="noopener noreferrer">run</a>' in html
    assert "<pre><code>print('&lt;b&gt;')\n</code></pre>" in html
    assert "<table>" in html and "<td>1</td>" in html
    assert "<s>old</s>" in html and "<em>em</em>" in html and "<strong>strong</strong>" in html
    assert "<code>x&lt;y</code>" in html


def test_other_link_schemes_lose_their_href():
    html = str(markdown_to_html("[f](ftp://files.example/x) [s](ssh://host)"))
    assert "ftp:" not in html and "ssh:" not in html


def test_blank_notes_render_nothing():
    assert markdown_to_html("") == "" and markdown_to_html(" \n ") == ""


# -- on the pages -------------------------------------------------------------------------------


@pytest.fixture
def world(team_roles):
    team, users = team_roles
    experiment = ExperimentFactory(team=team, created_by=users["member"])
    run = RunFactory(experiment=experiment, taskset_version=TaskSetVersionFactory(taskset__team=team))
    return {"users": users, "run": run, "experiment": experiment}


def note_html(page: str) -> str:
    match = re.search(
        r'<div class="note" id="note-body">(.*?)</div>\s*<p class="muted" id="note-updated">', page, re.S
    )
    assert match, page
    return match.group(1)


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["run", "experiment"])
@pytest.mark.parametrize("who", ["viewer", "member"])
def test_hostile_notes_never_reach_the_page(client, world, kind, who):
    target = world[kind]
    hostile = "\n\n".join(HOSTILE)
    services.note_update(target=target, actor=world["users"]["member"], text=f"# Safe\n\n{hostile}")
    client.force_login(world["users"][who])
    page = client.get(reverse(f"experiments:{kind}-detail", args=[target.pk])).content.decode()
    body = note_html(page)
    assert "<h1>Safe</h1>" in body
    assert dangers(body) == [], body
    assert "<script>alert(1)</script>" not in page  # nor anywhere else (the textarea escapes it)
    assert "onerror=alert(1)>" not in page


@pytest.mark.django_db
def test_the_htmx_note_answer_is_sanitised_too(client, world):
    client.force_login(world["users"]["member"])
    url = reverse("experiments:run-note", kwargs={"pk": world["run"].pk})
    body = client.post(url, {"note": "\n\n".join(HOSTILE)}, HTTP_HX_REQUEST="true").content.decode()
    assert dangers(note_html(body)) == []
    assert "<script>" not in body
