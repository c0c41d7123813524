// Headless Chromium against a running console with vetting candidates: log in, open the
// vetting queue, type a reason, select the first row with `x`, label it malicious with `m`,
// and check the row leaves the table and the label is stored (who, why).
//
// Environment: CONSOLE_URL (with trailing slash), CONSOLE_USER, CONSOLE_PASSWORD, CHROMIUM.
// Prints {"labelled": "<domain>"} and exits 0 when it passed.
import { chromium } from "playwright-core";

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = need("CONSOLE_URL");
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
  await page.goto(url + "vetting?range=1h");
  const rows = page.locator("#vet-table tbody tr[data-domain]");
  const before = await rows.count();
  if (before < 1) throw new Error("the vetting queue is empty");
  const domain = await rows.first().getAttribute("data-domain");
  await page.fill("#vet-reason", "algorithmic name, browser test");
  await page.locator("body").click({ position: { x: 5, y: 300 } }); // leave the text field: keys act on the table
  await page.keyboard.press("x");
  await page.keyboard.press("m");
  await page.waitForFunction(() => document.getElementById("vet-result")?.textContent.startsWith("labelled"), null, { timeout: 10000 });
  if ((await rows.count()) !== before - 1) throw new Error("the labelled row is still in the table");
  const stored = await page.request.get(url + "api/labels?domain=" + encodeURIComponent(domain));
  const label = (await stored.json()).labels[0];
  if (!label || label.label !== "malicious" || label.labelled_by !== need("CONSOLE_USER") || label.reason !== "algorithmic name, browser test") {
    throw new Error(`stored label: ${JSON.stringify(label)}`);
  }
  console.log(JSON.stringify({ labelled: domain }));
} finally {
  await browser.close();
}
