"""A Markdown document (the runbook) as a page of the operations UI.

Links in notifications and incident evidence point at `<ops>/runbook#<alert>`; the page is the
document rendered with markdown-it-py (CommonMark plus tables). Raw HTML in the source is
escaped, not passed through (`html: False`), and link targets go through markdown-it's
validation (no `javascript:`). Headings get GitHub's ids, so `runbook.md#x` anchors written for
the repository work here too.
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


def render_markdown(text: str) -> str:
    """HTML of a Markdown text; any HTML in the text comes out escaped."""
    return str(_MARKDOWN.render(text))


class MarkdownDocument:
    """A Markdown file rendered once, again when the file changes (an edited runbook shows
    without a restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._html = ""

    def html(self) -> str:
        """The rendered document; raises OSError when the file cannot be read."""
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._html = render_markdown(self.path.read_text(encoding="utf-8"))
                self._stamp = stamp
            return self._html
