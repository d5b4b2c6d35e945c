"""The HTML report's page template, stylesheet and script, read from package data and inlined into the page.

``page.html``, ``report.css`` and ``report.js`` sit beside this module and ship in the wheel as package data
(``[tool.setuptools.package-data]`` in pyproject.toml). The page is filled with ``str.format``; the CSS and
JS are passed in as values and never parsed as format strings, so their braces need no escaping.

Usage::

    from rushes.inspect import assets
    page = assets.page().format(title=..., css=assets.css(), js=assets.js(), ...)
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def _text(name: str, closing_tag: str | None = None) -> str:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    # Inlined inside <script>/<style>: the closing tag in the file itself would end the element early.
    if closing_tag and closing_tag in text.lower():
        raise ValueError(f"rushes/inspect/{name} contains {closing_tag!r}, which would end the inline element; "
                         f"split the string (e.g. '<' + '/script')")
    return text


def page() -> str:
    """The HTML template (``str.format`` fields: title, run_dir, generated, css, stats, reasons, failures,
    throughput, filter, histograms, data, js)."""
    return _text("page.html")


def css() -> str:
    """The report's stylesheet."""
    return _text("report.css", "</style")


def js() -> str:
    """The report's script: renders the contact sheet from the embedded JSON document."""
    return _text("report.js", "</script")
