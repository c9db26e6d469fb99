// A web page on another origin than pushwire's, in headless Chromium (Debian's,
// driven by playwright-core): this script serves the page and the browser
// socket.io-client bundle on its own loopback port, and the page connects to the
// pushwire origin given as argument with the client's default transports
// (long-polling, then the upgrade to WebSocket), subscribing to a channel in its
// handshake. The page's reports are written as JSON lines on stdout:
// {type: "established"}, {type: "upgrade", transport},
// {type: "event", name, data, meta}, {type: "connect_error", message}.
"use strict";
const http = require("http");
const fs = require("fs");
const path = require("path");
const chromium = require("./chromium");

const report = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const [pushwireUrl, channel] = process.argv.slice(2);
const bundle = fs.readFileSync(path.join(__dirname, "node_modules/socket.io-client/dist/socket.io.min.js"));

const page = `<!doctype html><meta charset="utf-8"><title>another origin</title>
<script src="/socket.io.min.js"></script>
<script>
  const socket = io(${JSON.stringify(pushwireUrl)}, { auth: { channels: [${JSON.stringify(channel)}] }, reconnection: false });
  socket.on("pushwire:connection_established", () => window.report({ type: "established" }));
  socket.io.engine.on("upgrade", (t) => window.report({ type: "upgrade", transport: t.name }));
  socket.on("connect_error", (e) => window.report({ type: "connect_error", message: String(e && e.message) }));
  socket.onAny((name, data, meta) => {
    if (!name.startsWith("pushwire:")) window.report({ type: "event", name, data, meta });
  });
</script>`;

const server = http.createServer((req, res) => {
  if (req.url === "/socket.io.min.js") {
    res.writeHead(200, { "Content-Type": "text/javascript" });
    res.end(bundle);
  } else {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(page);
  }
});

(async () => {
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const browser = await chromium.launch();
  const context = await browser.newContext();
  const tab = await context.newPage();
  tab.on("console", (m) => process.stderr.write(`page console: ${m.text()}\n`));
  tab.on("pageerror", (e) => process.stderr.write(`page error: ${e}\n`));
  await tab.exposeFunction("report", report);
  await tab.goto(`http://127.0.0.1:${server.address().port}/`);
  // The test ends the run by closing stdin.
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on("end", resolve));
  await browser.close();
  server.close();
})().catch((e) => {
  report({ type: "error", message: String(e && e.stack || e) });
  process.exit(1);
});
