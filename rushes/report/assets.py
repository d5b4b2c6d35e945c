"""The HTML report's page template, stylesheet and script, inlined so the page opens offline.

Kept as Python strings (not package data files) so an installed ``rushes`` always carries them.
``PAGE`` is filled with ``str.format``; CSS and JS are passed in as values and are never parsed as
format strings, so their braces need no escaping.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header class="top">
  <div><h1>rushes <span class="thin">inspect</span></h1><div class="muted mono">{run_dir}</div></div>
  <div class="muted">generated {generated}</div>
</header>
<main>
<section class="stats">{stats}</section>
<section class="grid2">
  <div class="card"><h2>Rejected, per reason</h2><p class="muted small">a clip with several reasons counts once
  in each; click a reason to see its clips</p>{reasons}</div>
  <div class="card"><h2>Failed videos</h2>{failures}<h2 class="mt">Throughput</h2>{throughput}</div>
</section>
<section><h2>Score distributions <span class="legend"><i class="k"></i>kept <i class="r"></i>rejected</span></h2>
<div class="hists">{histograms}</div></section>
<section id="sheet" class="sheet">
  <div class="toolbar">
    <h2>Contact sheet</h2>
    <label>show <select id="filter"></select></label>
    <label>view <select id="view"><option value="list">list</option>
      <option value="pct">clips at score percentiles</option></select></label>
    <label id="sortwrap">sort <select id="sort"></select>
      <button id="dir" title="toggle ascending / descending">&#8595; desc</button></label>
    <label>search <input id="q" type="search" placeholder="caption, clip id, file"></label>
    <span class="spacer"></span>
    <span id="count" class="muted"></span>
    <span class="pager"><button id="prev">&#8592;</button><span id="pageinfo"></span>
      <button id="next">&#8594;</button></span>
  </div>
  <div id="rows" class="rows"></div>
</section>
</main>
<script type="application/json" id="data">{data}</script>
<script>{js}</script>
</body>
</html>
"""

