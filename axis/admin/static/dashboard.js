// axis dashboard: live statistics from /admin/events (Server-Sent Events), falling back to polling
// /admin/stats and /admin/servers every 2 s. No external libraries; charts are inline SVG.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const fmtEn = new Intl.NumberFormat("en-US");
const fmtVi = new Intl.NumberFormat("vi-VN");
const $ = (id) => document.getElementById(id);
const n = (x) => fmtEn.format(x || 0);

function setText(id, text) {
  const el = $(id);
  if (el && el.textContent !== String(text)) el.textContent = text;
}

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function setLive(state, text) {
  const live = $("live");
  live.dataset.state = state;
  setText("live-text", text);
}

// ---------------------------------------------------------------- headline and cards
function renderTotals(s) {
  for (const k of ["agencies", "dedicated", "shared"]) {
    setText("h-" + k, n(s[k]));
    setText(k, n(s[k]));
  }
  setText("h-sent", n(s.sent));
  setText("h-received", n(s.received));
  for (const k of ["sent", "received", "refused", "pending"]) setText(k, n(s[k]));
  setText("fanout", s.sent ? (s.received / s.sent).toFixed(2) : "–");
  setText(
    "headline-vi",
    `${fmtVi.format(s.agencies)} cơ quan kết nối, ${fmtVi.format(s.dedicated)} qua máy chủ riêng, ` +
      `${fmtVi.format(s.shared)} qua máy chủ dùng chung; ${fmtVi.format(s.sent)} văn bản gửi, ` +
      `${fmtVi.format(s.received)} văn bản nhận.`,
  );
  const when = (iso) => iso.slice(0, 19).replace("T", " ") + " UTC";
  const span = s.first ? `from ${when(s.first)} to ${when(s.last)}` : "no traffic yet";
  setText("headline-extra", `${n(s.refused)} refused · ${n(s.pending)} deliveries pending · ${span}`);
}

// ---------------------------------------------------------------- traffic chart (SVG)
function fmtTick(iso, step) {
  const d = new Date(iso);
  const pad = (x) => String(x).padStart(2, "0");
  const date = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  if (step >= 30 * 86400) return date.slice(0, 7);
  if (step >= 86400) return date;
  if (step >= 3600) return `${date.slice(5)} ${hm}`;
  if (step >= 60) return hm;
  return `${hm}:${pad(d.getUTCSeconds())}`;
}

function stepLabel(step) {
  if (step >= 365 * 86400) return "per year";
  if (step >= 30 * 86400) return "per 30 days";
  if (step >= 7 * 86400) return "per week";
  if (step >= 86400) return "per day";
  if (step >= 3600) return `per ${step / 3600} h`;
  if (step >= 60) return `per ${step / 60} min`;
  return `per ${step} s`;
}

function niceMax(v) {
  // four grid steps of a "nice" whole size: 1, 2, 2.5 (from 10 up) or 5 times a power of ten
  const raw = Math.max(1, v / 4);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m === 2.5 && p < 10) continue;
    if (m * p >= raw) return 4 * m * p;
  }
  return 40 * p;
}

