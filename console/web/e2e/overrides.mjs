// Headless Chromium against a running console (the override loop; the Rust test around it
// in tests/tests/overrides.rs sends the queries with kdig and measures the propagation).
//
// MODE=allow: log in as CONSOLE_USER, open the verdict VERDICT_ID, type a reason and click
// "Allow" (one click: this exact name). Prints {"id", "name", "created_ms"} of the stored
// override, read back from the overrides page.
// MODE=refusals: the overrides page refuses an override on a public suffix with the API's
// message; then a viewer (created by the admin) sees no override form on the verdict page
// or the overrides page, and the API refuses the viewer's override with 403 problem+json.
//
// Environment: CONSOLE_URL (with trailing slash), CONSOLE_USER, CONSOLE_PASSWORD, MODE,
// VERDICT_ID, CHROMIUM (default /usr/bin/chromium), SCREENSHOT_DIR (optional).
import { chromium } from "playwright-core";

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = need("CONSOLE_URL");
const verdict = need("VERDICT_ID");
const shots = process.env.SCREENSHOT_DIR;

async function logIn(page, user, password) {
  await page.goto(url + "login");
  await page.fill('input[name="username"]', user);
  await page.fill('input[name="password"]', password);
  await page.click('button[type="submit"]');
  await page.waitForURL(/\/overview/);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await logIn(page, need("CONSOLE_USER"), need("CONSOLE_PASSWORD"));
  const mode = need("MODE");
  if (mode === "allow") {
    await page.goto(url + "verdicts/" + encodeURIComponent(verdict));
    const name = await page.getAttribute("#override-form", "data-name");
    await page.fill('#override-form input[name="reason"]', "known good: e2e one-click allow");
    await page.click('[data-testid="override-allow"]');
    await page.waitForSelector("#override-result:has-text('added')", { timeout: 10000 });
    const result = await page.textContent("#override-result");
    const id = result.match(/override (\S+) added/)[1];
    // The overrides page lists it as active, with who and why.
    await page.goto(url + "overrides");
    const row = page.locator(`#override-table tr[data-id="${id}"]`);
    const text = await row.textContent();
    if (!text.includes("active") || !text.includes(name) || !text.includes("known good")) throw new Error(`overrides page row: ${text}`);
    if (shots) await page.screenshot({ path: `${shots}/overrides-1280x800.png`, fullPage: true });
    const list = await (await page.request.get(url + "api/overrides")).json();
    const doc = list.overrides.find((o) => o.id === id);
    if (!doc || doc.action !== "allow" || doc.match !== "exact") throw new Error(`stored override: ${JSON.stringify(doc)}`);
    if (errors.length) throw new Error(`script errors: ${errors.join("; ")}`);
    console.log(JSON.stringify({ id, name, created_ms: doc.created_ms, created_by: doc.created_by }));
  } else if (mode === "refusals") {
    await page.goto(url + "overrides");
    await page.selectOption('#override-new select[name="match"]', "suffix");
    await page.fill('#override-new input[name="name"]', "com");
    await page.fill('#override-new input[name="reason"]', "too broad");
    await page.click("#override-new button");
    await page.waitForSelector("#override-result.error", { timeout: 10000 });
    const refusal = await page.textContent("#override-result");
    if (!refusal.includes("public suffix")) throw new Error(`public suffix refusal: ${refusal}`);

    const csrf = await page.getAttribute('meta[name="csrf-token"]', "content");
    const created = await page.request.post(url + "api/users", {
      headers: { "x-csrf-token": csrf }, data: { username: "viewer2", role: "viewer", password: "viewer-password-2" },
    });
    if (created.status() !== 201) throw new Error(`creating a viewer: ${created.status()}`);
    const viewer = await (await browser.newContext()).newPage();
    await logIn(viewer, "viewer2", "viewer-password-2");
    await viewer.goto(url + "verdicts/" + encodeURIComponent(verdict));
    if (await viewer.locator("#override-form").count()) throw new Error("a viewer sees the one-click override form");
    await viewer.goto(url + "overrides");
    if (await viewer.locator("#override-new").count()) throw new Error("a viewer sees the new-override form");
    if (await viewer.locator("#override-table button.remove").count()) throw new Error("a viewer sees remove buttons");
    const viewerCsrf = await viewer.getAttribute('meta[name="csrf-token"]', "content");
    const refused = await viewer.request.post(url + "api/overrides", {
      headers: { "x-csrf-token": viewerCsrf },
      data: { action: "allow", match: "exact", name: "ads.example.test", reason: "trying" },
    });
    const problem = await refused.json();
    if (refused.status() !== 403 || problem.type !== "urn:dohguard:console:forbidden" || !refused.headers()["content-type"].startsWith("application/problem+json")) {
      throw new Error(`a viewer's override answered ${refused.status()}: ${JSON.stringify(problem)}`);
    }
    if (errors.length) throw new Error(`script errors: ${errors.join("; ")}`);
    console.log(JSON.stringify({ refused: problem.detail, public_suffix: refusal }));
  } else {
    throw new Error(`MODE ${mode}: use allow or refusals`);
  }
} finally {
  await browser.close();
}
