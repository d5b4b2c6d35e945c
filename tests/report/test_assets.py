"""The report's template, stylesheet and script inline safely (tests/test_layout.py checks the wheel carries them)."""

from __future__ import annotations


from rushes.inspect import assets



def test_assets_inline_without_ending_their_element():
    page = assets.page()
    assert "<style>{css}</style>" in page and "<script>{js}</script>" in page
    assert "</script" not in assets.js().lower() and "</style" not in assets.css().lower()
    assert "rushesReport" in assets.js() and ".clip" in assets.css()
