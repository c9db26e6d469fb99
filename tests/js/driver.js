// Drives stock clients for the end-to-end tests: npm `socket.io-client` sockets,
// npm `pusher-js` clients (pusher-clients.js), Laravel Echo (echo-clients.js)
// and the npm `pusher` server SDK. Reads one JSON command per line on stdin and
// writes one JSON report per line on stdout. Every report names the client
// (`id`) or request (`req`) it belongs to.
"use strict";
const readline = require("node:readline");
const { io } = require("socket.io-client");
const Pusher = require("pusher");
const nacl = require("tweetnacl");
const pusherCommands = require("./pusher-clients.js");
const echoCommands = require("./echo-clients.js");

const http = require("node:http");
// The recovery helper every origin serves at /pushwire-recovery.js.
const recovery = require("../../origin/assets/pushwire-recovery.js");

const sockets = new Map();
// `opts.agent: "pooled"` makes clients share one small keep-alive connection pool,
// as browser tabs on one origin do: requests of different sessions then reuse
// each other's connections.
const pooledAgent = new http.Agent({ keepAlive: true, maxSockets: 4 });
const report = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

function connect({ id, url, opts }) {
  const options = { forceNew: true, reconnection: true, ...(opts || {}) };
  if (options.agent === "pooled") options.agent = pooledAgent;
  const socket = io(url, options);
  sockets.set(id, socket);
  // `description` says what failed below Socket.IO (an HTTP status, or the
  // network error), so a failed connection in a test run can be traced.
  socket.on("connect_error", (err) =>
    report({ type: "connect_error", id, message: err.message,
             description: err.description === undefined ? undefined
               : String((err.description && err.description.message) || err.description) }));
  socket.on("disconnect", (reason) => report({ type: "disconnect", id, reason }));
  socket.onAny((event, ...args) => {
    if (event === "pushwire:connection_established") {
      report({ type: "connected", id, socket_id: args[0] && args[0].socket_id,
               subscriptions: args[0] && args[0].subscriptions,
               transport: socket.io.engine.transport.name });
    } else {
      report({ type: "event", id, event, args });
    }
  });
}

// Sockets using the recovery helper on one channel; they record the `n` of
// every `event` they receive and every subscribe ack, and report on request.
const tracked = new Map();

function connectTracked({ id, url, opts, channel, event }) {
  const options = { forceNew: true, reconnection: true, reconnectionDelay: 100,
                    reconnectionDelayMax: 1000, ...(opts || {}) };
  const socket = io(url, options);
  sockets.set(id, socket);
  const state = { received: [], acks: [], connections: 0, seen: new Map(), repeats: [],
                  refusals: [] };
  tracked.set(id, state);
  // A refused connection is not retried by socket.io-client: worth a failure message.
  socket.on("connect_error", (err) => { if (!socket.active) state.refusals.push(err.message); });
  const channels = recovery.track(socket);
  socket.on("pushwire:connection_established", () => { state.connections += 1; });
  socket.on(event, (data, meta) => {
    state.received.push(data.n);
    // Details of any repeat, for the test's failure message.
    const first = state.seen.get(data.n);
    if (first) {
      state.repeats.push({ n: data.n, pos: meta.pos, first, connection: state.connections,
                           acks: state.acks.length, transport: socket.io.engine.transport.name });
    } else {
      state.seen.set(data.n, { pos: meta.pos, connection: state.connections, acks: state.acks.length });
    }
  });
  channels.subscribe(channel, {
    onSubscribed: (ack) => {
      state.acks.push(ack);
      if (state.acks.length === 1) report({ type: "tracked_subscribed", id, ack });
    },
  });
}

function trackedSummary({ req }) {
  const clients = {};
  for (const [id, state] of tracked) {
    clients[id] = { received: state.received, acks: state.acks, connections: state.connections,
                    repeats: state.repeats, refusals: state.refusals };
  }
  report({ type: "tracked_summary", req, clients });
}

function emitWithAck({ id, req, event, args }) {
  const socket = sockets.get(id);
  if (!socket) return report({ type: "error", req, message: `no client ${id}` });
  socket.timeout(5000).emit(event, ...(args || []), (err, ack) =>
    report(err ? { type: "ack_timeout", id, req } : { type: "ack", id, req, ack }));
}

