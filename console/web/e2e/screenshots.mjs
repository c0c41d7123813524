// Screenshots of every console view at 1280x800 and 1920x1080, for docs/console/ (run it
// against `./dohguard up --demo-traffic`, then look at them):
//   CONSOLE_URL=http://127.0.0.1:8780/ CONSOLE_USER=admin CONSOLE_PASSWORD=$(cat run/console/initial-admin-password) \
//   SCREENSHOT_DIR=docs/console node console/web/e2e/screenshots.mjs
// SCREENSHOT_RANGE (default 1h) is the overview's range; SCREENSHOT_CLIENT the client shown.
import { chromium } from "playwright-core";

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = need("CONSOLE_URL"), dir = need("SCREENSHOT_DIR");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(url + "login");
  await page.fill('input[name="username"]', need("CONSOLE_USER"));
  await page.fill('input[name="password"]', need("CONSOLE_PASSWORD"));
  await page.click('button[type="submit"]');
  await page.waitForURL(/\/overview/);
  // One override, added through the form as an analyst would, so that the overrides view is not
  // an empty table (SCREENSHOT_OVERRIDE=0 skips it).
  if (process.env.SCREENSHOT_OVERRIDE !== "0") {
    await page.goto(url + "overrides");
    await page.selectOption('#override-new select[name="action"]', "allow");
    await page.selectOption('#override-new select[name="match"]', "registered_domain");
    await page.fill('#override-new input[name="name"]', "partner-cdn.example");
    await page.selectOption('#override-new select[name="expires_in"]', "7d");
    await page.fill('#override-new input[name="reason"]', "vendor CDN, ticket SEC-1042");
    await page.click('#override-new button');
    await page.waitForSelector('text=partner-cdn.example');
  }
  // Pick a blocked verdict, its domain and its client from the API.
  const log = await (await page.request.get(url + "api/log?range=1h&verdict=block&layer=model&size=1")).json();
  const row = log.rows[0] || (await (await page.request.get(url + "api/log?range=1h&size=1")).json()).rows[0];
  const views = {
    overview: `overview?range=${process.env.SCREENSHOT_RANGE || "1h"}`,
    log: "log?range=1h",
    verdict: `verdicts/${encodeURIComponent(row.id)}`,
    domain: `domains/${row.registered_domain}?range=1h`,
    client: `clients/${process.env.SCREENSHOT_CLIENT || row.client}?range=24h`,
    vetting: "vetting?range=24h",
    overrides: "overrides",
    models: "models",
    account: "account",
    "log-bad-filter": "log?range=1h&name_regex=%5Eabc",
  };
  for (const [name, path] of Object.entries(views)) {
    for (const [w, h] of [[1280, 800], [1920, 1080]]) {
      await page.setViewportSize({ width: w, height: h });
      const r = await page.goto(url + path);
      const expected = name === "log-bad-filter" ? 400 : 200;
      if (r.status() !== expected) throw new Error(`${path} answered ${r.status()}`);
      await page.screenshot({ path: `${dir}/${name}-${w}x${h}.png`, fullPage: false });
    }
  }
  console.log(JSON.stringify({ views: Object.keys(views) }));
} finally {
  await browser.close();
}
