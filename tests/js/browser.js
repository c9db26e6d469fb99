// Opens the live demo page in headless Chromium (Debian's, driven by
// playwright-core), subscribes to a channel through the page's own form, and
// reports the trigger command the page shows; then reports the first event row
// that appears. One JSON report per line on stdout.
"use strict";
const chromium = require("./chromium");

const report = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const [url, channel] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch();
  try {
    const page = await browser.newPage();
    page.on("console", (m) => process.stderr.write(`page console: ${m.text()}\n`));
    page.on("pageerror", (e) => process.stderr.write(`page error: ${e}\n`));
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById("status").textContent === "connected");
    await page.fill("#channel", channel);
    await page.click("#subscribe");
    await page.waitForFunction((ch) => document.getElementById("status").textContent === `subscribed to ${ch}`, channel);
    report({ type: "ready", command: await page.textContent("#cli-command"), html: await page.content() });
    const row = await page.waitForSelector("#events tr.event", { timeout: 20000 });
    const cells = await row.$$eval("td", (tds) => Object.fromEntries(tds.map((td) => [td.className, td.textContent])));
    if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    report({ type: "event", cells });
  } finally {
    await browser.close();
  }
})().catch((e) => {
  report({ type: "error", message: String(e && e.stack || e) });
  process.exit(1);
});