// With `encryptionMasterKeyBase64`, the SDK encrypts what it triggers on
// private-encrypted-* channels and adds their `shared_secret` to authorizations.
function pusherFor({ host, port, appId, key, secret, encryptionMasterKeyBase64 }) {
  return new Pusher({ appId, key, secret, host, port: String(port), useTLS: false, timeout: 5000,
                      encryptionMasterKeyBase64 });
}

async function trigger(cmd) {
  const { req, channels, event, data, params } = cmd;
  try {
    const res = await pusherFor(cmd).trigger(channels, event, data, params || {});
    report({ type: "trigger_result", req, status: res.status, body: await res.text() });
  } catch (e) {
    report({ type: "trigger_result", req, status: e.status || 0, body: e.body || String(e) });
  }
}

// Private/presence channel authorization, as an app backend does it.
function authorize(cmd) {
  const { req, socketId, channel, presence } = cmd;
  const auth = pusherFor(cmd).authorizeChannel(socketId, channel, presence);
  report({ type: "authorized", req, auth });
}

// A signed GET (channel queries) with the SDK's `get`.
async function get(cmd) {
  const { req, path, params } = cmd;
  try {
    const res = await pusherFor(cmd).get({ path, params: params || {} });
    report({ type: "get_result", req, status: res.status, body: await res.text() });
  } catch (e) {
    report({ type: "get_result", req, status: e.status || 0, body: e.body || String(e) });
  }
}

// User authentication, as an app backend signs a user in: `{auth, user_data}`.
function authenticateUser(cmd) {
  const { req, socketId, user } = cmd;
  report({ type: "authenticated", req, auth: pusherFor(cmd).authenticateUser(socketId, user) });
}

// The SDK's user calls, each one signed HTTP request: sendToUser and
// terminateUserConnections.
async function userCall(cmd, call) {
  try {
    const res = await call(pusherFor(cmd));
    report({ type: "trigger_result", req: cmd.req, status: res.status, body: await res.text() });
  } catch (e) {
    report({ type: "trigger_result", req: cmd.req, status: e.status || 0, body: e.body || String(e) });
  }
}

// What a Socket.IO app does with an encrypted channel's event: opens the
// `{nonce, ciphertext}` it received with the authorization's shared_secret.
function openSealed({ req, sharedSecret, sealed }) {
  const bytes = nacl.secretbox.open(Buffer.from(sealed.ciphertext, "base64"),
                                    Buffer.from(sealed.nonce, "base64"),
                                    Buffer.from(sharedSecret, "base64"));
  report({ type: "opened", req, data: bytes === null ? null : JSON.parse(Buffer.from(bytes).toString("utf8")) });
}

async function batch(cmd) {
  const { req, events } = cmd;
  try {
    const res = await pusherFor(cmd).triggerBatch(events);
    report({ type: "trigger_result", req, status: res.status, body: await res.text() });
  } catch (e) {
    report({ type: "trigger_result", req, status: e.status || 0, body: e.body || String(e) });
  }
}

const { closeAll: closePusherClients, ...pusherClients } = pusherCommands(report);
const { closeAll: closeEchoClients, ...echoClients } = echoCommands(report);

const commands = {
  ...pusherClients,
  ...echoClients,
  connect,
  emit: emitWithAck,
  emit_no_ack: ({ id, event, args }) => sockets.get(id).emit(event, ...(args || [])),
  connect_tracked: connectTracked,
  tracked_summary: trackedSummary,
  // Kills the transport under the socket: the client reconnects by itself.
  drop_transport: ({ id }) => { const s = sockets.get(id); if (s && s.io.engine) s.io.engine.close(); },
  close: ({ id }) => { const s = sockets.get(id); if (s) s.close(); sockets.delete(id); },
  trigger,
  batch,
  authorize,
  authenticate_user: authenticateUser,
  send_to_user: (cmd) => userCall(cmd, (p) => p.sendToUser(cmd.userId, cmd.event, cmd.data)),
  terminate_user: (cmd) => userCall(cmd, (p) => p.terminateUserConnections(cmd.userId)),
  get,
  open_sealed: openSealed,
};

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { return report({ type: "error", message: `bad command: ${line}` }); }
  const run = commands[cmd.op];
  if (!run) return report({ type: "error", req: cmd.req, message: `unknown op ${cmd.op}` });
  Promise.resolve().then(() => run(cmd)).catch((e) =>
    report({ type: "error", req: cmd.req, message: String(e && e.stack || e) }));
}).on("close", () => {
  for (const s of sockets.values()) s.close();
  closePusherClients();
  closeEchoClients();
  process.exit(0);
});

report({ type: "ready" });
