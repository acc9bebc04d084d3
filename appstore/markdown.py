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


def plain_text(text: str, limit: int = 200) -> str:
    """The first paragraph (or heading) of `text` as plain text, at most `limit` characters:
    for catalog cards, feeds and `<meta>` descriptions. Not HTML-escaped: the caller escapes."""
    if not text:
        return ""
    md = _RENDERERS.get(0) or _RENDERERS.setdefault(0, _build(0))
    for token in md.parse(text[:MAX_SOURCE_CHARS]):
        if token.type == "inline" and token.children is not None:
            words = "".join(" " if child.type in ("softbreak", "hardbreak") else child.content
                            for child in token.children)
            words = " ".join(words.replace("\n", " ").split())
            if words:
                return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"
    return ""
