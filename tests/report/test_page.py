"""The HTML report, checked from the page itself in headless Chromium.

The screenshot of the fixture report is written under pytest's tmp dir; its path is printed (run with
``-s`` to see it) for a person to look at.
"""

from __future__ import annotations

import html
import re

import pytest

from rushes.manifests import store
from rushes.manifests.schema import schema_for
from rushes.testing.browser import Browser, find_chromium
from rushes.inspect.page import ReportConfig, build_report
from rushes.inspect.thumbs import ThumbConfig

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found (apt install chromium, "
                                                              "or set RUSHES_CHROMIUM to its path)")


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = build_report(run_dir, out, ReportConfig(thumbs=ThumbConfig(workers=1)))
    assert (result.clips, result.thumbs_ok, result.thumbs_failed) == (6, 6, 0)
    return result


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("headless Chromium not found (apt install chromium, or set RUSHES_CHROMIUM to its path)")
    with Browser(CHROMIUM, width=1400, height=1000) as b:
        yield b


def test_report_is_self_contained(report):
    page = report.html_path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page must not reference the network"
    assert "<link" not in page and "@import" not in page
    thumbs = sorted(p.name for p in (report.files_dir / "thumbs").iterdir())
    assert thumbs == [f"c{i}-4f72.jpg" for i in range(1, 7)]
    assert 'loading="lazy"' in page
    # Units and descriptions of the score columns come from the schema metadata.
    field = schema_for("clips").field("motion_mean")
    assert html.escape(field.metadata[b"description"].decode()) in page
    assert f'<span class="unit">{field.metadata[b"unit"].decode()}</span>' in page


def _rows(b: Browser) -> list[str]:
    return b.evaluate("Array.from(document.querySelectorAll('#rows article')).map(a => a.dataset.id)")


def _choose(b: Browser, select_id: str, value: str) -> None:
    b.evaluate(f"(() => {{ const s = document.getElementById({select_id!r}); s.value = {value!r}; "
               f"s.dispatchEvent(new Event('change')); }})()")


@needs_chromium
def test_thumbnails_load_and_filters_change_the_sheet(report, browser, tmp_path):
    b = browser
    b.navigate(report.html_path.as_uri())
    b.wait_for("document.documentElement.dataset.ready === '1'")
    assert _rows(b) == ["c1", "c2", "c3", "c4", "c5", "c6"]
    # Lazy images load once scrolled into view; every one must decode to a real picture.
    b.evaluate("document.getElementById('sheet').scrollIntoView()")
    b.wait_for("Array.from(document.querySelectorAll('#rows img')).every(i => i.complete)")
    widths = b.evaluate("Array.from(document.querySelectorAll('#rows img')).map(i => i.naturalWidth)")
    assert len(widths) == 6 and all(w == 4 * 96 + 3 * 2 for w in widths)  # 4 frames of 96x72 + gaps
    shot = b.screenshot(tmp_path / "report.png")
    print(f"\nscreenshot of the fixture report: {shot}")

    _choose(b, "filter", "r:dark")
    assert _rows(b) == ["c2", "c3", "c6"]
    assert b.evaluate("document.getElementById('count').textContent") == "3 of 6 clips"
    _choose(b, "filter", "kept")
    assert _rows(b) == ["c1", "c4"]
    b.evaluate("document.querySelector('tr[data-filter=\"r:too_short\"]').click()")  # the reasons table
    assert _rows(b) == ["c5"]

    _choose(b, "filter", "all")
    _choose(b, "sort", "sharpness")  # descending by default
    assert _rows(b) == ["c4", "c1", "c2", "c6", "c3", "c5"]
    b.evaluate("document.getElementById('q').value = 'ball'; "
               "document.getElementById('q').dispatchEvent(new Event('input'))")
    b.wait_for("document.querySelectorAll('#rows article').length === 1")
    assert _rows(b) == ["c1"]


@needs_chromium
def test_percentile_view_picks_clips_across_the_range(report, browser):
    b = browser
    b.navigate(report.html_path.as_uri())
    b.evaluate("document.querySelector('button[data-pct=\"motion_mean\"]').click()")
    labels = b.evaluate("Array.from(document.querySelectorAll('#rows .plabel')).map(e => e.textContent)")
    assert labels[0] == "p0 · 0.01" and labels[-1] == "p100 · 0.3" and len(labels) == 11
    rows = _rows(b)  # values 0.01 (c2) 0.05 (c3) 0.1 (c1) 0.2 (c4) 0.3 (c5); c6 has no value
    assert rows[0] == "c2" and rows[5] == "c1" and rows[-1] == "c5" and "c6" not in rows


@needs_chromium
def test_large_run_renders_one_page_at_a_time(tmp_path, browser):
    clips = [{"clip_id": f"x{i:04d}", "video_id": "v", "start_s": float(i), "end_s": i + 1.0, "duration_s": 1.0,
              "keep": i % 3 != 0, "reject_reason": None if i % 3 else "dark", "sharpness": float(i)}
             for i in range(1200)]
    store.write_part(tmp_path / "run", "videos", [{"video_id": "v", "path": "/missing.mp4", "status": "ok"}])
    store.write_part(tmp_path / "run", "clips", clips)
    nasty = '</script><img src=x onerror="window.__pwned = 1"> & more'  # text from a model is data, not markup
    store.write_part(tmp_path / "run", "captions", [{"caption_id": "k", "clip_id": "x0001", "caption": nasty,
                                                      "status": "ok", "captioner": "m", "prompt_version": "p"}])
    result = build_report(tmp_path / "run", tmp_path / "big.html", ReportConfig(make_thumbs=False, page_size=50))
    b = browser
    b.navigate(result.html_path.as_uri())
    assert len(_rows(b)) == 50 and b.evaluate("document.getElementById('pageinfo').textContent") == "page 1 / 24"
    caption = b.evaluate("document.querySelector('article[data-id=\"x0001\"] .caption').firstChild.textContent")
    assert caption == nasty and b.evaluate("window.__pwned") is None
    b.evaluate("document.getElementById('next').click()")
    assert _rows(b)[0] == "x0050"
    _choose(b, "filter", "r:dark")
    assert b.evaluate("document.getElementById('count').textContent") == "400 of 1,200 clips"
    assert b.evaluate("document.getElementById('pageinfo').textContent") == "page 1 / 8"


def test_cli_writes_the_report_and_rejects_bad_settings(run_dir, tmp_path, inspect, capsys):
    out = tmp_path / "r.html"
    assert inspect(["inspect", str(run_dir), "--html", str(out), "--frames", "3", "--thumb-height", "48"]) == 0
    assert "6 ok, 0 failed" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "r_files" / "thumbs").iterdir())[0] == "c1-3f48.jpg"
    assert inspect(["inspect", str(run_dir), "--html", str(out), "--frames", "0"]) == 2
    assert "argument --frames: must be in 1..8, got 0" in capsys.readouterr().err


def test_the_report_never_overwrites_a_manifest_part_or_a_folder(run_dir, tmp_path, inspect, capsys):
    part = sorted((run_dir / "clips").glob("*.parquet"))[0]
    before = part.read_bytes()
    for target, why in ((part, "Parquet file"), (run_dir / "clips" / "report.html", "own clips/ folder"),
                        (tmp_path, "is a folder")):
        assert inspect(["inspect", str(run_dir), "--html", str(target), "--no-thumbs"]) == 2
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err, err
    assert part.read_bytes() == before and not (run_dir / "clips" / "report.html").exists()
