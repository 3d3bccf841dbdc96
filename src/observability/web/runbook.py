"""A Markdown document (the runbook) as a page of the operations UI.

Links in notifications and incident evidence point at `<ops>/runbook#<alert>`; the page is the
document rendered with markdown-it-py (CommonMark plus tables). Raw HTML in the source is
escaped, not passed through (`html: False`), and link targets go through markdown-it's
validation (no `javascript:`). Headings get GitHub's ids, so `runbook.md#x` anchors written for
the repository work here too. Links to sibling documents (`troubleshooting.md#redis-down`)
point at `<link_base>/troubleshooting.md#redis-down`, where the UI serves the same folder's
Markdown files; without a `link_base` they stay as written.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from markdown_it import MarkdownIt
from mdit_py_plugins.anchors import anchors_plugin

__all__ = ["MarkdownDocument", "github_slug", "render_markdown"]


def github_slug(heading: str) -> str:
    """GitHub's heading id: lower case, punctuation removed (`_` and `-` kept), spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


# Duplicate headings get -1, -2 (the plugin's unique slugs), as on GitHub.
_MARKDOWN = (
    MarkdownIt("commonmark", {"html": False})
    .enable("table")
    .use(anchors_plugin, min_level=1, max_level=6, slug_func=github_slug)
)


_SIBLING = re.compile(r"^([\w-]+\.md)(#[\w-]*)?$")


def render_markdown(text: str, link_base: str | None = None) -> str:
    """HTML of a Markdown text; any HTML in the text comes out escaped. With `link_base`,
    links to sibling documents (`x.md`, `x.md#anchor`) go under it."""
    env: dict[str, object] = {}
    tokens = _MARKDOWN.parse(text, env)
    if link_base is not None:
        for token in tokens:
            for child in token.children or ():
                href = child.attrGet("href") if child.type == "link_open" else None
                found = _SIBLING.match(href) if isinstance(href, str) else None
                if found:
                    child.attrSet("href", f"{link_base}/{found.group(1)}{found.group(2) or ''}")
    return str(_MARKDOWN.renderer.render(tokens, _MARKDOWN.options, env))


class MarkdownDocument:
    """A Markdown file rendered once, again when the file changes (an edited runbook shows
    without a restart)."""

    def __init__(self, path: Path, link_base: str | None = None) -> None:
        self.path = path
        self.link_base = link_base
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._html = ""

    def html(self) -> str:
        """The rendered document; raises OSError when the file cannot be read."""
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                text = self.path.read_text(encoding="utf-8")
                self._html = render_markdown(text, self.link_base)
                self._stamp = stamp
            return self._html
