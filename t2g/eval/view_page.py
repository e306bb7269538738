"""The page `t2g view` writes: HTML, CSS and script in one string, nothing fetched from anywhere.

`PAGE` has two holes: %TITLE% (HTML-escaped by `t2g.eval.view.render`) and %DATA% (the rows as JSON
with `<`, `>` and `&` escaped, inside a `<script type="application/json">` element). The script reads
that JSON and builds every element from it with `textContent`, so a text holding markup shows as
text. It draws one page of the filtered rows at a time; offsets are Python string indices (code
points), so it cuts texts with `Array.from`, not with JavaScript's UTF-16 indices.

The DOM it draws, which tests read back from a real browser:
    article.row#row-<id>[.bad]      one text; .text holds its characters, in order
      span.seg[data-s, data-x, data-e]  a stretch [data-s, data-x) covered by the entities data-e
                                        (indices into the row's entities; "" for a relation endpoint alone)
      li.ent.st-<status>[data-i]      an entity (status: correct, missed, spurious, none without gold)
      li.rel.st-<status>[data-r]      a relation: head -type-> tail; hover or click marks both ends
"""

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE%</title>
<style>
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d1d1f; background: #f6f6f8; }
header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ddd; padding: 8px 16px; z-index: 2; }
h1 { font-size: 17px; margin: 0 0 4px; }
.controls, .legend, .pager { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; margin: 4px 0; }
.legend .sw { display: inline-block; padding: 0 6px; border-radius: 3px; }
main { padding: 8px 16px 40px; max-width: 1100px; }
article.row { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; margin: 10px 0; }
article.row.target { box-shadow: 0 0 0 3px #4c72b0; }
.rowhead { font-size: 12px; color: #666; display: flex; gap: 10px; align-items: baseline; }
.rowhead a { color: #4c72b0; text-decoration: none; }
.f1 { font-variant-numeric: tabular-nums; }
.err { color: #b00020; }
.text { font-size: 16px; margin: 6px 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.seg { border-radius: 3px; padding: 1px 0; }
.seg.multi { box-shadow: inset 0 -3px 0 rgba(0, 0, 0, .35); }
.seg.st-correct { border-bottom: 2px solid #1a7f37; }
.seg.st-spurious { border-bottom: 2px solid #cf222e; }
.seg.st-missed { outline: 2px dashed #9a6700; outline-offset: -1px; }
.seg.hl-h, .seg.hl-t { outline: 2px solid #000; outline-offset: 1px; }
.seg.hl-t { outline-style: double; outline-width: 3px; }
ul { list-style: none; padding: 0; margin: 4px 0; display: flex; flex-wrap: wrap; gap: 4px 8px; font-size: 13px; }
ul.rels { display: block; }
li.ent { border: 1px solid #ccc; border-radius: 10px; padding: 0 8px; cursor: default; }
li.rel { padding: 1px 6px; border: 0 solid #ccc; border-left-width: 3px; margin: 2px 0; cursor: pointer; }
li.rel.pinned { background: #fff3bf; }
li.st-correct { border-color: #1a7f37; }
li.st-spurious { border-color: #cf222e; }
li.st-missed { border-color: #9a6700; border-style: dashed; }
.tag { font-size: 11px; color: #555; margin-left: 4px; }
.st-correct > .tag.st { color: #1a7f37; }
.st-spurious > .tag.st { color: #cf222e; }
.st-missed > .tag.st { color: #9a6700; }
.arrow { color: #666; }
details pre { white-space: pre-wrap; font-size: 12px; background: #f3f3f3; padding: 6px; }
button { font: inherit; }
</style>
</head>
<body>
<header>
  <h1 id="title">%TITLE%</h1>
  <div id="totals"></div>
  <div class="legend" id="legend"></div>
  <div class="controls">
    <label><input type="checkbox" id="only-errors"> only rows with errors</label>
    <label>type <select id="type-filter"><option value="">all</option></select></label>
    <input type="search" id="search" placeholder="search texts and ids" size="28">
  </div>
  <div class="pager"><button id="prev">&larr; previous</button><span id="count"></span><button id="next">next &rarr;</button></div>
</header>
<main id="rows"></main>
<script type="application/json" id="t2g-data">%DATA%</script>
<script>
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("t2g-data").textContent);
  const ROWS = D.rows, SIZE = D.page_size;
  const STATUS = { correct: "\u2713 correct", missed: "missed", spurious: "spurious" };
  const state = { page: 0, errors: false, type: "", q: "" };
  let shown = ROWS;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function header() {
    if (D.totals) {
      document.getElementById("totals").textContent = "strict micro F1 over " + ROWS.length + " texts: entities " +
        (100 * D.totals.entity_f1).toFixed(1) + ", relations " + (100 * D.totals.relation_f1).toFixed(1);
    }
    const legend = document.getElementById("legend");
    Object.keys(D.colours).forEach(function (t) {
      const sw = el("span", "sw", t);
      sw.style.background = D.colours[t];
      legend.appendChild(sw);
    });
    if (D.gold) {
      ["correct", "missed", "spurious"].forEach(function (k) {
        const s = el("span", "seg st-" + k, STATUS[k]);
        legend.appendChild(s);
      });
    }
    const select = document.getElementById("type-filter");
    D.types.forEach(function (t) { const o = el("option", null, t); o.value = t; select.appendChild(o); });
  }

  function matches(r) {
    if (state.errors && !r.bad) return false;
    if (state.type && r.etypes.indexOf(state.type) < 0 && r.rtypes.indexOf(state.type) < 0) return false;
    if (state.q) {
      if (r.lc === undefined) r.lc = (r.id + "\n" + r.text).toLowerCase();
      if (r.lc.indexOf(state.q) < 0) return false;
    }
    return true;
  }

  function refilter() {
    shown = ROWS.filter(matches);
    state.page = Math.min(state.page, Math.max(0, Math.ceil(shown.length / SIZE) - 1));
  }

  function segments(r, box) {
    const cps = Array.from(r.text);
    const cuts = new Set([0, cps.length]);
    const add = function (spans) { spans.forEach(function (p) { cuts.add(p[0]); cuts.add(p[1]); }); };
    r.ents.forEach(function (e) { add(e.s); });
    r.rels.forEach(function (x) { add(x.hs); add(x.ts); });
    const pts = Array.from(cuts).filter(function (c) { return c >= 0 && c <= cps.length; }).sort(function (a, b) { return a - b; });
    for (let k = 0; k + 1 < pts.length; k++) {
      const a = pts[k], b = pts[k + 1], piece = cps.slice(a, b).join("");
      const cover = [];
      let inner = -1, innerLen = Infinity, endpoint = false;
      r.ents.forEach(function (e, i) {
        e.s.forEach(function (p) {
          if (p[0] <= a && b <= p[1]) {
            if (cover.indexOf(i) < 0) cover.push(i);
            if (p[1] - p[0] < innerLen) { inner = i; innerLen = p[1] - p[0]; }
          }
        });
      });
      r.rels.forEach(function (x) {
        x.hs.concat(x.ts).forEach(function (p) { if (p[0] <= a && b <= p[1]) endpoint = true; });
      });
      if (!cover.length && !endpoint) { box.appendChild(document.createTextNode(piece)); continue; }
      const s = el("span", "seg", piece);
      s.dataset.s = a; s.dataset.x = b; s.dataset.e = cover.join(" ");
      if (inner >= 0) {
        const e = r.ents[inner];
        s.style.background = D.colours[e.y] || "#e0e0e0";
        if (e.k) s.classList.add("st-" + e.k);
        s.title = cover.map(function (i) { return r.ents[i].t + " (" + r.ents[i].y + (r.ents[i].k ? ", " + r.ents[i].k : "") + ")"; }).join("; ");
      }
      if (cover.length > 1) s.classList.add("multi");
      box.appendChild(s);
    }
  }

  function mark(article, heads, tails, on) {
    article.querySelectorAll(".seg").forEach(function (s) {
      const a = +s.dataset.s, b = +s.dataset.x;
      const inside = function (spans) { return spans.some(function (p) { return p[0] <= a && b <= p[1]; }); };
      s.classList.toggle("hl-h", on && inside(heads));
      s.classList.toggle("hl-t", on && inside(tails));
    });
  }

  function statusTag(li, k) {
    if (k) { li.classList.add("st-" + k); li.appendChild(el("span", "tag st", STATUS[k])); }
    else li.classList.add("st-none");
  }

  function drawRow(r) {
    const art = el("article", "row" + (r.bad ? " bad" : ""));
    art.id = "row-" + r.id;
    const head = el("div", "rowhead");
    const a = el("a", null, "#" + r.id);
    a.href = "#" + encodeURIComponent("row-" + r.id);
    head.appendChild(a);
    if (r.f1) head.appendChild(el("span", "f1", "entity F1 " + (100 * r.f1[0]).toFixed(0) + " \u00b7 relation F1 " + (100 * r.f1[1]).toFixed(0)));
    if (r.error) head.appendChild(el("span", "err", r.error + (r.detail ? ": " + r.detail : "")));
    art.appendChild(head);
    const text = el("div", "text");
    segments(r, text);
    art.appendChild(text);
    const ents = el("ul", "ents");
    r.ents.forEach(function (e, i) {
      const li = el("li", "ent", e.t);
      li.dataset.i = i;
      li.style.background = D.colours[e.y] || "";
      li.appendChild(el("span", "tag", e.y));
      if (!e.s.length) li.appendChild(el("span", "tag err", "not in text"));
      statusTag(li, e.k);
      li.addEventListener("mouseenter", function () { mark(art, e.s, [], true); });
      li.addEventListener("mouseleave", function () { mark(art, [], [], false); });
      ents.appendChild(li);
    });
    art.appendChild(ents);
    const rels = el("ul", "rels");
    r.rels.forEach(function (x, j) {
      const li = el("li", "rel");
      li.dataset.r = j;
      li.appendChild(el("span", "head", x.h));
      li.appendChild(el("span", "arrow", " -" + x.y + "-> "));
      li.appendChild(el("span", "tail", x.t));
      statusTag(li, x.k);
      li.addEventListener("mouseenter", function () { mark(art, x.hs, x.ts, true); });
      li.addEventListener("mouseleave", function () {
        const pinned = art.querySelector("li.rel.pinned");
        if (pinned) { const p = r.rels[+pinned.dataset.r]; mark(art, p.hs, p.ts, true); } else mark(art, [], [], false);
      });
      li.addEventListener("click", function () {
        const was = li.classList.contains("pinned");
        art.querySelectorAll("li.rel.pinned").forEach(function (o) { o.classList.remove("pinned"); });
        li.classList.toggle("pinned", !was);
        mark(art, x.hs, x.ts, !was);
      });
      rels.appendChild(li);
    });
    art.appendChild(rels);
    if (r.completion) {
      const d = el("details");
      d.appendChild(el("summary", null, "the model's answer"));
      d.appendChild(el("pre", null, r.completion));
      art.appendChild(d);
    }
    return art;
  }

  function draw() {
    const main = document.getElementById("rows");
    main.textContent = "";
    const first = state.page * SIZE, page = shown.slice(first, first + SIZE);
    const frag = document.createDocumentFragment();
    page.forEach(function (r) { frag.appendChild(drawRow(r)); });
    main.appendChild(frag);
    const pages = Math.max(1, Math.ceil(shown.length / SIZE));
    document.getElementById("count").textContent = (shown.length ? (first + 1) + "\u2013" + (first + page.length) : "0") +
      " of " + shown.length + " rows" + (shown.length !== ROWS.length ? " (" + ROWS.length + " in all)" : "") +
      ", page " + (state.page + 1) + " of " + pages;
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page + 1 >= pages;
  }

  function goToHash() {
    const want = decodeURIComponent(location.hash.slice(1));
    if (want.indexOf("row-") !== 0) return;
    const id = want.slice(4);
    let at = shown.findIndex(function (r) { return r.id === id; });
    if (at < 0 && ROWS.some(function (r) { return r.id === id; })) {  // filtered out: show everything again
      state.errors = false; state.type = ""; state.q = "";
      document.getElementById("only-errors").checked = false;
      document.getElementById("type-filter").value = "";
      document.getElementById("search").value = "";
      refilter();
      at = shown.findIndex(function (r) { return r.id === id; });
    }
    if (at < 0) return;
    state.page = Math.floor(at / SIZE);
    draw();
    const target = document.getElementById(want);
    target.classList.add("target");
    target.scrollIntoView();
  }

  function wire() {
    const redo = function () { state.page = 0; refilter(); draw(); };
    document.getElementById("only-errors").addEventListener("change", function (ev) { state.errors = ev.target.checked; redo(); });
    document.getElementById("type-filter").addEventListener("change", function (ev) { state.type = ev.target.value; redo(); });
    document.getElementById("search").addEventListener("input", function (ev) { state.q = ev.target.value.toLowerCase(); redo(); });
    document.getElementById("prev").addEventListener("click", function () { state.page = Math.max(0, state.page - 1); draw(); window.scrollTo(0, 0); });
    document.getElementById("next").addEventListener("click", function () { state.page += 1; draw(); window.scrollTo(0, 0); });
    window.addEventListener("hashchange", goToHash);
  }

  header();
  wire();
  refilter();
  draw();
  goToHash();
})();
</script>
</body>
</html>
"""
