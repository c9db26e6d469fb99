// Opens the live demo page in headless Chromium (Debian's, driven by
// playwright-core) and, without touching it, waits until it is subscribed to
// its default channel and reports the trigger command it shows; then reports
// the first event row that appears. Given a second channel, it then switches to
// it with the page's own form and does the same again. One JSON report per
// line on stdout.
"use strict";
const chromium = require("./chromium");

const report = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const [url, next] = process.argv.slice(2);

const status = (page) => page.textContent("#status");

async function subscribedThenEvent(page, channel, rows) {
  await page.waitForFunction((ch) => document.getElementById("status").textContent === `subscribed to ${ch}`, channel);
  report({ type: "ready", channel, command: await page.textContent("#cli-command"), html: await page.content() });
  const row = await page.waitForSelector(`#events tr.event:nth-last-child(${rows})`, { timeout: 20000 });
  const cells = await row.$$eval("td", (tds) => Object.fromEntries(tds.map((td) => [td.className, td.textContent])));
  // Before the report: the test may stop this script once it has it.
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  report({ type: "event", cells });
}

(async () => {
  const browser = await chromium.launch();
  try {
    const page = await browser.newPage();
    page.on("console", (m) => process.stderr.write(`page console: ${m.text()}\n`));
    page.on("pageerror", (e) => process.stderr.write(`page error: ${e}\n`));
    await page.goto(url);
    await subscribedThenEvent(page, await page.inputValue("#channel"), 1).catch(async (e) => {
      throw new Error(`${e.message} (status: ${await status(page)})`);
    });
    if (next) {
      await page.fill("#channel", next);
      await page.click("#subscribe");
      await subscribedThenEvent(page, next, 2);
    }
  } finally {
    await browser.close();
  }
})().catch((e) => {
  report({ type: "error", message: String(e && e.stack || e) });
  process.exit(1);
});
