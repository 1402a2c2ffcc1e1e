// axis dashboard: the evidence log panel — the log monitor's state (an alarm when a tree head does not extend the
// one before it), a search by document id and/or sender, and a timeline per document (GET /admin/documents,
// /admin/documents/{sender}/{document_id}/trace, /admin/log/status). Everything shown is set as text, never HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const fmt = new Intl.NumberFormat("en-US");

  function node(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function when(ev) {
    return (ev.time || new Date(ev.at).toISOString()).replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");
  }

  const DETAIL = {
    submitted: (e) => `accepted at the sender's endpoint server${e.server ? " " + e.server : ""}`,
    routed: () => "accepted by the router",
    stored: (e) => `stored in the inbox of ${e.agency}`,
    status: (e) => `status ${e.code} from ${e.agency}`,
    acked: (e) => `taken by ${e.agency}`,
    refused: (e) => `refused: ${e.reason}${e.server ? " (server " + e.server + ")" : ""}`,
    admin: (e) => `administrator ${e.admin || ""}: ${e.action || ""}`,
  };

  function setMessage(text) {
    $("ev-message").textContent = text;
  }

  // ------------------------------------------------------------ the monitor
  async function pollStatus() {
    try {
      const r = await fetch("/admin/log/status");
      if (r.status === 503) {
        $("log-status").textContent = "no evidence log configured";
        return;
      }
      if (!r.ok) return;
      const s = await r.json();
      const size = s.tree_size === null ? "no tree head yet" : `${fmt.format(s.tree_size)} leaves`;
      $("log-status").textContent = `${size} · ${s.consistent ? "consistent" : "INCONSISTENT"}` +
        (s.error ? ` · store error: ${s.error}` : "");
      $("evidence").dataset.consistent = String(s.consistent);
      const alarm = $("log-alarm");
      alarm.hidden = s.consistent;
      $("log-alarm-text").textContent = s.problem || "";
    } catch (e) {
      /* the stats panel already says the app is unreachable */
    }
  }

  // ------------------------------------------------------------ search and timeline
  async function showTrace(sender, documentId) {
    const url = `/admin/documents/${encodeURIComponent(sender)}/${encodeURIComponent(documentId)}/trace`;
    const r = await fetch(url);
    const box = $("ev-trace");
    const list = $("ev-timeline");
    list.replaceChildren();
    if (!r.ok) {
      box.hidden = true;
      setMessage(r.status === 404 ? "nothing in the log for this document" : `error ${r.status}`);
      return;
    }
    const t = await r.json();
    $("ev-trace-title").textContent = `${t.document_id} — from ${t.sender}`;
    for (const ev of t.events) {
      const li = node("li", { class: `ev ${ev.type}`, "data-type": ev.type, "data-leaf": String(ev.leaf_index) });
      li.appendChild(node("time", {}, when(ev)));
      li.appendChild(node("span", { class: "type" }, ev.type));
      li.appendChild(node("span", { class: "detail" }, (DETAIL[ev.type] || (() => ""))(ev)));
      li.appendChild(node("span", { class: "leaf muted small", title: ev.sha256 ? `sha256 ${ev.sha256}` : "" },
        `leaf ${ev.leaf_index}`));
      list.appendChild(li);
    }
    box.hidden = false;
    box.dataset.document = t.document_id;
    box.dataset.sender = t.sender;
    document.body.dataset.traces = String(Number(document.body.dataset.traces || 0) + 1);
  }

  async function search(ev) {
    if (ev) ev.preventDefault();
    const documentId = $("ev-document").value.trim();
    const sender = $("ev-sender").value.trim();
    const params = new URLSearchParams({ limit: "1000" });
    if (documentId) params.set("document_id", documentId);
    if (sender) params.set("sender", sender);
    setMessage("searching…");
    const r = await fetch(`/admin/documents?${params}`);
    const tbody = $("ev-results").querySelector("tbody");
    tbody.replaceChildren();
    if (!r.ok) {
      setMessage(r.status === 503 ? "no evidence log configured" : `error ${r.status}`);
      return;
    }
    const body = await r.json();
    const docs = new Map();
    for (const item of body.items) {
      if (!item.document_id) continue; // refusals at the door name no document
      const key = JSON.stringify([item.sender, item.document_id]);
      const d = docs.get(key) || { sender: item.sender, document_id: item.document_id, n: 0, last: item };
      d.n += 1;
      d.last = item;
      docs.set(key, d);
    }
    for (const d of docs.values()) {
      const tr = node("tr", { "data-document": d.document_id, "data-sender": d.sender, tabindex: "0" });
      tr.appendChild(node("td", { class: "doc" }, d.document_id));
      tr.appendChild(node("td", {}, d.sender));
      tr.appendChild(node("td", { class: "n" }, fmt.format(d.n)));
      tr.appendChild(node("td", {}, `${d.last.type} · ${when(d.last)}`));
      tr.addEventListener("click", () => showTrace(d.sender, d.document_id));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") showTrace(d.sender, d.document_id); });
      tbody.appendChild(tr);
    }
    const more = body.next_offset !== null ? " (first 1,000 leaves: narrow the search)" : "";
    setMessage(docs.size ? `${fmt.format(docs.size)} document${docs.size === 1 ? "" : "s"}${more}` : "no match");
    if (docs.size === 1) {
      const [d] = docs.values();
      await showTrace(d.sender, d.document_id);
    } else {
      $("ev-trace").hidden = true;
    }
  }

  $("evidence-search").addEventListener("submit", (e) => {
    search(e).catch(() => setMessage("admin app unreachable"));
  });
  pollStatus();
  setInterval(pollStatus, 3000);
})();