CSS = """
:root { --bg:#f4f5f7; --card:#fff; --ink:#1d232b; --muted:#6b7480; --line:#e3e6ea; --keep:#1f9d77;
  --rej:#d6604d; --accent:#3366cc; --chip:#eef1f5; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
h1 { font-size:20px; margin:0; } h1 .thin { font-weight:400; color:var(--muted); }
h2 { font-size:15px; margin:0 0 8px; } h3 { font-size:13px; margin:14px 0 6px; color:var(--muted); }
.mt { margin-top:18px; } .small { font-size:12px; margin:0 0 8px; }
.muted { color:var(--muted); } .mono, code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
header.top { display:flex; justify-content:space-between; align-items:flex-end; padding:16px 24px;
  background:#1d232b; color:#fff; } header.top .muted { color:#aab3bf; font-size:12px; }
main { padding:16px 24px 48px; max-width:1600px; margin:0 auto; }
section { margin-bottom:18px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px; }
.stats { display:grid; grid-template-columns:repeat(auto-fit, minmax(170px, 1fr)); gap:12px; }
.stat { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.stat .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.stat .v { font-size:24px; font-weight:600; } .stat .sub { color:var(--muted); font-size:12px; }
.grid2 { display:grid; grid-template-columns: 1fr 1fr; gap:12px; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
.tbl { border-collapse:collapse; width:100%; font-size:13px; }
.tbl th { text-align:left; color:var(--muted); font-weight:500; border-bottom:1px solid var(--line); padding:4px 6px; }
.tbl td { border-bottom:1px solid var(--line); padding:4px 6px; vertical-align:top; }
.tbl td.num { text-align:right; font-variant-numeric: tabular-nums; white-space:nowrap; }
.tbl td.reason { font-family: ui-monospace, Menlo, monospace; }
.tbl td.path { max-width:240px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.barcell { width:40%; } .bar { height:10px; background:var(--rej); border-radius:2px; opacity:.8; }
tr.clickable { cursor:pointer; } tr.clickable:hover td { background:#f0f4ff; }
details summary { cursor:pointer; color:var(--accent); margin-top:8px; }
.legend { font-weight:400; font-size:12px; color:var(--muted); margin-left:10px; }
.legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin:0 4px 0 10px; }
.legend i.k { background:var(--keep); } .legend i.r { background:var(--rej); }
.hists { display:grid; grid-template-columns:repeat(auto-fill, minmax(300px, 1fr)); gap:12px; }
.hcard { padding:10px 12px; } .hhead { display:flex; align-items:baseline; gap:6px; }
.hhead .unit { color:var(--muted); font-size:12px; } .hbtns { margin-left:auto; display:flex; gap:4px; }
.desc { color:var(--muted); font-size:11.5px; min-height:30px; line-height:1.3; margin:2px 0 4px; }
.pcts { color:var(--muted); font-size:11.5px; font-variant-numeric: tabular-nums; }
svg.hist { width:100%; height:auto; display:block; }
svg.hist rect.kept { fill:var(--keep); } svg.hist rect.rej { fill:var(--rej); opacity:.85; }
svg.hist line.pct { stroke:#1d232b; stroke-dasharray:3 2; stroke-width:1; opacity:.6; }
svg.hist text { font-size:10px; fill:var(--muted); }
button { font:inherit; font-size:12px; border:1px solid var(--line); background:#fff; border-radius:5px;
  padding:2px 8px; cursor:pointer; color:var(--ink); } button:hover { border-color:var(--accent); }
button:disabled { opacity:.4; cursor:default; }
select { max-width:200px; }
select, input { font:inherit; font-size:13px; border:1px solid var(--line); border-radius:5px; padding:3px 6px;
  background:#fff; }
.sheet { background:var(--card); border:1px solid var(--line); border-radius:8px; }
.toolbar { position:sticky; top:0; z-index:2; display:flex; flex-wrap:wrap; align-items:center; gap:14px;
  padding:10px 14px; background:rgba(255,255,255,.96); border-bottom:1px solid var(--line);
  border-radius:8px 8px 0 0; }
.toolbar h2 { margin:0; } .toolbar label { color:var(--muted); font-size:12px; }
.spacer { flex:1; } .pager { display:flex; align-items:center; gap:6px; }
.rows { padding:4px 14px 14px; }
.clip { display:grid; grid-template-columns:auto 1fr; gap:14px; padding:10px 0; border-bottom:1px solid var(--line); }
.clip:last-child { border-bottom:0; }
.thumb { line-height:0; align-self:start; }
.thumb img, .thumb .noimg { display:block; max-width:100%; height:auto; border-radius:4px; background:#111;
  border-left:4px solid var(--keep); }
.clip.rej .thumb img, .clip.rej .thumb .noimg { border-left-color:var(--rej); }
.thumb .noimg { color:#aaa; font-size:12px; line-height:1.3; padding:8px; display:flex; align-items:center;
  justify-content:center; text-align:center; }
.info { min-width:0; } .line1 { display:flex; flex-wrap:wrap; gap:8px; align-items:center; font-size:12.5px; }
.badge { font-size:11.5px; padding:1px 7px; border-radius:10px; color:#fff; background:var(--keep); }
.badge.r { background:var(--rej); font-family: ui-monospace, Menlo, monospace; }
.plabel { font-weight:600; background:#1d232b; color:#fff; border-radius:4px; padding:1px 6px; font-size:12px; }
.src { color:var(--muted); max-width:320px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
code.id { font-size:11.5px; color:var(--muted); }
.chips { display:flex; flex-wrap:wrap; gap:4px; margin:6px 0; }
.chip { background:var(--chip); border-radius:4px; padding:0 6px; font-size:11.5px; white-space:nowrap;
  font-variant-numeric: tabular-nums; } .chip b { font-weight:500; color:var(--muted); }
.chip.hl { background:#dfe8ff; outline:1px solid #9db5ef; }
.caption { margin:0; font-size:13px; max-width:1000px; } .caption.none { color:var(--muted); font-style:italic; }
.caption .by { color:var(--muted); font-size:11px; margin-left:6px; }
.empty { padding:30px; text-align:center; color:var(--muted); }
"""

