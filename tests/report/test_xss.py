"""Every string of a run the report shows is text, never markup: a hostile manifest cannot run script.

Paths, clip ids, reject reasons, captions, captioner ids, prompt versions, camera labels, error messages,
stage names in summary.json and the run directory's own name all carry a payload; the page is opened in
headless Chromium, every filter, sort and view is rendered, and the payload must show up as text with no
element or script of its own.
"""

from __future__ import annotations

import pytest

from rushes.manifests import store
from rushes.inspect.page import ReportConfig, build_report
from rushes.testing.browser import Browser, find_chromium

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found (apt install chromium, or "
                                                          "set RUSHES_CHROMIUM to its path)")


def evil(field: str) -> str:
    """A payload naming its field: an element that must never exist, a script that must never run."""
    return (f"<rushes-x>{field}</rushes-x><img src=x onerror=\"(window.__pwned=window.__pwned||[]).push('{field}')\">"
            f"</script><script>(window.__pwned=window.__pwned||[]).push('{field}-script')</script>\"'&amp;")


FIELDS = ("video_path", "failed_path", "error_stage", "error_message", "clip_id", "reason", "camera", "caption",
          "captioner", "prompt_version", "caption_error", "stage_name", "rate_name")


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("xss")
    # A folder name is user input too (the page header and title show it); it cannot hold '/'.
    run = root / "run<rushes-x>dir<img src=x onerror=\"(window.__pwned=window.__pwned||[]).push('dir')\">"
    ev = {f: evil(f) for f in FIELDS}
    ev["reason"] = ev["reason"].replace(";", ",")  # ';' separates reasons; the rest of the payload stays
    store.write_part(run, "videos", [
        {"video_id": "v1", "path": "/in/" + ev["video_path"], "status": "ok", "duration_s": 4.0},
        {"video_id": "v2", "path": "/in/" + ev["failed_path"], "status": "error", "error_stage": ev["error_stage"],
         "error_message": ev["error_message"]}])
    store.write_part(run, "clips", [
        {"clip_id": ev["clip_id"], "video_id": "v1", "start_s": 0.0, "end_s": 2.0, "duration_s": 2.0, "keep": True,
         "camera_motion": ev["camera"], "sharpness": 10.0, "motion_mean": 0.1},
        {"clip_id": "c2", "video_id": "v1", "start_s": 2.0, "end_s": 4.0, "duration_s": 2.0, "keep": False,
         "reject_reason": f"dark;{ev['reason']}", "clip_path": "media/" + ev["video_path"], "sharpness": 5.0,
         "motion_mean": 0.2}])
    store.write_part(run, "captions", [
        {"caption_id": "k1", "clip_id": ev["clip_id"], "caption": ev["caption"], "captioner": ev["captioner"],
         "prompt_version": ev["prompt_version"], "status": "ok", "output_tokens": 3},
        {"caption_id": "k2", "clip_id": "c2", "captioner": "m", "prompt_version": "p", "status": "error",
         "error_stage": "generate", "error_message": ev["caption_error"]}])
    store.update_summary(run, ev["stage_name"], {"wall_s": 1.0, ev["rate_name"] + "_per_s": 2.0})
    result = build_report(run, root / "report.html", ReportConfig(make_thumbs=False))
    return result, ev


def _views(b: Browser) -> list[str]:
    """Render every filter option, every sort, and the percentile view; the names of what was rendered."""
    done = []
    filters = b.evaluate("Array.from(document.querySelectorAll('#filter option')).map(o => o.value)")
    sorts = b.evaluate("Array.from(document.querySelectorAll('#sort option')).map(o => o.value)")
    for f in filters:
        b.evaluate(f"window.rushesReport.setFilter({f!r})")
        done.append(f"filter {f}")
    b.evaluate("window.rushesReport.setFilter('all')")
    for s in sorts:
        for view in ("list", "pct"):
            b.evaluate(f"(() => {{ const r = window.rushesReport; r.state.sort = {s!r}; r.state.view = {view!r}; "
                       f"r.render(); }})()")
            done.append(f"{view} {s}")
    b.evaluate("(() => { const r = window.rushesReport; r.state.view = 'list'; r.state.sort = ''; r.render(); })()")
    return done


def test_no_user_string_becomes_markup_or_script(hostile_report):
    result, ev = hostile_report
    with Browser(CHROMIUM) as b:
        b.navigate(result.html_path.as_uri())
        b.wait_for("document.documentElement.dataset.ready === '1'")
        views = _views(b)
        assert len(views) > 6 and any(v.startswith("filter r:") for v in views)
        b.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        b.evaluate("new Promise(r => setTimeout(r, 300))", await_promise=True)  # let any onerror fire
        assert b.evaluate("window.__pwned || null") is None
        assert b.evaluate("document.querySelectorAll('rushes-x').length") == 0
        text = b.evaluate("(() => { const c = document.body.cloneNode(true); "
                          "c.querySelectorAll('script').forEach(s => s.remove()); return c.textContent; })()")
        html_title = b.evaluate("document.title")
    assert html_title.endswith("run<rushes-x>dir<img src=x onerror=\"(window.__pwned=window.__pwned||[]).push('dir')\">")
    # The page shows each value as its own text (file paths by their base name, in full in a tooltip).
    # (A rate's name is shown after its last '.', summary.json nesting being dotted paths.)
    missing = [f for f in FIELDS if f not in ("video_path", "failed_path") and ev[f].rsplit(".", 1)[-1] not in text]
    assert not missing, f"not shown as text: {missing}"
