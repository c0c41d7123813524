// Headless Chromium (Debian's, driven by playwright-core) against a running console: log in
// with the given account, see the overview populated (numbers and the chart), follow the
// blocked count to the filtered log, and check that nothing was fetched from anywhere but the
// console. Optionally writes screenshots at 1280x800 and 1920x1080.
//
// Then the live tail: with it ticked, a DoH query sent now (GET to DOH_URL, the gateway's
// cleartext listener) appears on top of the log without a reload. Then search with the
// filter form, export the view as CSV, open a verdict, open the domain, client (its risk
// trend drawn) and vetting pages, and check that a viewer (created by the admin) is refused a
// label and changes their password on /account (a wrong old one refused first); then the admin
// disables the viewer with the button on /account: the open session ends and the login is refused.
//
// Environment: CONSOLE_URL (with trailing slash), CONSOLE_USER, CONSOLE_PASSWORD,
// CONSOLE_MIN_TOTAL (the overview must show at least this many queries), DOH_URL, CHROMIUM
// (default /usr/bin/chromium), SCREENSHOT_DIR (optional). Exit status 0 = passed.
import { chromium } from "playwright-core";

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = need("CONSOLE_URL");
const minTotal = Number(need("CONSOLE_MIN_TOTAL"));
const shots = process.env.SCREENSHOT_DIR;