function renderChart(series) {
  const svg = $("traffic");
  const W = 900, H = 260, L = 48, R = 12, T = 12, B = 28;
  const pts = (series && series.points) || [];
  const step = (series && series.step) || 60;
  svg.replaceChildren();
  setText("chart-step", pts.length ? stepLabel(step) : "");
  if (!pts.length) {
    svg.appendChild(el("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "No traffic yet"));
    return;
  }
  // fill gaps so that quiet buckets show as zero
  const t0 = Date.parse(pts[0].t) / 1000, t1 = Date.parse(pts[pts.length - 1].t) / 1000;
  const byT = new Map(pts.map((p) => [Date.parse(p.t) / 1000, p]));
  const full = [];
  for (let t = t0; t <= t1 && full.length < 5000; t += step) {
    full.push(byT.get(t) || { t: new Date(t * 1000).toISOString(), sent: 0, received: 0, refused: 0 });
  }
  if (full.length === 1) full.push({ ...full[0], t: new Date((t0 + step) * 1000).toISOString(), _pad: true });
  const max = niceMax(Math.max(1, ...full.map((p) => Math.max(p.sent, p.received, p.refused))));
  const x = (i) => L + (i * (W - L - R)) / (full.length - 1);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    svg.appendChild(el("svg:line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.appendChild(el("svg:text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis-label" }, n(v)));
  }
  const ticks = Math.min(6, full.length);
  for (let k = 0; k < ticks; k++) {
    const i = Math.round((k * (full.length - 1)) / Math.max(1, ticks - 1));
    const anchor = k === 0 ? "start" : k === ticks - 1 ? "end" : "middle";
    svg.appendChild(el("svg:text", { x: x(i), y: H - 8, "text-anchor": anchor, class: "axis-label" },
      fmtTick(full[i].t, step)));
  }
  for (const key of ["received", "sent", "refused"]) {
    const line = full.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    const area = `${line} L${x(full.length - 1).toFixed(1)},${y(0)} L${x(0).toFixed(1)},${y(0)} Z`;
    svg.appendChild(el("svg:path", { d: area, class: `area ${key}` }));
    svg.appendChild(el("svg:path", { d: line, class: `line ${key}`, "data-series": key }));
  }
}

// ---------------------------------------------------------------- tables and bars
function kindBadge(kind) {
  return kind ? el("span", { class: `badge ${kind}` }, kind) : el("span");
}

function renderRank(id, rows, field) {
  const tbody = $(id).querySelector("tbody");
  tbody.replaceChildren();
  const max = Math.max(1, ...rows.map((r) => r[field]));
  rows.slice(0, 10).forEach((r, i) => {
    const tr = el("tr", { "data-agency": r.agency });
    tr.appendChild(el("td", { class: "pos" }, String(i + 1)));
    const name = el("td");
    name.appendChild(el("span", { class: "name" }, r.name || r.agency));
    name.appendChild(el("span", { class: "code" }, r.agency));
    const bar = el("div", { class: "bar" });
    bar.style.width = `${(100 * r[field]) / max}%`;
    name.appendChild(bar);
    tr.appendChild(name);
    const kind = el("td");
    kind.appendChild(kindBadge(r.kind));
    tr.appendChild(kind);
    tr.appendChild(el("td", { class: "n" }, n(r[field])));
    tbody.appendChild(tr);
  });
  if (!rows.length) tbody.appendChild(el("tr", {}, "")).appendChild(el("td", { class: "muted" }, "none yet"));
}

function renderRoutes(routes) {
  const values = Object.values(routes || {});
  const max = Math.max(1, ...values);
  for (const td of document.querySelectorAll("#routes td[data-route]")) {
    const v = (routes || {})[td.dataset.route] || 0;
    td.textContent = n(v);
    td.style.background = `rgba(37, 99, 235, ${(0.05 + (0.45 * v) / max).toFixed(3)})`;
  }
}

function renderReasons(byReason) {
  const box = $("reasons");
  box.replaceChildren();
  const entries = Object.entries(byReason || {});
  if (!entries.length) {
    box.appendChild(el("p", { class: "muted" }, "No refusals."));
    return;
  }
  const max = Math.max(...entries.map(([, v]) => v));
  for (const [reason, v] of entries) {
    const row = el("div", { class: "row", "data-reason": reason });
    row.appendChild(el("span", { class: "reason" }, reason));
    const track = el("div", { class: "track" });
    const fill = el("div", { class: "fill" });
    fill.style.width = `${(100 * v) / max}%`;
    track.appendChild(fill);
    row.appendChild(track);
    row.appendChild(el("span", { class: "n" }, n(v)));
    box.appendChild(row);
  }
}

function renderLatency(lat) {
  const svg = $("latency");
  svg.replaceChildren();
  const buckets = (lat && lat.buckets) || [];
  const W = 300, H = 150, B = 22, T = 8;
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const bw = W / Math.max(1, buckets.length);
  buckets.forEach((b, i) => {
    const h = ((H - B - T) * b.count) / max;
    svg.appendChild(el("svg:rect", { x: i * bw + 2, y: H - B - h, width: bw - 4, height: Math.max(h, b.count ? 1 : 0) }));
    const label = b.le === "+Inf" ? ">" : b.le >= 1000 ? `${b.le / 1000}s` : `${b.le}`;
    svg.appendChild(el("svg:text", { x: i * bw + bw / 2, y: H - 8, "text-anchor": "middle" }, label));
  });
  setText("latency-summary", lat && lat.count ? `${n(lat.count)} documents · mean ${lat.mean_ms.toFixed(1)} ms · max ${lat.max_ms.toFixed(1)} ms (buckets: ≤ ms)` : "");
}

function renderServers(servers) {
  const tbody = $("servers").querySelector("tbody");
  tbody.replaceChildren();
  for (const s of servers || []) {
    const tr = el("tr", { "data-server": s.id });
    tr.appendChild(el("td", { class: s.up ? "up" : "down", title: s.error || "" }, s.up ? "●" : "○"));
    tr.appendChild(el("td", {}, s.id));
    const kind = el("td");
    kind.appendChild(kindBadge(s.kind));
    tr.appendChild(kind);
    tr.appendChild(el("td", { class: "n" }, n(s.agencies.length)));
    tr.appendChild(el("td", { class: "n" }, n(s.sent)));
    tr.appendChild(el("td", { class: "n" }, n(s.received)));
    tr.appendChild(el("td", { class: "n" }, s.queue_depth === null || s.queue_depth === undefined ? "–" : n(s.queue_depth)));
    tr.appendChild(el("td", {}, s.seconds_since_seen === null ? "never" : `${s.seconds_since_seen} s ago`));
    tbody.appendChild(tr);
  }
}

function renderStats(s) {
  window.axisStats = s; // for people poking around (and the browser test)
  renderTotals(s);
  renderChart(s.series);
  renderRank("top-senders", s.top_senders || [], "sent");
  renderRank("top-receivers", s.top_receivers || [], "received");
  renderRoutes(s.routes);
  renderReasons(s.by_reason);
  renderLatency(s.latency);
  setText("updated", new Date().toLocaleTimeString("en-GB"));
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

// ---------------------------------------------------------------- data flow
let pollTimer = null;

async function poll() {
  try {
    const [stats, servers] = await Promise.all([fetch("/admin/stats"), fetch("/admin/servers")]);
    if (stats.status === 401) {
      setLive("error", "not signed in (or the session expired) — reload the page to sign in");
      return;
    }
    renderStats(await stats.json());
    if (servers.ok) renderServers(await servers.json());
    setLive("live", "live (polling)");
  } catch (e) {
    setLive("error", "admin app unreachable");
  }
}

function startPolling() {
  if (pollTimer) return;
  poll();
  pollTimer = setInterval(poll, 2000);
}

function connect() {
  if (!window.EventSource) return startPolling();
  const es = new EventSource("/admin/events");
  let failures = 0;
  es.addEventListener("stats", (e) => {
    failures = 0;
    renderStats(JSON.parse(e.data));
    setLive("live", "live");
  });
  es.addEventListener("servers", (e) => renderServers(JSON.parse(e.data)));
  es.onerror = () => {
    failures += 1;
    setLive("error", "reconnecting…");
    if (failures >= 3) {
      es.close();
      startPolling();
    }
  };
}

connect();
