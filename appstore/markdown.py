"""Safe Markdown for app descriptions and release notes, which anyone who can publish writes.

CommonMark through markdown-it-py with raw HTML off: every `<` a user types comes out escaped.
On top of that:

- links must be absolute http, https or mailto URLs; any other link (javascript:, data:,
  vbscript:, relative paths) is shown as its text. Links get `rel="nofollow noopener noreferrer"`;
- images are not embedded (a published description must not make every visitor's browser fetch
  a third party's URL): `![alt](url)` shows as `!` and a link to the image;
- headings can be shifted down (`heading_offset`), so a description's `#` fits under a page's
  own `<h1>`.

What is left: paragraphs, emphasis, inline code and code blocks, lists, block quotes, rules,
headings and links.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

MAX_SOURCE_CHARS = 100_000
_SAFE_URL = re.compile(r"^(?:https?://[^\s/?#]+[^\s]*|mailto:[^\s@]+@[^\s@]+)$", re.IGNORECASE)
_LINK_REL = "nofollow noopener noreferrer"


def _validate_link(url: str) -> bool:
    return bool(_SAFE_URL.match(url.strip())) and not any(ord(c) < 32 for c in url)


def _build(heading_offset: int) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable(["image", "html_block", "html_inline"])
    md.validateLink = _validate_link  # type: ignore[method-assign]

    def link_open(renderer, tokens, idx, options, env):
        tokens[idx].attrSet("rel", _LINK_REL)
        return renderer.renderToken(tokens, idx, options, env)

    def heading(renderer, tokens, idx, options, env):
        token = tokens[idx]
        level = min(6, int(token.tag[1]) + heading_offset)
        token.tag = f"h{level}"
        return renderer.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    if heading_offset:
        md.add_render_rule("heading_open", heading)
        md.add_render_rule("heading_close", heading)
    return md


_RENDERERS: dict[int, MarkdownIt] = {}


def render_markdown(text: str, *, heading_offset: int = 0) -> str:
    """HTML for `text`, safe to put in a page as is. Input past MAX_SOURCE_CHARS is cut."""
    if not text:
        return ""
    offset = max(0, min(5, heading_offset))
    md = _RENDERERS.get(offset)
    if md is None:
        md = _RENDERERS[offset] = _build(offset)
    return md.render(text[:MAX_SOURCE_CHARS])


def _inline_text(token) -> str:
    """The words of an inline token: emphasis marks dropped, code spans and link texts kept."""
    words = "".join(" " if child.type in ("softbreak", "hardbreak") else child.content
                    for child in token.children or ())
    return " ".join(words.split())


def _cut(words: str, limit: int) -> str:
    if len(words) <= limit:
        return words
    cut = words[: limit - 1]
    if " " in cut[limit // 2:]:  # end on a whole word when one ends in the second half
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "…"


def plain_text(text: str, limit: int = 200) -> str:
    """A plain-text summary of `text`, at most `limit` characters: for catalog cards, search,
    feeds and `<meta>` descriptions. Not HTML-escaped: the caller escapes.

    It is the first paragraph outside any list, quote or heading, as words (no `**`, no
    backticks, link texts without their URLs). A paragraph that introduces a list (it ends with
    ':') is followed by the list's items, joined by '; ', so "It runs: - a - b" reads "It runs:
    a; b". Without such a paragraph: the first list's items, else the first heading."""
    if not text:
        return ""
    md = _RENDERERS.get(0) or _RENDERERS.setdefault(0, _build(0))
    tokens = md.parse(text[:MAX_SOURCE_CHARS])
    lists = quotes = 0  # how deep inside lists and block quotes
    lead = heading = ""
    items: list[str] = []
    in_heading = False
    for token in tokens:
        if token.type in ("bullet_list_open", "ordered_list_open"):
            lists += 1
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            lists -= 1
            if lists == 0 and quotes == 0 and items:
                break  # the first list ends the summary
        elif token.type == "blockquote_open":
            quotes += 1
        elif token.type == "blockquote_close":
            quotes -= 1
        elif token.type == "heading_open":
            in_heading = True
        elif token.type == "heading_close":
            in_heading = False
        elif token.type == "inline":
            words = _inline_text(token)
            if not words or quotes:
                continue
            if in_heading:
                heading = heading or words
            elif lists == 0:
                if lead:
                    break  # a second paragraph: the first one did not introduce a list
                lead = words
                if not lead.endswith(":"):
                    break
            elif lists == 1:  # an item's own paragraph, not a nested list's
                items.append(words)
    if lead and items:
        summary = lead + " " + "; ".join(items)
    else:
        summary = lead or "; ".join(items) or heading
    return _cut(summary, limit)