JS = r"""
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("data").textContent);
  const C = D.clips, M = D.meta, N = C.id.length;
  const SCORES = Object.keys(C.scores);
  const $ = (id) => document.getElementById(id);
  const state = { filter: "all", view: "list", sort: "", dir: -1, q: "", page: 0 };
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;"}[c]));
  const fmt = (v) => v === null || v === undefined ? "–" : (Math.abs(v) >= 1000 ? v.toFixed(0) :
    Number(v.toPrecision(3)).toString());
  const reasonsOf = (i) => C.reason[i] ? C.reason[i].split(";") : [];
  const lower = new Array(N);
  const searchText = (i) => lower[i] || (lower[i] = ((C.caption[i] || "") + " " + C.id[i] + " " + C.video[i]).toLowerCase());

  function valueOf(key, i) {
    if (key === "dur") return C.dur[i];
    if (key === "words") return C.words[i];
    const col = C.scores[key];
    return col ? col[i] : null;
  }

  function matches(i) {
    const f = state.filter;
    if (f === "kept" && !C.keep[i]) return false;
    if (f === "rejected" && C.keep[i]) return false;
    if (f.startsWith("r:") && !reasonsOf(i).includes(f.slice(2))) return false;
    if (f.startsWith("c:") && C.reason[i] !== f.slice(2)) return false;
    if (state.q && !searchText(i).includes(state.q)) return false;
    return true;
  }

  // The rows to show: filtered clips, sorted, or one clip per percentile of the chosen score.
  function selection() {
    const idx = [];
    for (let i = 0; i < N; i++) if (matches(i)) idx.push(i);
    const key = state.sort;
    if (state.view === "pct" && key) {
      const have = idx.filter((i) => valueOf(key, i) !== null).sort((a, b) => valueOf(key, a) - valueOf(key, b));
      const out = [];
      if (!have.length) return out;
      for (let p = 0; p <= 100; p += 10) {
        const k = Math.round((p / 100) * (have.length - 1));
        out.push({ i: have[k], label: "p" + p + " · " + fmt(valueOf(key, have[k])) });
      }
      return out;
    }
    if (key) {
      const d = state.dir;
      idx.sort((a, b) => {
        const va = valueOf(key, a), vb = valueOf(key, b);
        if (va === null) return vb === null ? a - b : 1;
        if (vb === null) return -1;
        return (va - vb) * d || a - b;
      });
    }
    return idx.map((i) => ({ i: i, label: null }));
  }

  function rowHtml(r) {
    const i = r.i, keep = C.keep[i];
    const w = C.thumb_w[i], h = M.thumb_h;
    const size = w ? ' width="' + w + '" height="' + h + '"' : ' height="' + h + '"';
    const col = 'style="width:' + M.thumb_col + 'px"';
    const thumb = C.thumb[i]
      ? '<img loading="lazy" decoding="async" src="' + esc(C.thumb[i]) + '"' + size + ' alt="frames of ' + esc(C.id[i]) + '">'
      : '<div class="noimg" style="height:' + h + 'px">' + esc(C.thumb_err[i] || "no thumbnail") + "</div>";
    const badges = keep ? '<span class="badge">kept</span>'
      : reasonsOf(i).map((x) => '<span class="badge r">' + esc(x) + "</span>").join("");
    const label = r.label ? '<span class="plabel">' + esc(r.label) + "</span>" : "";
    const file = C.video[i].split("/").pop();
    const span = fmt(C.start[i]) + "–" + fmt(C.end[i]) + " s (" + fmt(C.dur[i]) + " s)";
    const chips = SCORES.map((s) => '<span class="chip' + (s === state.sort ? " hl" : "") + '" title="' +
      esc((M.descriptions[s] || "") + (M.units[s] ? " [" + M.units[s] + "]" : "")) + '"><b>' + esc(s) + "</b> " +
      fmt(C.scores[s][i]) + "</span>").join("") +
      (C.camera[i] ? '<span class="chip"><b>camera</b> ' + esc(C.camera[i]) + "</span>" : "");
    let cap;
    if (C.caption[i] !== null) cap = '<p class="caption">' + esc(C.caption[i]) + '<span class="by">' + esc(C.caption_by[i]) + "</span></p>";
    else if (C.caption_err[i]) cap = '<p class="caption none">caption failed: ' + esc(C.caption_err[i]) + "</p>";
    else cap = '<p class="caption none">' + (keep ? "not captioned yet" : "rejected clips are not captioned") + "</p>";
    return '<article class="clip ' + (keep ? "keep" : "rej") + '" data-id="' + esc(C.id[i]) + '" data-reasons="' +
      esc(C.reason[i]) + '"><div class="thumb" ' + col + ">" + thumb + '</div><div class="info"><div class="line1">' + label +
      badges + '<span class="src" title="' + esc(C.video[i]) + '">' + esc(file) + "</span><span>" + span +
      '</span><code class="id">' + esc(C.id[i]) + '</code></div><div class="chips">' + chips + "</div>" + cap +
      "</div></article>";
  }

  // Ready = DOMContentLoaded, then every thumbnail in the first screen loaded (or failed). Tests and the
  // bench read window.__rushesReady (ms since navigation start) and <html data-ready="1">.
  let readyMarked = false;
  function markReady() {
    if (readyMarked) return;
    readyMarked = true;
    const vh = window.innerHeight;
    const imgs = Array.from(document.querySelectorAll("#rows img")).filter((im) => {
      const b = im.getBoundingClientRect();
      return b.bottom > 0 && b.top < vh;
    });
    Promise.all(imgs.map((im) => im.complete ? 1 : new Promise((res) => {
      im.addEventListener("load", res, { once: true });
      im.addEventListener("error", res, { once: true });
    }))).then(() => {
      window.__rushesReady = performance.now();
      window.__rushesReadyImages = imgs.length;
      document.documentElement.dataset.ready = "1";
    });
  }
  function markReadyAfterLayout() {
    // Two frames: the first lays out the rows (and scrolls to a #fragment), the second sees final positions.
    requestAnimationFrame(() => requestAnimationFrame(markReady));
  }

  function render() {
    const sel = selection();
    const size = M.page_size;
    const pages = Math.max(1, Math.ceil(sel.length / size));
    state.page = Math.min(state.page, pages - 1);
    const part = sel.slice(state.page * size, (state.page + 1) * size);
    $("rows").innerHTML = part.length ? part.map(rowHtml).join("") : '<div class="empty">no clips match</div>';
    $("count").textContent = sel.length.toLocaleString() + " of " + N.toLocaleString() + " clips";
    $("pageinfo").textContent = "page " + (state.page + 1) + " / " + pages;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    $("sortwrap").firstChild.textContent = state.view === "pct" ? "score " : "sort ";
    $("dir").style.display = state.view === "pct" ? "none" : "";
    window.__rushesRenders = (window.__rushesRenders || 0) + 1;
  }

  function fillControls() {
    const counts = {}, combos = {};
    let kept = 0;
    for (let i = 0; i < N; i++) {
      if (C.keep[i]) { kept++; continue; }
      for (const r of reasonsOf(i)) counts[r] = (counts[r] || 0) + 1;
      if (C.reason[i].includes(";")) combos[C.reason[i]] = (combos[C.reason[i]] || 0) + 1;
    }
    const opt = (v, t) => '<option value="' + esc(v) + '">' + esc(t) + "</option>";
    const byCount = (o) => Object.keys(o).sort((a, b) => o[b] - o[a] || (a < b ? -1 : 1));
    let h = opt("all", "all clips (" + N + ")") + opt("kept", "kept (" + kept + ")") + opt("rejected", "rejected (" + (N - kept) + ")");
    const rs = byCount(counts);
    if (rs.length) h += '<optgroup label="reason">' + rs.map((r) => opt("r:" + r, r + " (" + counts[r] + ")")).join("") + "</optgroup>";
    const cs = byCount(combos);
    if (cs.length) h += '<optgroup label="combination">' + cs.map((r) => opt("c:" + r, r + " (" + combos[r] + ")")).join("") + "</optgroup>";
    $("filter").innerHTML = h;
    const sorts = [["", "original order"], ["dur", "duration_s"]].concat(SCORES.map((s) => [s, s]));
    if (C.words.some((x) => x !== null)) sorts.push(["words", "caption words"]);
    $("sort").innerHTML = sorts.map((s) => opt(s[0], s[1])).join("");
  }

  function setFilter(v) {
    state.filter = v; state.page = 0; $("filter").value = v; render();
    $("sheet").scrollIntoView();
  }

  function bind() {
    $("filter").addEventListener("change", (e) => { state.filter = e.target.value; state.page = 0; render(); });
    $("sort").addEventListener("change", (e) => { state.sort = e.target.value; state.page = 0; render(); });
    $("view").addEventListener("change", (e) => {
      state.view = e.target.value; state.page = 0;
      if (state.view === "pct" && !state.sort && SCORES.length) { state.sort = SCORES[0]; $("sort").value = state.sort; }
      render();
    });
    $("dir").addEventListener("click", () => {
      state.dir = -state.dir; $("dir").innerHTML = state.dir < 0 ? "&#8595; desc" : "&#8593; asc"; render();
    });
    let timer = null;
    $("q").addEventListener("input", (e) => {
      clearTimeout(timer);
      timer = setTimeout(() => { state.q = e.target.value.trim().toLowerCase(); state.page = 0; render(); }, 150);
    });
    $("prev").addEventListener("click", () => { state.page--; render(); $("sheet").scrollIntoView(); });
    $("next").addEventListener("click", () => { state.page++; render(); $("sheet").scrollIntoView(); });
    document.querySelectorAll("tr[data-filter]").forEach((tr) =>
      tr.addEventListener("click", () => setFilter(tr.dataset.filter)));
    document.querySelectorAll("button[data-sort]").forEach((b) => b.addEventListener("click", () => {
      state.view = "list"; $("view").value = "list"; state.sort = b.dataset.sort; $("sort").value = state.sort;
      state.page = 0; render(); $("sheet").scrollIntoView();
    }));
    document.querySelectorAll("button[data-pct]").forEach((b) => b.addEventListener("click", () => {
      state.view = "pct"; $("view").value = "pct"; state.sort = b.dataset.pct; $("sort").value = state.sort;
      state.page = 0; render(); $("sheet").scrollIntoView();
    }));
  }

  fillControls();
  bind();
  render();
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", markReadyAfterLayout);
  else markReadyAfterLayout();
  // A filter in the address (report.html#filter=r:dark) opens the sheet filtered: shareable views.
  const m = location.hash.match(/^#filter=(.+)$/);
  if (m) setFilter(decodeURIComponent(m[1]));
  window.rushesReport = { state: state, render: render, setFilter: setFilter, selection: selection };
})();
"""
