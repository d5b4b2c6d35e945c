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

  // The active filter (rushes.inspect.thresholds): a rejected clip's failing scores are highlighted.
  const F = M.filter || { thresholds: {}, camera: [] };
  const failsOf = (i) => (C.fails && C.fails[i]) || [];
  function failTitle(s) {
    const t = F.thresholds[s];
    if (!t) return "";
    const parts = [];
    if (t.min !== null) parts.push(t.min_field + " = " + fmt(t.min));
    if (t.max !== null) parts.push(t.max_field + " = " + fmt(t.max));
    return " · fails " + parts.join(", ");
  }

  // A clip plays in place of its strip: its clip file, or its span of the source (a #t=start,end fragment).
  function playerHtml(i) {
    return '<video controls autoplay muted playsinline preload="auto" src="' + esc(C.play[i]) + '" height="' +
      M.thumb_h * 2 + '"></video><button class="close" data-close="' + i + '" title="back to the frames">&#215;</button>';
  }

  function rowHtml(r) {
    const i = r.i, keep = C.keep[i];
    const w = C.thumb_w[i], h = M.thumb_h;
    const size = w ? ' width="' + w + '" height="' + h + '"' : ' height="' + h + '"';
    const col = 'style="width:' + M.thumb_col + 'px"';
    const strip = C.thumb[i]
      ? '<img loading="lazy" decoding="async" src="' + esc(C.thumb[i]) + '"' + size + ' alt="frames of ' + esc(C.id[i]) + '">'
      : '<div class="noimg" style="height:' + h + 'px">' + esc(C.thumb_err[i] || "no thumbnail") + "</div>";
    const play = C.play && C.play[i]
      ? '<button class="play" data-play="' + i + '" title="play this clip">&#9654;</button>'
      : '<span class="noplay" title="' + esc((C.play_err && C.play_err[i]) || "no playable file") + '">no video</span>';
    const thumb = strip + play;
    const fails = failsOf(i);
    const badges = keep ? '<span class="badge">kept</span>'
      : reasonsOf(i).map((x) => '<span class="badge r">' + esc(x) + "</span>").join("");
    const label = r.label ? '<span class="plabel">' + esc(r.label) + "</span>" : "";
    const file = C.video[i].split("/").pop();
    const spanText = fmt(C.start[i]) + "–" + fmt(C.end[i]) + " s (" + fmt(C.dur[i]) + " s)";
    const span = fails.includes("dur") ? '<span class="fail" title="fails the clip-length rule">' + spanText + "</span>" : spanText;
    const chips = SCORES.map((s) => {
      const bad = fails.includes(s);
      return '<span class="chip' + (s === state.sort ? " hl" : "") + (bad ? " fail" : "") + '" title="' +
        esc((M.descriptions[s] || "") + (M.units[s] ? " [" + M.units[s] + "]" : "") + (bad ? failTitle(s) : "")) +
        '"><b>' + esc(s) + "</b> " + fmt(C.scores[s][i]) + "</span>";
    }).join("") +
      (C.camera[i] ? '<span class="chip' + (fails.includes("camera") ? ' fail" title="the filter rejects camera motion ' +
        esc(F.camera.join(", ")) : "") + '"><b>camera</b> ' + esc(C.camera[i]) + "</span>" : "") +
      (C.c2pa && C.c2pa[i] ? '<span class="chip' +
        (fails.includes("c2pa") ? ' fail" title="its C2PA manifest says it ' +
        'was made by a generative model (ai_generated)' : "") + '"><b>c2pa</b> ' + esc(C.c2pa[i]) + "</span>" : "");
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

  // One bar per source video: its clips' spans coloured kept/rejected; a click shows the clip in the sheet.
  function renderTimelines() {
    const videos = M.videos || [], byVideo = videos.map(() => []);
    for (let i = 0; i < N; i++) if (C.vidx && byVideo[C.vidx[i]]) byVideo[C.vidx[i]].push(i);
    const pct = (x, d) => Math.max(0, Math.min(100, (100 * x) / d)).toFixed(3);
    $("tl").innerHTML = videos.map((v, k) => {
      const d = v.dur || Math.max.apply(null, byVideo[k].map((i) => C.end[i] || 0).concat([1]));
      const segs = byVideo[k].map((i) => {
        const left = pct(C.start[i] || 0, d), width = Math.max(0.2, pct((C.end[i] || 0) - (C.start[i] || 0), d));
        const why = C.keep[i] ? "kept" : "rejected: " + (C.reason[i] || "");
        return '<a class="seg ' + (C.keep[i] ? "k" : "r") + '" data-seg="' + i + '" style="left:' + left + "%;width:" +
          width + '%" title="' + esc(C.id[i] + " · " + fmt(C.start[i]) + "–" + fmt(C.end[i]) + " s · " + why) + '"></a>';
      }).join("");
      const kept = byVideo[k].filter((i) => C.keep[i]).length;
      return '<div class="tl"><div class="tlname" title="' + esc(v.path) + '">' + esc(v.path.split("/").pop()) +
        '</div><div class="tlbar">' + segs + '</div><div class="tlinfo">' + kept + " of " + byVideo[k].length +
        " kept · " + fmt(d) + " s</div></div>";
    }).join("") || '<p class="muted">no clips yet</p>';
  }

  function showClip(i) {
    state.filter = "all"; $("filter").value = "all"; state.q = C.id[i].toLowerCase(); $("q").value = C.id[i];
    state.view = "list"; $("view").value = "list"; state.page = 0; render();
    const row = document.querySelector('#rows article[data-id="' + CSS.escape(C.id[i]) + '"]');
    if (row) row.scrollIntoView();
  }

  function bindMedia() {
    $("rows").addEventListener("click", (e) => {
      const play = e.target.closest("button[data-play]"), close = e.target.closest("button[data-close]");
      if (play) play.parentElement.innerHTML = playerHtml(Number(play.dataset.play));
      if (close) render();
    });
    $("tl").addEventListener("click", (e) => {
      const seg = e.target.closest("a[data-seg]");
      if (seg) showClip(Number(seg.dataset.seg));
    });
  }

  fillControls();
  bind();
  bindMedia();
  renderTimelines();
  render();
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", markReadyAfterLayout);
  else markReadyAfterLayout();
  // A filter in the address (report.html#filter=r:dark) opens the sheet filtered: shareable views.
  const m = location.hash.match(/^#filter=(.+)$/);
  if (m) setFilter(decodeURIComponent(m[1]));
  window.rushesReport = { state: state, render: render, setFilter: setFilter, selection: selection, showClip: showClip };
})();
