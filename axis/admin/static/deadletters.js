// axis dashboard: the dead letters panel — what sits in axis.dead (GET /admin/dead-letters, oldest first), with a
// Resend button (after the cause is fixed: back to the router as if just submitted) and a Discard button (asks
// first) per row; each action is logged in the evidence log by the admin app (axis.admin.deadletters). Everything
// shown comes from refused messages and is set as text, never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const LIMIT = 50;
  let busy = false;

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text == null || text === "" ? "—" : String(text);
    if (cls) td.className = cls;
    return td;
  }

  function when(iso) {
    return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : "—";
  }

  function button(label, action, item) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.className = `dl-${action}`;
    b.addEventListener("click", () => act(action, item, b));
    return b;
  }

  async function act(action, item, b) {
    if (action === "discard" &&
        !window.confirm(`Discard the dead letter ${item.document_id || item.id} for good? (It stays in the evidence log.)`)) {
      return;
    }
    busy = true;
    b.disabled = true;
    const msg = $("dl-message");
    try {
      const r = await fetch(`/admin/dead-letters/${encodeURIComponent(item.id)}/${action}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ admin: "dashboard" }),
      });
      const answer = await r.json().catch(() => ({}));
      msg.textContent = r.ok
        ? `${action === "resend" ? "Resent" : "Discarded"} ${item.document_id || item.id} (logged)`
        : `${action} failed: ${answer.detail || r.status}`;
      msg.dataset.ok = String(r.ok);
    } catch (e) {
      msg.textContent = `${action} failed: ${e}`;
      msg.dataset.ok = "false";
    } finally {
      busy = false;
      document.body.dataset.deadActions = String(Number(document.body.dataset.deadActions || 0) + 1);
      await poll();
    }
  }

  async function poll() {
    try {
      const r = await fetch(`/admin/dead-letters?limit=${LIMIT}`);
      const page = await r.json().catch(() => ({}));
      if (!r.ok) {
        $("dl-count").textContent = `unavailable: ${page.detail || r.status}`;
        return;
      }
      const items = page.items || [];
      const total = page.total == null ? items.length : page.total;
      $("dl-count").textContent = total === 0 ? "none" :
        `${total} waiting` + (total > items.length ? ` (the oldest ${items.length} shown)` : "");
      $("dl-empty").hidden = items.length > 0;
      const body = $("dead-letters").querySelector("tbody");
      body.replaceChildren(...items.map((item) => {
        const tr = document.createElement("tr");
        tr.dataset.id = item.id;
        tr.dataset.reason = item.reason;
        const actions = document.createElement("td");
        actions.className = "dl-actions";
        actions.append(button("Resend", "resend", item), button("Discard", "discard", item));
        tr.append(cell(when(item.at)), cell(item.reason, "code"), cell(item.sender, "code"),
                  cell(item.document_id, "code"), cell(item.server), cell(item.detail, "detail"), actions);
        return tr;
      }));
      document.body.dataset.deadPolls = String(Number(document.body.dataset.deadPolls || 0) + 1);
    } catch (e) {
      /* the stats panel already says the app is unreachable */
    }
  }

  poll();
  setInterval(() => { if (!busy) poll(); }, 10000);
})();
