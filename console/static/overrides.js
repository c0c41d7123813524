// dohguard console: overrides. The form on /overrides, the remove buttons there, and the
// one-click allow/deny form on a verdict's page. Errors show the API's problem detail.
"use strict";
(() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  async function send(method, url, body) {
    const r = await fetch(url, {
      method, credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 401) { location.href = "/login?expired=1"; return null; }
    return r;
  }
  async function detail(r) {
    try { const p = await r.json(); return p.detail || p.title; } catch { return r.statusText; }
  }
  const out = (text, ok) => {
    const el = document.getElementById("override-result");
    el.textContent = text; el.className = ok ? "" : "error";
  };
  async function create(body) {
    const r = await send("POST", "/api/overrides", body);
    if (!r) return;
    if (r.ok) {
      const doc = await r.json();
      out(`override ${doc.id} added: ${doc.action} ${doc.name}`, true);
      setTimeout(() => location.reload(), 300);
    } else {
      out(await detail(r), false);
    }
  }
  const form = document.getElementById("override-new");
  form?.addEventListener("submit", (e) => {
    e.preventDefault();
    const d = Object.fromEntries(new FormData(form));
    const clients = d.clients.split(",").map((c) => c.trim()).filter((c) => c);
    create({ action: d.action, match: d.match, name: d.name, clients, expires_in: d.expires_in || null, reason: d.reason });
  });
  document.querySelectorAll("#override-table button.remove").forEach((b) => b.addEventListener("click", async () => {
    const r = await send("DELETE", "/api/overrides/" + encodeURIComponent(b.dataset.id));
    if (!r) return;
    if (r.ok) location.reload(); else out(await detail(r), false);
  }));
  // Flushing the verdict cache (audited, with a reason).
  const flush = document.getElementById("cache-flush");
  flush?.addEventListener("submit", async (e) => {
    e.preventDefault();
    const el = document.getElementById("flush-result");
    const r = await send("POST", "/api/cache/flush", { reason: new FormData(flush).get("reason") });
    if (!r) return;
    if (r.ok) {
      el.textContent = "flushed: the gateway's workers drop their cached verdicts within seconds"; el.className = "";
      setTimeout(() => location.reload(), 800);
    } else {
      el.textContent = await detail(r); el.className = "error";
    }
  });
  // One click from a verdict: allow or deny this name (or its registered domain).
  const one = document.getElementById("override-form");
  one?.addEventListener("submit", (e) => {
    e.preventDefault();
    const d = Object.fromEntries(new FormData(one));
    const action = e.submitter?.value || "allow";
    const name = d.match === "registered_domain" ? one.dataset.domain : one.dataset.name;
    create({ action, match: d.match, name, reason: d.reason });
  });
})();
