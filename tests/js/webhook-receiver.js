// A webhook receiver as an app backend writes one with the npm `pusher` SDK:
// each request is checked with `pusher.webhook({headers, rawBody}).isValid()`.
//
// Usage: node webhook-receiver.js '{"appId": …, "key": …, "secret": …,
//                                   "failFirst": N, "failStatus": S, "port": P,
//                                   "tls": {"cert": PATH, "key": PATH}}'
// Listens on 127.0.0.1, on `port` or one the kernel picks (over TLS with that PEM
// certificate and key when `tls` is given), and reports on stdout, one
// JSON object per line: {"type": "ready", "port": P} once listening, then for
// each request {"type": "request", "valid", "status", "body", "events"?}, where
// `status` is what it answered (`failStatus`, default 500, to the first
// `failFirst` requests, then 200) and `events` is what the SDK read, when valid;
// and for each TLS handshake that failed {"type": "tls_error", "message"}.
"use strict";
const fs = require("node:fs");
const http = require("node:http");
const https = require("node:https");
const Pusher = require("pusher");

const options = JSON.parse(process.argv[2]);
const pusher = new Pusher({ appId: options.appId, key: options.key, secret: options.secret });
const failFirst = options.failFirst || 0;
const failStatus = options.failStatus || 500;
const report = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

let requests = 0;
const handler = (req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    requests += 1;
    const rawBody = Buffer.concat(chunks).toString("utf8");
    // `req.headers` has lower-case names, as the SDK expects.
    const webhook = pusher.webhook({ headers: req.headers, rawBody });
    const valid = webhook.isValid();
    const status = requests <= failFirst ? failStatus : 200;
    report({ type: "request", valid, status, body: rawBody,
             events: valid ? webhook.getEvents() : undefined });
    res.writeHead(status, { "Content-Type": "text/plain" });
    res.end(status === 200 ? "ok" : "not now");
  });
};
const server = options.tls
  ? https.createServer(
      { cert: fs.readFileSync(options.tls.cert), key: fs.readFileSync(options.tls.key) },
      handler,
    )
  : http.createServer(handler);
// A client that refuses the certificate breaks the handshake off: no request.
server.on("tlsClientError", (err) => report({ type: "tls_error", message: String(err.message) }));

server.listen(options.port || 0, "127.0.0.1", () => report({ type: "ready", port: server.address().port }));

// The test closes stdin (or stops the process group) when it is done.
process.stdin.resume();
process.stdin.on("end", () => server.close(() => process.exit(0)));
