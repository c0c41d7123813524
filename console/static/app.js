// dohguard console: the little scripting the pages need. No framework, no network access
// beyond the console itself. State-changing requests carry the session's CSRF token.
"use strict";
const dohguard = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  async function post(url, body) {
    const r = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 401) { location.href = "/login?expired=1"; return null; }
    return r;
  }
  async function problem(r) {
    try { const p = await r.json(); return p.detail || p.title; } catch { return r.statusText; }
  }
  function bindLogin() {
    const form = document.getElementById("login-form");
    if (!form) return;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const data = Object.fromEntries(new FormData(form));
      const r = await fetch("/api/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(data) });
      if (r.ok) { location.href = "/overview"; return; }
      const out = document.getElementById("login-error");
      out.textContent = await problem(r); out.hidden = false;
    });
  }
  function bindLogout() {
    document.getElementById("logout")?.addEventListener("click", async () => {
      await post("/api/logout"); location.href = "/login";
    });
  }
  function bindLabel() {
    const form = document.getElementById("label-form");
    if (!form) return;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const data = Object.fromEntries(new FormData(form));
      const r = await post("/api/labels", { domain: form.dataset.domain, label: data.label, reason: data.reason });
      if (!r) return;
      document.getElementById("label-result").textContent = r.ok ? "labelled" : await problem(r);
      if (r.ok) setTimeout(() => location.reload(), 300);
    });
  }
  function bindAutoRefresh() {
    const box = document.getElementById("auto-refresh");
    if (!box) return;
    box.checked = sessionStorage.getItem("autoRefresh") === "1";
    let timer = null;
    const arm = () => { clearInterval(timer); if (box.checked) timer = setInterval(() => location.reload(), 30000); };
    box.addEventListener("change", () => { sessionStorage.setItem("autoRefresh", box.checked ? "1" : "0"); arm(); });
    arm();
  }
  // The stacked timeline (uPlot, installed by set-up); a click opens the log for that bucket.
  function timeline() {
    const el = document.getElementById("timeline");
    if (!el || typeof uPlot === "undefined") return;
    const points = JSON.parse(el.dataset.timeline);
    const t = points.map((p) => p.t / 1000);
    const allow = points.map((p) => p.allow), monitor = points.map((p) => p.monitor), block = points.map((p) => p.block);
    // Stack: block at the bottom, then monitor, then allow.
    const s1 = block, s2 = block.map((v, i) => v + monitor[i]), s3 = s2.map((v, i) => v + allow[i]);
    const step = t.length > 1 ? t[1] - t[0] : 60;
    const opts = {
      width: el.clientWidth || 900, height: 220, legend: { live: false },
      series: [{}, { label: "allow (stacked total)", stroke: "#3b7d3b", fill: "rgba(59,125,59,.25)", points: { show: false } },
        { label: "monitor + block", stroke: "#c98a00", fill: "rgba(201,138,0,.35)", points: { show: false } },
        { label: "block", stroke: "#b3261e", fill: "rgba(179,38,30,.45)", points: { show: false } }],
      axes: [{}, { size: 50 }],
      cursor: { drag: { x: false, y: false } },
      hooks: { ready: [(u) => u.over.addEventListener("click", () => {
        const i = u.cursor.idx; if (i == null) return;
        const from = new Date(t[i] * 1000).toISOString(), to = new Date((t[i] + step) * 1000).toISOString();
        const base = new URLSearchParams(el.dataset.log.split("?")[1] || "");
        base.delete("range"); base.set("from", from); base.set("to", to);
        location.href = "/log?" + base.toString();
      })] },
    };
    new uPlot(opts, [t, s3, s2, s1], el);
  }
  // The client's risk trend (uPlot): flagged share and mean / highest score, all in [0, 1].
  function risk() {
    const el = document.getElementById("risk");
    if (!el || typeof uPlot === "undefined") return;
    const points = JSON.parse(el.dataset.risk);
    const t = points.map((p) => p.t / 1000);
    const opts = {
      width: el.clientWidth || 600, height: 220, legend: { live: false },
      scales: { y: { range: [0, 1] } },
      series: [{}, { label: "blocked or monitored", stroke: "#b3261e", fill: "rgba(179,38,30,.15)", points: { size: 4 } },
        { label: "mean score", stroke: "#1f5fae", points: { size: 4 } }, { label: "highest score", stroke: "#c98a00", dash: [4, 3], points: { size: 4 } }],
      axes: [{}, { size: 40 }],
    };
    new uPlot(opts, [t, points.map((p) => p.flagged_share), points.map((p) => p.mean_score), points.map((p) => p.max_score)], el);
  }
  // Live tail on the log page: polls the same filter every 2 s and puts rows it has not shown
  // yet on top. Unticking the box pauses it.
  function tail() {
    const box = document.getElementById("live-tail"), table = document.getElementById("log-table");
    if (!box || !table) return;
    const body = table.tBodies[0];
    const seen = new Set([...body.rows].map((r) => r.dataset.id).filter(Boolean));
    const cell = (text, cls) => { const td = document.createElement("td"); td.textContent = text ?? ""; if (cls) td.className = cls; return td; };
    async function poll() {
      const r = await fetch("/api/log?" + table.dataset.query + "&size=100", { credentials: "same-origin" });
      if (r.status === 401) { location.href = "/login?expired=1"; return; }
      if (!r.ok) return;
      const page = await r.json();
      const fresh = page.rows.filter((row) => !seen.has(row.id));
      for (const row of fresh.reverse()) {
        seen.add(row.id);
        const tr = document.createElement("tr");
        tr.className = (row.verdict || "malformed") + " fresh"; tr.dataset.id = row.id;
        const time = cell(""); const a = document.createElement("a"); a.href = "/verdicts/" + encodeURIComponent(row.id); a.textContent = row.timestamp; time.appendChild(a);
        tr.append(time, cell(row.client), cell(row.name, "name"), cell(row.qtype), cell(row.verdict), cell(row.layer),
          cell(row.score == null ? "" : row.score.toFixed(3), "num"), cell(row.rcode), cell(row.latency_us, "num"));
        body.insertBefore(tr, body.firstChild);
        body.querySelector("td.empty")?.parentElement.remove();
      }
      document.querySelector('[data-testid="log-total"]').textContent = page.total;
    }
    let timer = null;
    box.addEventListener("change", () => { clearInterval(timer); timer = box.checked ? setInterval(poll, 2000) : null; if (box.checked) poll(); });
  }
  // The vetting queue: select rows (click or x), move with j/k, label the selection (or the
  // current row) with m (malicious) or b (benign); the reason field is required.
  function vetting() {
    const form = document.getElementById("vet-form"), table = document.getElementById("vet-table");
    if (!form || !table) return;
    const rows = [...table.tBodies[0].rows].filter((r) => r.dataset.domain);
    let current = 0;
    const focus = (i) => { rows[current]?.classList.remove("current"); current = Math.max(0, Math.min(rows.length - 1, i)); rows[current]?.classList.add("current"); rows[current]?.scrollIntoView({ block: "nearest" }); };
    focus(0);
    async function label(kind) {
      const chosen = rows.filter((r) => r.querySelector("input[type=checkbox]").checked);
      const domains = (chosen.length ? chosen : rows.slice(current, current + 1)).map((r) => r.dataset.domain);
      const out = document.getElementById("vet-result");
      const reason = document.getElementById("vet-reason").value.trim();
      if (!domains.length) return;
      if (!reason) { out.textContent = "a reason is required"; document.getElementById("vet-reason").focus(); return; }
      const r = await post("/api/labels/bulk", { domains, label: kind, reason });
      if (!r) return;
      out.textContent = r.ok ? `labelled ${domains.length} ${kind}` : await problem(r);
      if (r.ok) for (const row of rows.filter((x) => domains.includes(x.dataset.domain))) row.remove();
    }
    form.querySelectorAll("button[data-label]").forEach((b) => b.addEventListener("click", () => label(b.dataset.label)));
    document.addEventListener("keydown", (e) => {
      if (e.target.tagName === "INPUT" && e.target.type !== "checkbox") return;
      if (e.key === "j") focus(current + 1);
      else if (e.key === "k") focus(current - 1);
      else if (e.key === "x") { const c = rows[current]?.querySelector("input[type=checkbox]"); if (c) c.checked = !c.checked; }
      else if (e.key === "m") label("malicious");
      else if (e.key === "b") label("benign");
    });
  }
  // The account page: change one's password; admins reset another user's.
  function bindAccount() {
    const forms = [["password-form", "password-result", () => "/api/me/password", (d) => d, "password changed"],
      ["reset-form", "reset-result", (d) => "/api/users/" + encodeURIComponent(d.username) + "/password", (d) => ({ new_password: d.new_password }), "password reset"]];
    for (const [id, outId, url, body, done] of forms) {
      const form = document.getElementById(id);
      if (!form) continue;
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const data = Object.fromEntries(new FormData(form));
        const r = await post(url(data), body(data));
        if (!r) return;
        const out = document.getElementById(outId);
        out.className = r.ok ? "notice" : "error";
        out.textContent = r.ok ? done : await problem(r);
        if (r.ok) form.reset();
      });
    }
    // Admins: disable or enable a user (the page reloads to show the new status).
    for (const button of document.querySelectorAll("button[data-user-status]")) {
      button.addEventListener("click", async () => {
        const action = button.dataset.userStatus, name = button.dataset.username;
        if (action === "disable" && !confirm("Disable " + name + "? Their sessions end at once.")) return;
        const r = await post("/api/users/" + encodeURIComponent(name) + "/" + action, {});
        if (!r) return;
        if (r.ok) { location.reload(); return; }
        const out = document.getElementById("users-result");
        out.className = "error"; out.textContent = await problem(r);
      });
    }
  }
  document.addEventListener("DOMContentLoaded", () => { bindLogin(); bindLogout(); bindLabel(); bindAutoRefresh(); bindAccount(); });
  return { timeline, risk, tail, vetting, post };
})();
