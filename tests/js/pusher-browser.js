// Pages using pusher-js and Laravel Echo in headless Chromium, and the small
// app backend they need (what a Laravel app's /broadcasting/auth is): it serves
// pusher-page.html, the npm packages' browser builds and the channel
// authorization endpoints, signing with the npm `pusher` SDK's authorizeChannel.
//
// argv[2]: {"appId", "key", "secret", "encryptionMasterKeyBase64"}. Commands,
// one JSON object a line on stdin: {op: "open", page, host, port, user} opens a
// page (as `user`) whose clients connect to the origin at host:port;
// {op: "call", page, fn, args} runs `window.pw[fn](args)` in it;
// {op: "close", page}. Reports, one JSON object a line on stdout, name their
// page; the backend's are `{type: "auth", user, channel, status}`.
"use strict";
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");
const readline = require("node:readline");
const Pusher = require("pusher");
const chromium = require("./chromium");

const report = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const app = JSON.parse(process.argv[2]);
const backend = new Pusher({
  appId: app.appId, key: app.key, secret: app.secret,
  encryptionMasterKeyBase64: app.encryptionMasterKeyBase64,
});

const files = {
  "/": ["pusher-page.html", "text/html"],
  "/js/pusher-with-encryption.js": ["node_modules/pusher-js/dist/web/pusher-with-encryption.js", "text/javascript"],
  "/js/echo.iife.js": ["node_modules/laravel-echo/dist/echo.iife.js", "text/javascript"],
};

// Channel authorization as a Laravel app's broadcasting/auth route does it: the
// user comes from the request's credentials (here a bearer token naming them),
// nobody signed in gets 403, and a presence channel's member is that user.
function authorize(req, body, res) {
  const form = new URLSearchParams(body);
  const socketId = form.get("socket_id");
  const channel = form.get("channel_name");
  const user = ((req.headers.authorization || "").match(/^Bearer (\w+)$/) || [])[1];
  const status = user && socketId && channel ? 200 : 403;
  report({ type: "auth", user: user || null, channel, status });
  if (status !== 200) {
    res.writeHead(403, { "content-type": "application/json" });
    return res.end(JSON.stringify({ message: "This action is unauthorized." }));
  }
  const member = channel.startsWith("presence-")
    ? { user_id: user, user_info: { id: user, name: user[0].toUpperCase() + user.slice(1) } }
    : undefined;
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify(backend.authorizeChannel(socketId, channel, member)));
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://page");
  if (req.method === "POST" && ["/broadcasting/auth", "/pusher/auth"].includes(url.pathname)) {
    let body = "";
    req.on("data", (chunk) => { body += chunk; });
    req.on("end", () => authorize(req, body, res));
    return;
  }
  const file = files[url.pathname];
  if (req.method !== "GET" || !file) {
    res.writeHead(404);
    return res.end();
  }
  res.writeHead(200, { "content-type": file[1] });
  fs.createReadStream(path.join(__dirname, file[0])).pipe(res);
});

(async () => {
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch();
  const context = await browser.newContext();
  const pages = new Map();

  const commands = {
    async open({ page: id, host, port, user }) {
      const page = await context.newPage();
      pages.set(id, page);
      page.on("console", (m) => process.stderr.write(`page ${id} console: ${m.text()}\n`));
      page.on("pageerror", (e) => report({ type: "page_error", page: id, message: String(e) }));
      await page.exposeFunction("report", (obj) => report({ ...obj, page: id }));
      const query = new URLSearchParams({ key: app.key, host, port: String(port), user });
      await page.goto(`${base}/?${query}`);
    },
    async call({ page: id, fn, args }) {
      await pages.get(id).evaluate(([fn, args]) => window.pw[fn](args), [fn, args || {}]);
    },
    async close({ page: id }) {
      const page = pages.get(id);
      pages.delete(id);
      if (page) await page.close();
    },
  };

  // In order: a page must be open before it is called.
  let queue = Promise.resolve();
  readline.createInterface({ input: process.stdin }).on("line", (line) => {
    if (!line.trim()) return;
    queue = queue.then(async () => {
      const cmd = JSON.parse(line);
      const run = commands[cmd.op];
      if (!run) throw new Error(`unknown op ${cmd.op}`);
      await run(cmd);
    }).catch((e) => report({ type: "error", message: String(e && e.stack || e) }));
  }).on("close", async () => {
    await browser.close();
    server.close();
    process.exit(0);
  });
  report({ type: "ready", url: base });
})().catch((e) => {
  report({ type: "error", message: String(e && e.stack || e) });
  process.exit(1);
});
