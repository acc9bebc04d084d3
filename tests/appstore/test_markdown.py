"""Markdown for descriptions and release notes: the safe subset renders, nothing else gets through."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appstore.markdown import plain_text, render_markdown

ALLOWED_TAGS = {"p", "em", "strong", "code", "pre", "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
                "blockquote", "hr", "br"}
ALLOWED_ATTRS = {"a": {"href", "rel", "title"}, "ol": {"start"}, "code": {"class"}}


class Audit(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def audit(html: str) -> list[tuple[str, dict]]:
    parser = Audit()
    parser.feed(html)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS, (tag, html)
        assert set(attrs) <= ALLOWED_ATTRS.get(tag, set()), (tag, attrs, html)
        if tag == "a":
            href = attrs["href"]
            assert href.lower().startswith(("http://", "https://", "mailto:")), href
            assert attrs["rel"] == "nofollow noopener noreferrer"
        if tag == "code" and "class" in attrs:
            assert attrs["class"].startswith("language-")
    return parser.tags


def test_the_safe_subset_renders():
    html = render_markdown("# Title\n\nSome *em*, **strong**, `code` and a [link](https://example.org/a?b=1&c=2).\n\n"
                           "- one\n- two\n\n3. three\n\n```sh\necho hi\n```\n\n> quote\n\n---\n\n"
                           "Mail [me](mailto:me@example.org) or see <https://example.org>.\n")
    tags = [tag for tag, _ in audit(html)]
    for tag in ("h1", "em", "strong", "code", "a", "ul", "li", "ol", "pre", "blockquote", "hr"):
        assert tag in tags
    assert '<a href="https://example.org/a?b=1&amp;c=2" rel="nofollow noopener noreferrer">link</a>' in html
    assert '<a href="mailto:me@example.org"' in html


def test_heading_offset():
    assert render_markdown("# A\n\n###### B", heading_offset=1) == "<h2>A</h2>\n<h6>B</h6>\n"


XSS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg/onload=alert(1)>",
    "<a href=\"javascript:alert(1)\">x</a>",
    "[x](javascript:alert(1))",
    "[x](JAVASCRIPT:alert(1))",
    "[x](java\nscript:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](javascript&#58;alert(1))",
    "[x](%6Aavascript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](file:///etc/passwd)",
    "[x](//evil.example/x)",
    "[x](/relative)",
    "<javascript:alert(1)>",
    "![x](javascript:alert(1))",
    "![x\" onerror=\"alert(1)](https://example.org/i.png)",
    "[x](https://example.org \"title\" onmouseover=\"alert(1)\")",
    "[x](https://example.org\" onmouseover=\"alert(1))",
    "[x](<https://example.org> \"a\\\" onclick=\\\"alert(1)\")",
    "<iframe src=https://evil.example></iframe>",
    "<style>body{display:none}</style>",
    "<!-- <script>alert(1)</script> -->",
    "```html\n<script>alert(1)</script>\n```",
    "`<script>`",
    "<div onclick=alert(1)>*md*</div>",
    "[ref]\n\n[ref]: javascript:alert(1)",
    "<details open ontoggle=alert(1)>",
    "&lt;script&gt;",
    "\x00<script>",
]


@pytest.mark.parametrize("payload", XSS)
def test_xss_payloads_are_inert(payload):
    html = render_markdown(payload)
    audit(html)
    lowered = html.lower()
    assert "<script" not in lowered and "<img" not in lowered and "<iframe" not in lowered
    assert 'href="javascript' not in lowered and 'href="data' not in lowered and 'href="vbscript' not in lowered


def test_raw_html_is_shown_as_text():
    assert render_markdown("<b>bold</b>") == "<p>&lt;b&gt;bold&lt;/b&gt;</p>\n"


markdownish = st.lists(st.sampled_from(list("<>\"'&=:/()[]!*_`#-\\ \nabcjvsrpt1") + [
    "javascript:", "<script>", "](", "onerror=", "http://", "mailto:", "<a href=", "\""]), max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(markdownish)
def test_random_input_only_yields_allowed_markup(text):
    audit(render_markdown(text))


def test_plain_text_summary():
    assert plain_text("# Title\n\nbody") == "body"  # a heading repeats the title: the paragraph says more
    assert plain_text("# Only a title") == "Only a title"
    assert plain_text("Some **bold**\nand `code` <b>") == "Some bold and code <b>"
    assert plain_text("See [the docs](https://example.org/x).") == "See the docs."
    assert plain_text("word " * 100, limit=20) == "word word word…"
    assert plain_text("") == "" and plain_text("---\n") == ""


def test_plain_text_keeps_a_list_as_items_not_flattened_markdown():
    text = "It runs:\n\n- `vote`: a web app\n- *redis*: a queue\n  - nested detail\n\nMore text."
    assert plain_text(text) == "It runs: vote: a web app; redis: a queue"
    assert plain_text("- one\n- two\n\n1. three") == "one; two"
    assert plain_text("First.\n\n- not part of it") == "First."
    assert plain_text("> quoted\n\nBody.") == "Body."


def test_huge_input_is_cut():
    assert len(render_markdown("a" * 1_000_000)) < 200_000
