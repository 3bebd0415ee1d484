// RLM trajectory viewer. Builds the page from the embedded JSON with textContent only
// (model output is untrusted), and renders lazily: a virtualized iteration list, one
// iteration's details at a time, paginated sub-calls, child trajectories on expand.
"use strict";
(function () {
  const t0 = performance.now();
  const DATA = JSON.parse(document.getElementById("rlm-data").textContent);
  const tParsed = performance.now();
  const SC = DATA.subcall_fields;
  const SF = DATA.summary_fields;
  const ITS = DATA.iterations;
  const SUM = DATA.summary.map(function (row) {
    const o = {};
    SF.forEach(function (k, i) { o[k] = row[i]; });
    return o;
  });
  const ROW_H = 52;
  const SC_PAGE = 25;
  const CLIP = 6000;

  // ---------- small helpers ----------
  function h(tag, props) {
    const e = document.createElement(tag);
    if (props) {
      for (const k in props) {
        const v = props[k];
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") e.className = v;
        else if (k === "text") e.textContent = String(v);
        else if (typeof v === "function") e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (let i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }
  function add(e, c) {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) c.forEach(function (x) { add(e, x); });
    else e.append(c instanceof Node ? c : String(c));
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  function num(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); }
  function tok(n) {
    n = Number(n || 0);
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 1 : 2).replace(/\.?0+$/, "") + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1).replace(/\.0$/, "") + "k";
    return n.toLocaleString("en-US");
  }
  function cost(c) {
    if (c === null || c === undefined) return "n/a";
    if (c === 0) return "$0";
    if (c < 0.01) return "$" + c.toFixed(5);
    if (c < 10) return "$" + c.toFixed(4);
    return "$" + c.toFixed(2);
  }
  function secs(s) {
    s = Number(s || 0);
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    const m = Math.floor(s / 60);
    return m + "m " + String(Math.round(s - m * 60)).padStart(2, "0") + "s";
  }
  // Axis maximum rounded up so that its quarters (the grid lines) are short round numbers.
  const NICE = [1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10];
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    const m = v / p;
    for (const n of NICE) if (m <= n + 1e-9) return n * p;
    return 10 * p;
  }
  function addCost(a, b) {
    if ((a === null || a === undefined) && (b === null || b === undefined)) return null;
    return (a || 0) + (b || 0);
  }
  function str(v) {
    if (v === null || v === undefined) return "";
    return typeof v === "string" ? v : JSON.stringify(v, null, 2);
  }
  function oneLine(s, n) {
    s = str(s).replace(/\s+/g, " ").trim();
    return s.length > n ? s.slice(0, n) + "…" : s;
  }
  function subcall(a) {
    if (!Array.isArray(a)) return a;
    const o = {};
    SC.forEach(function (k, i) { o[k] = a[i]; });
    return o;
  }
  function stat(label, value) { return h("span", { class: "stat" }, label + " ", h("b", { text: value })); }
  function badge(text, kind, title) { return h("span", { class: "badge " + (kind || ""), text: text, title: title }); }
  function statusKind(s) {
    return s === "final" ? "ok" : s === "error" ? "err" : s ? "warn" : "err";
  }

  // Long text: show the head and a button that reveals the rest on demand.
  function clipped(tag, cls, text, limit) {
    text = str(text);
    limit = limit || CLIP;
    const e = h(tag, { class: cls });
    if (text.length <= limit) { e.textContent = text; return e; }
    e.textContent = text.slice(0, limit);
    const more = h("button", {
      class: "btn more",
      text: "Show all (" + num(text.length) + " characters)",
      onclick: function () { e.textContent = text; more.remove(); },
    });
    return h("div", null, e, more);
  }
  function output(label, text, kind) {
    if (!text) return null;
    return h("div", null, h("div", { class: "outlabel", text: label }), clipped("pre", "out " + (kind || ""), text));
  }

  // ---------- Python highlighter ----------
  const KW = new Set(("False None True and as assert async await break class continue def del elif else " +
    "except finally for from global if import in is lambda nonlocal not or pass raise return try while " +
    "with yield match case").split(" "));
  const BI = new Set(("print len range enumerate zip map filter sorted sum min max list dict set tuple str " +
    "int float bool isinstance open any all abs round repr type super reversed next iter hasattr getattr " +
    "Exception ValueError KeyError TypeError self").split(" "));
  const RLMF = new Set("llm_query llm_query_batched rlm_query rlm_query_batched FINAL FINAL_VAR SHOW_VARS context".split(" "));
  const TOKEN = /([rRbBuUfF]{0,2}"""[\s\S]*?(?:"""|$)|[rRbBuUfF]{0,2}'''[\s\S]*?(?:'''|$))|([rRbBuUfF]{0,2}"(?:\\.|[^"\\\n])*"?|[rRbBuUfF]{0,2}'(?:\\.|[^'\\\n])*'?)|(#[^\n]*)|(\b0[xXoObB][\da-fA-F_]+\b|\b\d[\d_]*\.?[\d_]*(?:[eE][+-]?\d+)?j?|\.\d+)|(@[A-Za-z_][\w.]*)|([A-Za-z_]\w*)/g;
  function highlight(code) {
    const frag = document.createDocumentFragment();
    let last = 0, prev = "", m;
    TOKEN.lastIndex = 0;
    while ((m = TOKEN.exec(code)) !== null) {
      if (m[0] === "") { TOKEN.lastIndex++; continue; }
      if (m.index > last) frag.append(code.slice(last, m.index));
      let cls = null;
      if (m[1] || m[2]) cls = "s";
      else if (m[3]) cls = "c";
      else if (m[4]) cls = "n";
      else if (m[5]) cls = "d";
      else if (m[6]) {
        const w = m[6];
        if (KW.has(w)) cls = "k";
        else if (RLMF.has(w)) cls = "r";
        else if (prev === "def" || prev === "class") cls = "f";
        else if (BI.has(w)) cls = "b";
        else if (/^\s*\(/.test(code.slice(TOKEN.lastIndex, TOKEN.lastIndex + 8))) cls = "f";
        prev = w;
      }
      if (cls) frag.append(h("span", { class: "tok-" + cls, text: m[0] }));
      else frag.append(m[0]);
      last = TOKEN.lastIndex;
    }
    if (last < code.length) frag.append(code.slice(last));
    return frag;
  }
  function codeView(code) {
    code = str(code).replace(/\n$/, "");
    const lines = code.split("\n").length;
    const gutter = [];
    for (let i = 1; i <= lines; i++) gutter.push(i);
    const pre = h("pre", { class: "code" });
    if (code.length > 200000) pre.textContent = code; // too big to colour cheaply
    else pre.append(highlight(code));
    return h("div", { class: "codewrap" }, h("pre", { class: "gutter", "aria-hidden": "true", text: gutter.join("\n") }), pre);
  }
  // Root responses are markdown-ish: highlight fenced code, keep the rest as plain text.
  // A fence that ran as one of the iteration's code blocks is shown once, in that block's
  // card next to its output; the response keeps a link to it.
  function responseView(text, blocks, cardId) {
    text = str(text);
    const box = h("div", { class: "block-body" });
    const fence = /```([\w-]*)[^\n]*\n([\s\S]*?)(?:```|$)/g;
    const ran = (blocks || []).map(function (b) { return str(b.code).trim(); });
    let last = 0, m;
    while ((m = fence.exec(text)) !== null) {
      const before = text.slice(last, m.index).trim();
      if (before) box.append(clipped("div", "prose", before));
      const k = cardId ? ran.indexOf(m[2].trim()) : -1;
      if (k >= 0) {
        const lines = m[2].trim().split("\n").length;
        box.append(h("button", {
          class: "coderef", title: "Show code block " + (k + 1),
          onclick: function () { const el = document.getElementById(cardId + "-" + k); if (el) el.scrollIntoView({ behavior: "smooth", block: "start" }); },
        }, h("span", { class: "tok-k", text: m[1] || "code" }), " · code block " + (k + 1) + " · " + lines + " line" + (lines === 1 ? "" : "s") + " · shown below with its output ↓"));
      } else {
        box.append(codeView(m[2]));
      }
      last = fence.lastIndex;
    }
    const rest = text.slice(last).trim();
    if (rest) box.append(clipped("div", "prose", rest));
    if (!box.firstChild) box.append(h("div", { class: "muted", text: "(empty response)" }));
    return box;
  }

  // ---------- header, overview, summary ----------
  const meta = DATA.meta || {};
  const cfg = meta.config || {};
  const result = DATA.result;
  const usage = DATA.usage || {};
  const status = result ? result.status : null;

  function renderHeader() {
    const info = document.getElementById("run-info");
    add(info, [
      badge(status || "incomplete", statusKind(status)),
      h("span", { text: DATA.file }),
      meta.run_id ? h("span", { text: "run " + meta.run_id }) : null,
      meta.started_at ? h("span", { text: String(meta.started_at).replace("T", " ").slice(0, 19) }) : null,
    ]);
    if (DATA.warnings && DATA.warnings.length) {
      const w = h("div", { class: "warnings", role: "status" }, h("b", { text: "This trace is incomplete or damaged" }));
      w.append(h("ul", null, DATA.warnings.map(function (x) { return h("li", { text: x }); })));
      document.getElementById("warnings").append(w);
    }
  }

  function renderOverview() {
    const ov = document.getElementById("overview");
    const ctx = meta.context || {};
    const ctxBits = [];
    if (ctx.type) ctxBits.push("context: " + ctx.type);
    if (ctx.total_chars !== undefined) ctxBits.push(num(ctx.total_chars) + " chars");
    if (ctx.num_items !== undefined) ctxBits.push(num(ctx.num_items) + " items");
    const q = h("div", { class: "panel qa", id: "query" },
      h("h2", { text: "Query" }),
      h("div", { class: "text", text: meta.query === null || meta.query === undefined ? "(task stated inside the context)" : meta.query }),
      h("div", { class: "sub" },
        ctxBits.length ? h("span", { text: ctxBits.join(" · ") }) : null,
        cfg.root_model ? h("span", { text: "root: " + cfg.root_model }) : null,
        cfg.sub_model ? h("span", { text: "sub: " + cfg.sub_model }) : null,
        cfg.environment ? h("span", { text: "env: " + cfg.environment }) : null,
        cfg.max_iterations !== undefined ? h("span", { text: "max iterations: " + cfg.max_iterations }) : null,
        cfg.max_depth !== undefined ? h("span", { text: "max depth: " + cfg.max_depth }) : null));
    function lazyDetails(label, text) {
      const d = h("details", { class: "sysprompt" }, h("summary", { text: label }));
      let built = false;
      d.addEventListener("toggle", function () { if (d.open && !built) { built = true; d.append(clipped("pre", "out", text)); } });
      return d;
    }
    if (ctx.preview) q.append(lazyDetails("Context preview (what the root LM is shown up front)", ctx.preview));
    if (meta.system_prompt) q.append(lazyDetails("System prompt (" + num(str(meta.system_prompt).length) + " chars)", meta.system_prompt));
    let ansText, cls = "";
    if (!result) { ansText = "No result recorded: the run did not finish."; cls = " none"; }
    else if (status === "error") { ansText = result.error || "The run failed."; cls = " failed"; }
    else if (result.response === null || result.response === undefined) {
      cls = " none";
      ansText = result.partial_answer ? result.partial_answer : "No answer (" + status + ").";
    }
    else ansText = result.response;
    const a = h("div", { class: "panel qa answer" + cls, id: "answer" },
      h("h2", null, status === "error" ? "Error" : result && result.response === null && result.partial_answer ? "Best partial answer" : "Answer", " ", badge(status || "incomplete", statusKind(status))),
      h("div", { class: "text", text: ansText }),
      result && result.error && status !== "error" ? h("div", { class: "sub", text: result.error }) : null,
      result && result.warnings && result.warnings.length ? h("div", { class: "warnings answer-warnings", role: "status" }, h("ul", null, result.warnings.map(function (w) { return h("li", { text: w }); }))) : null);
    add(ov, [q, a]);
  }

  function card(label, value, note) {
    return h("div", { class: "panel card" }, h("div", { class: "label", text: label }), h("div", { class: "value", text: value }), note ? h("div", { class: "note", text: note }) : null);
  }
  function renderSummary() {
    const s = document.getElementById("summary");
    const tot = usage.total || {}, root = usage.root || {}, sub = usage.sub || {};
    let dur = result && result.duration;
    if (dur === undefined || dur === null) dur = SUM.reduce(function (acc, x) { return acc + x.duration; }, 0);
    const subTotal = SUM.reduce(function (acc, x) { return acc + x.subcalls; }, 0);
    add(s, [
      card("Iterations", num(ITS.length), cfg.max_iterations ? "of max " + cfg.max_iterations : null),
      card("LM calls", num(tot.calls), num(root.calls) + " root · " + num(sub.calls) + " sub"),
      card("Sub-calls", num(subTotal), "logged from REPL code"),
      card("Tokens", tok(tot.total_tokens), tok(tot.input_tokens) + " in · " + tok(tot.output_tokens) + " out"),
      card("Cost", cost(tot.cost), DATA.usage_source === "computed" ? "recomputed from iterations" : null),
      card("Time", secs(dur), status ? "status: " + status : "incomplete"),
    ]);
    const rows = [["Root", root], ["Sub", sub]];
    const byModel = usage.by_model || {};
    const table = h("table", { class: "usage" },
      h("thead", null, h("tr", null, ["", "calls", "input", "output", "total", "cost"].map(function (x) { return h("th", { text: x }); }))),
      h("tbody", null,
        rows.concat(Object.keys(byModel).length > 1 ? Object.keys(byModel).map(function (k) { return ["· " + k, byModel[k]]; }) : [])
          .concat([["Total", tot]]).map(function (r) {
            const u = r[1] || {};
            return h("tr", null, h("td", { text: r[0] }), h("td", { text: num(u.calls) }), h("td", { text: tok(u.input_tokens) }),
              h("td", { text: tok(u.output_tokens) }), h("td", { text: tok(u.total_tokens) }), h("td", { text: cost(u.cost) }));
          })));
    s.append(h("div", { class: "panel usage-card" }, table));
  }

  // ---------- chart ----------
  const canvas = document.getElementById("chart");
  const tip = document.getElementById("chart-tip");
  const chart = { pad: { l: 52, r: 52, t: 10, b: 24 }, w: 0, h: 0 };
  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function drawChart() {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, hgt = canvas.clientHeight || 190;
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(hgt * dpr);
    const c = canvas.getContext("2d");
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.clearRect(0, 0, w, hgt);
    chart.w = w; chart.h = hgt;
    const p = chart.pad, iw = w - p.l - p.r, ih = hgt - p.t - p.b;
    const n = SUM.length;
    c.font = "11px " + cssVar("--sans");
    c.fillStyle = cssVar("--muted");
    if (!n) { c.fillText("No iterations recorded.", p.l, p.t + 20); return; }
    const maxTok = niceMax(Math.max(1, ...SUM.map(function (x) { return x.root_tokens + x.sub_tokens; })));
    const maxDur = niceMax(Math.max(0.001, ...SUM.map(function (x) { return x.duration; })));
    c.strokeStyle = cssVar("--line"); c.lineWidth = 1;
    for (let g = 0; g <= 4; g++) {
      const y = p.t + ih - (ih * g) / 4 + 0.5;
      c.beginPath(); c.moveTo(p.l, y); c.lineTo(p.l + iw, y); c.stroke();
      c.textAlign = "right"; c.fillText(tok((maxTok * g) / 4), p.l - 6, y + 4);
      c.textAlign = "left"; c.fillText(secs((maxDur * g) / 4), p.l + iw + 6, y + 4);
    }
    const slot = iw / n, bw = Math.max(1, Math.min(28, slot * 0.7));
    const rootC = cssVar("--root"), subC = cssVar("--sub");
    for (let i = 0; i < n; i++) {
      const x = p.l + i * slot + (slot - bw) / 2, s = SUM[i];
      const hr = (ih * s.root_tokens) / maxTok, hs = (ih * s.sub_tokens) / maxTok;
      c.fillStyle = rootC; c.fillRect(x, p.t + ih - hr, bw, hr);
      c.fillStyle = subC; c.fillRect(x, p.t + ih - hr - hs, bw, hs);
    }
    if (selected >= 0) {
      c.fillStyle = cssVar("--accent"); c.globalAlpha = 0.16;
      const hw = Math.min(slot, bw + 12);
      c.fillRect(p.l + selected * slot + (slot - hw) / 2, p.t, Math.max(hw, 2), ih);
      c.globalAlpha = 1;
    }
    c.strokeStyle = cssVar("--time"); c.lineWidth = 2; c.beginPath();
    for (let i = 0; i < n; i++) {
      const x = p.l + i * slot + slot / 2, y = p.t + ih - (ih * SUM[i].duration) / maxDur;
      if (i === 0) c.moveTo(x, y); else c.lineTo(x, y);
    }
    c.stroke();
    c.fillStyle = cssVar("--muted"); c.textAlign = "center";
    const step = Math.max(1, Math.ceil(n / Math.max(1, Math.floor(iw / 48))));
    for (let i = 0; i < n; i += step) c.fillText("#" + SUM[i].index, p.l + i * slot + slot / 2, hgt - 6);
  }
  function chartIndex(ev) {
    const r = canvas.getBoundingClientRect();
    const x = ev.clientX - r.left - chart.pad.l, iw = chart.w - chart.pad.l - chart.pad.r;
    if (x < 0 || x > iw || !SUM.length) return -1;
    return Math.min(SUM.length - 1, Math.floor((x / iw) * SUM.length));
  }
  canvas.addEventListener("mousemove", function (ev) {
    const i = chartIndex(ev);
    if (i < 0) { tip.hidden = true; return; }
    const s = SUM[i];
    tip.textContent = "Iteration #" + s.index + "\nroot " + tok(s.root_tokens) + " tok · sub " + tok(s.sub_tokens) +
      " tok (" + num(s.sub_calls) + " calls)\n" + secs(s.duration) + " · " + cost(addCost(s.root_cost, s.sub_cost));
    tip.hidden = false;
    const r = canvas.getBoundingClientRect();
    const x = ev.clientX - r.left;
    tip.style.left = Math.min(x + 14, r.width - 220) + "px";
    tip.style.top = ev.clientY - r.top + 8 + "px";
  });
  canvas.addEventListener("mouseleave", function () { tip.hidden = true; });
  canvas.addEventListener("click", function (ev) { const i = chartIndex(ev); if (i >= 0) select(i, true); });

  // ---------- timeline (virtualized) ----------
  const scroller = document.getElementById("tl-scroll");
  const spacer = document.getElementById("tl-spacer");
  const filterSel = document.getElementById("tl-filter");
  const search = document.getElementById("tl-search");
  let view = SUM.map(function (_, i) { return i; });
  let selected = -1;
  const maxRowTok = Math.max(1, ...SUM.map(function (x) { return x.root_tokens + x.sub_tokens; }));

  const textCache = [];
  function searchText(i) {
    if (textCache[i] === undefined) textCache[i] = iterationText(ITS[i]);
    return textCache[i];
  }
  function iterationText(it) {
    const parts = [it.response, it.final_answer, it.feedback];
    (it.code_blocks || []).forEach(function (b) {
      parts.push(b.code, b.stdout, b.stderr, b.error, b.final);
      (b.subcalls || []).forEach(function (a) { const s = subcall(a); parts.push(s.prompt, s.response, s.error, s.function, s.model); });
    });
    return parts.filter(Boolean).join("\n").toLowerCase();
  }
  function applyFilter() {
    const f = filterSel.value, q = search.value.trim().toLowerCase();
    view = [];
    for (let i = 0; i < SUM.length; i++) {
      const s = SUM[i];
      if (f === "errors" && !s.errors) continue;
      if (f === "subcalls" && !s.subcalls) continue;
      if (f === "final" && !s.final) continue;
      if (q && searchText(i).indexOf(q) < 0) continue;
      view.push(i);
    }
    document.getElementById("tl-count").textContent = view.length === SUM.length ? "(" + num(SUM.length) + ")" : "(" + num(view.length) + " of " + num(SUM.length) + ")";
    spacer.style.height = view.length * ROW_H + "px";
    renderRows(true);
  }
  let rendered = "";
  function renderRows(force) {
    const top = scroller.scrollTop, hgt = scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - 4);
    const last = Math.min(view.length, Math.ceil((top + hgt) / ROW_H) + 4);
    const key = first + ":" + last + ":" + selected;
    if (!force && key === rendered) return;
    rendered = key;
    clear(spacer);
    if (!view.length) { spacer.append(h("div", { class: "tl-empty", text: "No iteration matches." })); return; }
    for (let v = first; v < last; v++) {
      const i = view[v], s = SUM[i], total = s.root_tokens + s.sub_tokens;
      const row = h("div", {
        class: "tl-row" + (i === selected ? " selected" : ""), role: "button", "data-pos": i,
        style: "top:" + v * ROW_H + "px", title: "Iteration #" + s.index + ": " + s.blocks + " code block" + (s.blocks === 1 ? "" : "s"),
        onclick: function () { select(i, false); },
      },
      h("span", { class: "num", text: "#" + s.index }),
      h("span", { class: "meta", text: num(s.subcalls) + " sub-calls · " + tok(total) + " tok · " + secs(s.duration) }),
      h("span", { class: "tags" }, s.final ? badge("FINAL", "ok") : null, s.interrupted ? badge("interrupted", "warn") : null, s.errors ? badge(s.errors + " err", "err") : null),
      h("span", { class: "bar" }, h("i", { class: "r", style: "width:" + (100 * s.root_tokens) / maxRowTok + "%" }), h("i", { class: "s", style: "width:" + (100 * s.sub_tokens) / maxRowTok + "%" })));
      spacer.append(row);
    }
  }
  scroller.addEventListener("scroll", function () { renderRows(false); }, { passive: true });
  filterSel.addEventListener("change", applyFilter);
  let searchTimer = 0;
  search.addEventListener("input", function () { clearTimeout(searchTimer); searchTimer = setTimeout(applyFilter, 250); });

  function scrollRowIntoView(i) {
    const v = view.indexOf(i);
    if (v < 0) return;
    const y = v * ROW_H;
    if (y < scroller.scrollTop) scroller.scrollTop = y;
    else if (y + ROW_H > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = y + ROW_H - scroller.clientHeight;
  }

  // ---------- iteration detail ----------
  const detail = document.getElementById("detail");

  function subcallList(subcalls, depth) {
    const wrap = h("div", null);
    const list = h("div", { class: "sc-list" });
    let page = 0;
    const pages = Math.ceil(subcalls.length / SC_PAGE);
    const pager = h("div", { class: "pager" });
    function draw() {
      clear(list);
      const start = page * SC_PAGE;
      subcalls.slice(start, start + SC_PAGE).forEach(function (a, k) { list.append(subcallRow(subcall(a), start + k, depth)); });
      clear(pager);
      if (pages > 1) {
        add(pager, [
          h("button", { class: "btn", text: "‹ Prev", disabled: page === 0, onclick: function () { page--; draw(); } }),
          h("span", { text: "sub-calls " + num(start + 1) + "–" + num(Math.min(subcalls.length, start + SC_PAGE)) + " of " + num(subcalls.length) }),
          h("button", { class: "btn", text: "Next ›", disabled: page >= pages - 1, onclick: function () { page++; draw(); } }),
        ]);
      }
    }
    draw();
    wrap.append(h("div", { class: "sc-head" }, h("div", { class: "outlabel", text: "Sub-calls (" + num(subcalls.length) + ")" }), pager), list);
    return wrap;
  }

  function subcallRow(s, n, depth) {
    const children = s.children || [];
    const total = (s.input_tokens || 0) + (s.output_tokens || 0);
    const d = h("details", { class: "sc", "data-n": n });
    const sum = h("summary", null,
      h("span", { class: "caret", "aria-hidden": "true" }),
      h("span", { class: "sc-n", text: "#" + (n + 1) }),
      h("span", { class: "sc-fn", text: s.function || "?", title: s.function }),
      h("span", { class: "sc-prev", text: oneLine(s.prompt, 160) }),
      h("span", { class: "sc-nums" },
        s.error ? badge("error", "err", s.error) : null,
        s.replayed ? badge("replayed", "plain") : null,
        children.length ? badge(children.length + " child it.", "") : null,
        h("span", { text: "d" + (s.depth === null || s.depth === undefined ? "?" : s.depth) }),
        h("span", { text: tok(total) + " tok" }),
        h("span", { text: secs(s.latency) })));
    d.append(sum);
    let built = false;
    d.addEventListener("toggle", function () {
      if (!d.open || built) return;
      built = true;
      const body = h("div", { class: "sc-body" });
      body.append(h("div", { class: "kv" },
        h("span", null, "model ", h("b", { text: s.model || "default" })),
        h("span", null, "depth ", h("b", { text: s.depth })),
        h("span", null, "tokens ", h("b", { text: num(s.input_tokens) + " in · " + num(s.output_tokens) + " out" })),
        h("span", null, "cost ", h("b", { text: cost(s.cost) })),
        h("span", null, "latency ", h("b", { text: secs(s.latency) }))));
      const plen = str(s.prompt).length;
      const pnote = s.prompt_chars && s.prompt_chars > plen ? "Prompt (logged " + num(plen) + " of " + num(s.prompt_chars) + " characters)" : "Prompt";
      add(body, [output(pnote, s.prompt || "(empty)"), output("Response", s.response || (s.error ? "" : "(empty)"), "final"), output("Error", s.error, "error")]);
      if (s.extra) body.append(output("Other fields", s.extra));
      if (children.length) body.append(childTrajectory(children, depth + 1));
      d.append(body);
    });
    return d;
  }

  function childTrajectory(children, depth) {
    const box = h("div", { class: "children" }, h("div", { class: "outlabel", text: "Child RLM trajectory · depth " + depth + " · " + children.length + " iteration" + (children.length === 1 ? "" : "s") }));
    children.forEach(function (it, pos) {
      const d = h("details", { class: "child" }, h("summary", null, h("span", { class: "caret", "aria-hidden": "true" }),
        "Iteration #" + (it.index === null || it.index === undefined ? pos : it.index) + " ", h("span", { class: "muted", text: "· " + (it.code_blocks || []).length + " blocks · " + tok((it.input_tokens || 0) + (it.output_tokens || 0)) + " root tok · " + secs(it.duration) + (it.final_answer !== null && it.final_answer !== undefined ? " · FINAL" : "") })));
      let built = false;
      d.addEventListener("toggle", function () {
        if (!d.open || built) return;
        built = true;
        d.append(h("div", { class: "child-body" }, iterationBody(it, depth)));
      });
      box.append(d);
    });
    return box;
  }

  function blockCard(b, k, depth, cardId) {
    const flags = [];
    if (b.final !== null && b.final !== undefined) flags.push(badge("FINAL", "ok"));
    if (b.error) flags.push(badge("error", "err"));
    if (b.timed_out) flags.push(badge("timed out", "warn"));
    if (b.crashed) flags.push(badge("crashed", "err"));
    if (b.interrupted) flags.push(badge("interrupted", "warn"));
    const card = h("section", { class: "panel code-block", id: cardId ? cardId + "-" + k : null },
      h("div", { class: "panel-head" }, h("h2", { text: "Code block " + (k + 1) }), h("div", { class: "sc-nums" }, flags, h("span", { text: secs(b.duration) }))));
    const body = h("div", { class: "block-body" }, codeView(b.code));
    add(body, [output("stdout", b.stdout), output("stderr", b.stderr, "stderr"), output("Error", b.error, "error"),
      b.final !== null && b.final !== undefined ? output("Final answer", b.final, "final") : null]);
    if (!b.stdout && !b.stderr && !b.error) body.append(h("div", { class: "muted", text: "(no output)" }));
    if ((b.subcalls || []).length) body.append(subcallList(b.subcalls, depth));
    card.append(body);
    return card;
  }

  let cardSeq = 0;
  function iterationBody(it, depth) {
    const out = [];
    const cardId = "blk" + cardSeq++;
    out.push(h("section", { class: "panel root-response" }, h("div", { class: "panel-head" }, h("h2", { text: depth ? "Child root response" : "Root response" }),
      h("div", { class: "sc-nums" }, h("span", { text: num(it.input_tokens) + " in · " + num(it.output_tokens) + " out" }), h("span", { text: secs(it.root_latency) }))), responseView(it.response, it.code_blocks, cardId)));
    (it.code_blocks || []).forEach(function (b, k) { out.push(blockCard(b, k, depth, cardId)); });
    if (it.final_answer !== null && it.final_answer !== undefined) {
      out.push(h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", { text: "Final answer" })), h("div", { class: "block-body" }, clipped("pre", "out final", it.final_answer))));
    }
    if (it.feedback) {
      const fb = h("details", { class: "panel feedback" }, h("summary", { text: "Feedback sent to the root LM (" + num(str(it.feedback).length) + " chars)" }));
      let built = false;
      fb.addEventListener("toggle", function () { if (fb.open && !built) { built = true; fb.append(clipped("pre", "out", it.feedback)); } });
      out.push(fb);
    }
    return out;
  }

  function renderDetail() {
    clear(detail);
    if (selected < 0 || !ITS.length) {
      detail.append(h("div", { class: "panel empty", text: ITS.length ? "Select an iteration." : "This trace has no iterations." }));
      return;
    }
    const it = ITS[selected], s = SUM[selected];
    const head = h("section", { class: "panel it-head", id: "it-head" },
      h("h3", { text: "Iteration #" + s.index }),
      s.final ? badge("FINAL", "ok") : null,
      s.interrupted ? badge("interrupted", "warn", it.interrupted_note) : null,
      s.errors ? badge(s.errors + " error" + (s.errors === 1 ? "" : "s"), "err") : null,
      stat("root", tok(s.root_tokens) + " tok"), stat("sub-calls", num(s.subcalls)), stat("sub", tok(s.sub_tokens) + " tok"),
      stat("cost", cost(addCost(s.root_cost, s.sub_cost))), stat("time", secs(s.duration)),
      h("div", { class: "nav" },
        h("button", { class: "btn", text: "‹ Prev", disabled: selected === 0, onclick: function () { select(selected - 1, true); } }),
        h("button", { class: "btn", text: "Next ›", disabled: selected >= ITS.length - 1, onclick: function () { select(selected + 1, true); } })));
    detail.append(head);
    if (it.interrupted_note) detail.append(h("div", { class: "panel warnings interrupted-note", role: "status", text: "Partial iteration: " + it.interrupted_note + "." }));
    add(detail, iterationBody(it, 0));
  }

  function select(i, scroll) {
    if (i < 0 || i >= ITS.length) return;
    selected = i;
    renderDetail();
    renderRows(true);
    if (scroll) scrollRowIntoView(i);
    drawChart();
    if (history.replaceState) history.replaceState(null, "", "#it=" + i);
  }

  document.addEventListener("keydown", function (ev) {
    const tag = (ev.target && ev.target.tagName) || "";
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || ev.metaKey || ev.ctrlKey || ev.altKey) return;
    const inList = ev.target === scroller;
    const pos = view.indexOf(selected);
    let next = -1;
    if (ev.key === "j" || (inList && ev.key === "ArrowDown")) next = view[Math.min(view.length - 1, pos + 1)];
    else if (ev.key === "k" || (inList && ev.key === "ArrowUp")) next = view[Math.max(0, pos - 1)];
    if (next !== undefined && next >= 0) { ev.preventDefault(); select(next, true); }
  });
  let resizeTimer = 0;
  window.addEventListener("resize", function () { clearTimeout(resizeTimer); resizeTimer = setTimeout(function () { drawChart(); renderRows(true); }, 100); });

  // ---------- start ----------
  renderHeader();
  renderOverview();
  renderSummary();
  applyFilter();
  const fromHash = /^#it=(\d+)$/.exec(location.hash);
  select(fromHash ? Math.min(Number(fromHash[1]), ITS.length - 1) : ITS.length ? 0 : -1, true);
  if (!ITS.length) { renderDetail(); drawChart(); }
  window.__rlmViewer = { parseMs: tParsed - t0, renderMs: performance.now() - tParsed, iterations: ITS.length };
  document.body.setAttribute("data-ready", "1");
})();
