"""The report's clips play, the active filter and its thresholds show, a rejected clip's failing scores are
highlighted and each source video has a timeline of its cuts: checked in headless Chromium on a run that
``rushes filter --preset strict`` judged. The screenshot is printed (``-s``) for a person to look at."""

from __future__ import annotations

import shutil

import pytest

from rushes.inspect.page import ReportConfig, build_report
from rushes.inspect.thumbs import ThumbConfig
from rushes.testing.browser import Browser, find_chromium

CHROMIUM = find_chromium()


@pytest.fixture(scope="module")
def filtered(run_dir, tmp_path_factory):
    """A copy of the fixture run judged by the strict preset (scores it lacks are not judged), and its report."""
    from rushes.curate.filter import filter_run

    root = tmp_path_factory.mktemp("filtered")
    run = root / "run"
    shutil.copytree(run_dir, run)
    result = filter_run(run, preset="strict", overrides={"reject_missing": False, "min_short_side_px": 100})
    assert (result["preset"], result["kept"]) == ("strict", 1)  # c4
    report = build_report(run, root / "report.html", ReportConfig(thumbs=ThumbConfig(workers=1)))
    return run, report


@pytest.fixture(scope="module")
def page(filtered):
    if CHROMIUM is None:
        pytest.skip("headless Chromium not found (apt install chromium, or set RUSHES_CHROMIUM to its path)")
    with Browser(CHROMIUM, width=1400, height=1000) as b:
        b.navigate(filtered[1].html_path.as_uri())
        b.wait_for("document.documentElement.dataset.ready === '1'")
        yield b


def _row(i: str) -> str:
    return f"document.querySelector('#rows article[data-id=\"{i}\"]')"


def test_the_active_preset_and_its_thresholds_show(page):
    assert page.evaluate("document.getElementById('preset').textContent") == "strict"
    # strict's min_sharpness 150 is a line on the sharpness histogram, the failing side shaded
    lines = page.evaluate("Array.from(document.querySelectorAll('.hcard')).filter(c => c.querySelector('b')"
                          ".textContent === 'sharpness').map(c => Array.from(c.querySelectorAll('g.thr'))"
                          ".map(g => g.dataset.side + ' ' + g.dataset.value))[0]")
    assert lines == ["min 150.0"]
    motion = page.evaluate("Array.from(document.querySelectorAll('.hcard')).filter(c => c.querySelector('b')"
                           ".textContent === 'motion_mean').map(c => Array.from(c.querySelectorAll('g.thr title'))"
                           ".map(t => t.textContent))[0]")
    assert len(motion) == 2 and "min_motion = 0.01" in motion[0]
    assert "max_motion = 0.5" in motion[1] and "off the chart" in motion[1]  # values end at 0.3
    drawn = page.evaluate("Array.from(document.querySelectorAll('.filterbar .setting.drawn b')).map(b => b.textContent)")
    assert drawn == ["max_motion", "min_motion", "min_sharpness"]  # the settings of scores with a histogram
    assert "min_short_side_px 100" in page.evaluate("document.querySelector('.filterbar').textContent")


def test_the_failing_score_of_a_rejected_clip_is_highlighted(page):
    # c1: sharpness 100 < 150 (blurry), motion 0.10 passes; c4 is kept: nothing highlighted
    fails = page.evaluate(f"Array.from({_row('c1')}.querySelectorAll('.chip.fail b')).map(b => b.textContent)")
    assert fails == ["sharpness"]
    assert "min_sharpness = 150" in page.evaluate(f"{_row('c1')}.querySelector('.chip.fail').title")
    assert page.evaluate(f"{_row('c4')}.querySelectorAll('.fail').length") == 0
    assert page.evaluate(f"{_row('c4')}.className") == "clip keep"
    # c2: motion_mean 0.01 as stored (float32, just under 0.01) fails strict's min_motion 0.01, sharpness 50 fails
    assert page.evaluate(f"Array.from({_row('c2')}.querySelectorAll('.chip.fail b')).map(b => b.textContent)") \
        == ["motion_mean", "sharpness"]
    # c5 is too short: its span is highlighted
    assert page.evaluate(f"{_row('c5')}.querySelector('span.fail').title") == "fails the clip-length rule"


def test_each_clip_plays_its_file_or_its_span(page):
    # c4 has a clip file (played from its start); c3 is the span 4-6 s of a.mp4 (a #t=4,6 media fragment)
    for clip_id, start in (("c4", 0.0), ("c3", 4.0)):
        page.evaluate(f"{_row(clip_id)}.querySelector('button.play').click()")
        video = f"{_row(clip_id)}.querySelector('video')"
        page.wait_for(f"{video} && {video}.readyState >= 2", timeout_s=20)
        assert page.evaluate(f"{video}.error") is None
        assert abs(page.evaluate(f"{video}.currentTime") - start) < 0.5
        assert page.evaluate(f"{video}.videoWidth") == 160
    assert page.evaluate(f"{_row('c3')}.querySelector('video').getAttribute('src')").endswith("a.mp4#t=4.000,6.000")


def test_each_source_video_has_a_timeline_of_its_cuts(page, tmp_path):
    bars = page.evaluate("Array.from(document.querySelectorAll('#tl .tl')).map(t => [t.querySelector('.tlname')"
                         ".textContent, Array.from(t.querySelectorAll('.seg')).map(s => s.className + ' ' + "
                         "s.style.left + ' ' + s.style.width)])")
    assert [b[0] for b in bars] == ["a.mp4", "b.mp4"]
    # a.mp4 (6 s): c1 0-2, c2 2-4, c3 4-6 each a third of the bar; c4 (kept) is the first half of b.mp4 (4 s)
    assert [s.split()[2:] for s in bars[0][1]] == [["0%", "33.333%"], ["33.333%", "33.333%"], ["66.667%", "33.333%"]]
    assert bars[1][1][0] == "seg k 0% 50%"
    page.evaluate("document.querySelector('#tl .seg[data-seg=\"2\"]').click()")  # c3 in the sheet
    assert page.evaluate("Array.from(document.querySelectorAll('#rows article')).map(a => a.dataset.id)") == ["c3"]
    page.evaluate("document.getElementById('q').value = ''; document.getElementById('q')"
                  ".dispatchEvent(new Event('input'))")
    page.wait_for("document.querySelectorAll('#rows article').length === 6")
    print(f"\nscreenshot of the filtered report: {page.screenshot(tmp_path / 'report-media.png')}")
