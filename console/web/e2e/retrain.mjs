// Headless Chromium through the retraining loop against a running console (with a scorer,
// its admin token, and vetting candidates from real traffic). Two steps (STEP):
//
// - "retrain": label two domains (the vetting queue's first with the keyboard, the demo zone on
//   its domain page), export the labels as CSV from the models page, start a retrain
//   (2 epochs), watch the progress bar move while it runs, wait for the candidate and its shadow comparison, promote it and
//   see the page name it as serving. Prints {"labelled": [...], "csv_lines", "candidate",
//   "shadow_changed", "shadow_names", "progress_seen"}.
// - "rollback": press Roll back and see the previous model serving. Prints {"serving"}.
//
// Environment: CONSOLE_URL (with trailing slash), CONSOLE_USER, CONSOLE_PASSWORD, STEP, CHROMIUM.
import { chromium } from "playwright-core";

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = need("CONSOLE_URL");
const step = need("STEP");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const text = async (page, sel) => ((await page.textContent(sel)) || "").trim();
// Polls fn in the page until it is true; survives the page reloading itself meanwhile.
async function until(page, what, fn, arg, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { if (await page.evaluate(fn, arg)) return; } catch { /* reloading */ }
    await page.waitForTimeout(100);
  }
  throw new Error(`timed out waiting for ${what}: ${await page.textContent("#models-result").catch(() => "")}`);
}
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  await page.goto(url + "login");
  await page.fill('input[name="username"]', need("CONSOLE_USER"));
  await page.fill('input[name="password"]', need("CONSOLE_PASSWORD"));
  await page.click('button[type="submit"]');
  await page.waitForURL(/\/overview/);

  if (step === "retrain") {
    // Label two domains: the vetting queue's first malicious (keyboard), the demo zone
    // benign (the domain page's form).
    const labelled = [];
    await page.goto(url + "vetting?range=1h");
    const rows = page.locator("#vet-table tbody tr[data-domain]");
    if ((await rows.count()) < 1) throw new Error("the vetting queue is empty");
    labelled.push(await rows.first().getAttribute("data-domain"));
    await page.fill("#vet-reason", "retrain browser test");
    await page.locator("body").click({ position: { x: 5, y: 300 } });
    await page.keyboard.press("x");
    await page.keyboard.press("m");
    await page.waitForFunction(() => document.getElementById("vet-result")?.textContent.startsWith("labelled"), null, { timeout: 10000 });
    await page.goto(url + "domains/example.test?range=1h");
    await page.selectOption('#label-form select[name="label"]', "benign");
    await page.fill('#label-form input[name="reason"]', "our demo zone");
    await page.click("#label-form button");
    await page.waitForFunction(() => document.getElementById("label-result")?.textContent === "labelled", null, { timeout: 10000 });
    labelled.push("example.test");

    await page.goto(url + "models");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-labels")]);
    const fs = await import("node:fs");
    const csv = fs.readFileSync(await download.path(), "utf8").trim().split("\n");
    if (csv[0] !== "name,label,family,labelled_by,labelled_at,reason") throw new Error(`CSV header: ${csv[0]}`);
    for (const d of labelled) if (!csv.some((l) => l.startsWith(d + ","))) throw new Error(`${d} not in the CSV: ${csv}`);

    const serving = await text(page, "#serving-version");
    await page.fill('#retrain-form input[name="epochs"]', "2");
    await page.click("#retrain");
    await page.waitForFunction(() => document.getElementById("job-state")?.textContent === "running", null, { timeout: 10000 });
    // Progress: the bar moves past 0 while the job runs (or the page reloads when it ends).
    let progressSeen = 0;
    const deadline = Date.now() + 170000;
    while (Date.now() < deadline) {
      const state = await page.$eval("#job-state", (e) => e.textContent).catch(() => "");
      const value = await page.$eval("#job-progress", (e) => e.value).catch(() => 0);
      progressSeen = Math.max(progressSeen, value);
      if (state && state !== "running") break;
      await page.waitForTimeout(200);
    }
    await page.waitForSelector("#comparison", { timeout: 10000 });
    if ((await text(page, "#job-state")) !== "succeeded") throw new Error(`job: ${await text(page, "#job-state")} ${await text(page, "#job-message")}`);
    const row = page.locator("#candidates tbody tr[data-id]").first();
    const candidate = (await row.locator("td").nth(1).textContent()).trim();
    const checks = (await row.locator("td").nth(3).textContent()).trim();
    if (checks !== "passed") throw new Error(`candidate checks: ${checks}: ${await text(page, "#checks")}`);
    const labelRows = await page.locator("#on-labels tbody tr").count();
    if (labelRows !== 2) throw new Error(`precision/recall rows: ${labelRows}`);
    const shadowChanged = Number(await text(page, "#shadow-changed"));
    const heading = await text(page, "#comparison h2:nth-of-type(2)");
    const shadowNames = Number(heading.match(/of (\d+) recent names/)[1]);

    await row.locator("button.promote").click();
    await until(page, "the candidate serving", (v) => document.getElementById("serving-version")?.textContent === v, candidate, 30000);
    if (candidate === serving) throw new Error("the candidate has the serving model's version");
    console.log(JSON.stringify({ labelled, csv_lines: csv.length, candidate, previous: serving, shadow_changed: shadowChanged, shadow_names: shadowNames, progress_seen: progressSeen }));
  } else if (step === "rollback") {
    await page.goto(url + "models");
    const before = await text(page, "#serving-version");
    await page.click("#rollback");
    await until(page, "the previous model serving", (v) => { const s = document.getElementById("serving-version")?.textContent; return s && s !== v; }, before, 30000);
    console.log(JSON.stringify({ serving: await text(page, "#serving-version") }));
  } else {
    throw new Error(`unknown STEP ${step}`);
  }
} finally {
  await browser.close();
}