/// A DNS query for `name` (type A, RD set), base64url without padding, for a DoH GET.
function dnsQuery(name) {
  const labels = name.split(".").flatMap((l) => [l.length, ...Buffer.from(l, "ascii")]);
  const bytes = Buffer.from([0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
  return bytes.toString("base64url");
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const elsewhere = [];
  page.on("request", (r) => { if (!r.url().startsWith(url) && !r.url().startsWith("data:")) elsewhere.push(r.url()); });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  await page.goto(url + "overview");
  await page.waitForURL(/\/login/);
  await page.fill('input[name="username"]', need("CONSOLE_USER"));
  await page.fill('input[name="password"]', need("CONSOLE_PASSWORD"));
  await page.click('button[type="submit"]');
  await page.waitForURL(/\/overview/);

  const total = Number(await page.textContent('[data-testid="total"]'));
  if (!(total >= minTotal)) throw new Error(`overview shows ${total} queries, expected at least ${minTotal}`);
  await page.waitForSelector("#timeline canvas", { timeout: 5000 }); // uPlot drew the timeline
  const blocked = Number(await page.textContent("a.card.block .n"));
  if (!(blocked >= 1)) throw new Error(`overview shows ${blocked} blocked queries`);
  if (shots) {
    await page.screenshot({ path: `${shots}/overview-1280x800.png`, fullPage: true });
    await page.setViewportSize({ width: 1920, height: 1080 });
    await page.screenshot({ path: `${shots}/overview-1920x1080.png`, fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });
  }

  // The number is a link to the log filtered to it.
  await page.click("a.card.block");
  await page.waitForURL(/\/log\?.*verdict=block/);
  const logTotal = Number(await page.textContent('[data-testid="log-total"]'));
  if (logTotal !== blocked) throw new Error(`log shows ${logTotal} blocked, overview ${blocked}`);
  const rows = await page.locator("table.log tbody tr.block").count();
  if (rows !== Math.min(blocked, 50)) throw new Error(`log lists ${rows} blocked rows, expected ${Math.min(blocked, 50)}`);
  if (shots) await page.screenshot({ path: `${shots}/log-1280x800.png`, fullPage: true });

  // Live tail: a query made now shows up on top without a reload.
  await page.goto(url + "log?range=1h");
  await page.check("#live-tail");
  const tailName = `tail-${Date.now()}.example.test`;
  const doh = await fetch(`${need("DOH_URL")}?dns=${dnsQuery(tailName)}`, { headers: { accept: "application/dns-message" } });
  if (doh.status !== 200) throw new Error(`DoH query for ${tailName} answered ${doh.status}`);
  await page.waitForSelector(`table.log tbody tr.fresh >> text=${tailName}`, { timeout: 20000 });
  const first = await page.textContent("table.log tbody tr:first-child td.name");
  if (first !== tailName) throw new Error(`the newest row is ${first}, not ${tailName}`);
  await page.uncheck("#live-tail");

  // Search with the filter form, open a verdict, export the view as CSV.
  await page.goto(url + "log?range=1h");
  await page.fill('input[name="name"]', "ads");
  await page.click('form.filters button');
  await page.waitForURL(/name=ads/);
  const found = await page.locator("table.log tbody tr").count();
  if (found !== blocked) throw new Error(`searching "ads" lists ${found} rows, expected ${blocked}`);
  const csvHref = await page.getAttribute('a[href^="/api/log/export?format=csv"]', "href");
  const csv = await page.request.get(url + csvHref.slice(1));
  const csvLines = (await csv.text()).trim().split("\n");
  if (csv.status() !== 200 || csvLines.length !== found + 1) throw new Error(`CSV export: ${csv.status()}, ${csvLines.length} lines for ${found} rows`);
  await page.click("table.log tbody tr:first-child td:first-child a");
  await page.waitForURL(/\/verdicts\//);
  const why = await page.textContent("table.kv");
  if (!why.includes("deny_list") || !why.includes("ads.example.test")) throw new Error(`verdict page: ${why}`);
  if (shots) await page.screenshot({ path: `${shots}/verdict-1280x800.png`, fullPage: true });
  for (const view of ["domains/example.test?range=1h", "clients/127.0.0.1?range=1h", "vetting?range=1h"]) {
    const r = await page.goto(url + view);
    if (r.status() !== 200) throw new Error(`${view} answered ${r.status()}`);
    if (view.startsWith("clients/")) await page.waitForSelector("#risk canvas", { timeout: 5000 }); // the risk trend drawn
    if (shots) await page.screenshot({ path: `${shots}/${view.split(/[/?]/)[0]}-1280x800.png`, fullPage: true });
  }

  // A viewer is refused a label (and an admin creates the viewer through the API).
  const csrf = await page.getAttribute('meta[name="csrf-token"]', "content");
  const created = await page.request.post(url + "api/users", {
    headers: { "x-csrf-token": csrf }, data: { username: "viewer1", role: "viewer", password: "viewer-password-1" },
  });
  if (created.status() !== 201) throw new Error(`creating a viewer: ${created.status()}`);
  const viewer = await (await browser.newContext()).newPage();
  await viewer.goto(url + "login");
  await viewer.fill('input[name="username"]', "viewer1");
  await viewer.fill('input[name="password"]', "viewer-password-1");
  await viewer.click('button[type="submit"]');
  await viewer.waitForURL(/\/overview/);
  await viewer.goto(url + "domains/example.test?range=1h");
  if (await viewer.locator("#label-form").count()) throw new Error("a viewer sees the label form");
  const viewerCsrf = await viewer.getAttribute('meta[name="csrf-token"]', "content");
  const refused = await viewer.request.post(url + "api/labels", {
    headers: { "x-csrf-token": viewerCsrf }, data: { domain: "example.test", label: "benign", reason: "trying" },
  });
  if (refused.status() !== 403 || (await refused.json()).type !== "urn:dohguard:console:forbidden") {
    throw new Error(`a viewer's label answered ${refused.status()}`);
  }

  // The viewer changes their password on /account: a wrong old one is refused, then it works.
  await viewer.goto(url + "account");
  const changePassword = async (old, fresh) => {
    await viewer.fill('#password-form input[name="old_password"]', old);
    await viewer.fill('#password-form input[name="new_password"]', fresh);
    await viewer.click('#password-form button[type="submit"]');
    await viewer.waitForFunction(() => document.getElementById("password-result").textContent !== "", null, { timeout: 5000 });
    const said = await viewer.textContent("#password-result");
    await viewer.evaluate(() => { document.getElementById("password-result").textContent = ""; });
    return said;
  };
  const wrong = await changePassword("not-the-password", "viewer-password-2");
  if (!wrong.includes("not your current password")) throw new Error(`wrong old password: ${wrong}`);
  const changed = await changePassword("viewer-password-1", "viewer-password-2");
  if (changed !== "password changed") throw new Error(`password change: ${changed}`);

  // The admin disables the viewer with the button on /account (confirming the dialog): the
  // viewer's open session ends at once and their right password is refused with the reason.
  await page.goto(url + "account");
  page.once("dialog", (d) => d.accept());
  await page.click('button[data-user-status="disable"][data-username="viewer1"]');
  await page.waitForSelector('tr[data-user="viewer1"] button[data-user-status="enable"]', { timeout: 5000 });
  if (!(await page.textContent('tr[data-user="viewer1"]')).includes("disabled")) throw new Error("viewer1 not shown disabled");
  await viewer.goto(url + "overview");
  if (!/\/login/.test(viewer.url())) throw new Error(`a disabled user's session still opens ${viewer.url()}`);
  await viewer.goto(url + "login");
  await viewer.fill('input[name="username"]', "viewer1");
  await viewer.fill('input[name="password"]', "viewer-password-2");
  await viewer.click('button[type="submit"]');
  await viewer.waitForSelector("#login-error:not([hidden])", { timeout: 5000 });
  const disabledSaid = await viewer.textContent("#login-error");
  if (!disabledSaid.includes("disabled")) throw new Error(`a disabled user's login said: ${disabledSaid}`);

  if (elsewhere.length) throw new Error(`requests left the console: ${elsewhere.join(", ")}`);
  if (errors.length) throw new Error(`script errors: ${errors.join("; ")}`);
  console.log(JSON.stringify({ passed: true, total, blocked, logTotal, tailed: tailName }));
} finally {
  await browser.close();
}
