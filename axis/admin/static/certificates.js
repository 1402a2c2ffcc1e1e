// axis dashboard: the certificate warning — what of the PKI expires soon (GET /admin/certificates?due=true:
// agency signing and TLS client certificates, the CA, the CRL's next update, the log and TLS server certificates;
// a warning under 30 days, the CRL under 2). Hidden while nothing is due. Everything shown is set as text.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const WHAT = {
    ca: "CA certificate",
    crl: "CRL (next update)",
    log: "evidence log certificate",
    "tls-server": "TLS server certificate",
    agency: "signing certificate",
    "tls-client": "TLS client certificate",
    "broker-client": "AMQPS client certificate",
  };

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function days(n) {
    if (n <= 0) return `expired ${Math.abs(n).toFixed(1)} d ago`;
    return `${n.toFixed(1)} d`;
  }

  async function poll() {
    try {
      const r = await fetch("/admin/certificates?due=true&limit=50");
      if (!r.ok) return;
      const report = await r.json();
      const warn = $("cert-warning");
      const due = report.items || [];
      const counts = report.counts || {};
      warn.hidden = due.length === 0;
      warn.dataset.expired = String((counts.expired || 0) > 0);
      const total = (counts.warning || 0) + (counts.expired || 0);
      $("cert-warning-text").textContent =
        `${total} certificate${total === 1 ? "" : "s"} or CRL need renewing: ` +
        `${counts.expired || 0} expired, ${counts.warning || 0} expiring within ${report.warn_days} days` +
        (total > due.length ? ` (the first ${due.length} shown)` : "");
      const body = $("cert-due").querySelector("tbody");
      body.replaceChildren(...due.map((item) => {
        const tr = document.createElement("tr");
        tr.className = item.status;
        tr.dataset.kind = item.kind;
        tr.dataset.agency = item.agency || "";
        tr.dataset.component = item.component || "";
        tr.append(cell(WHAT[item.kind] || item.kind), cell(item.agency || item.component || "—", "code"),
                  cell(item.not_after.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC")),
                  cell(days(item.days_left), "n"));
        return tr;
      }));
    } catch (e) {
      /* the stats panel already says the app is unreachable */
    }
  }

  poll();
  setInterval(poll, 60000);
})();
