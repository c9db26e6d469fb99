// Laravel Echo clients in Node for the end-to-end tests, driven by driver.js:
// Echo's `pusher` broadcaster with pusher-js passed as the `Pusher` option (no
// global in Node), channels authorized with the server SDK's authorizeChannel
// through Echo's `authorizer` option. Reports: `echo_connected`,
// `echo_subscribed`, `echo_event`, `echo_here`, `echo_joining`, `echo_leaving`,
// `echo_whisper`, each naming its client (`id`).
"use strict";
const PusherClient = require("pusher-js");
const Pusher = require("pusher");

// laravel-echo is an ES module; its CommonJS entry cannot be require()d.
const echoModule = import("laravel-echo");

module.exports = function echoCommands(report) {
  const clients = new Map();

  async function connect({ id, host, port, key, appId, secret, user, encryptionMasterKeyBase64 }) {
    const { default: Echo } = await echoModule;
    const backend = new Pusher({ appId, key, secret, encryptionMasterKeyBase64 });
    const echo = new Echo({
      broadcaster: "pusher",
      Pusher: PusherClient,
      key,
      wsHost: host,
      wsPort: port,
      forceTLS: false,
      enabledTransports: ["ws"],
      cluster: "mt1",
      // What an app without an auth route of its own passes: the signature
      // straight from its backend code.
      authorizer: (channel) => ({
        authorize: (socketId, callback) => {
          const member = channel.name.startsWith("presence-")
            ? { user_id: user, user_info: { id: user, name: user } }
            : undefined;
          callback(null, backend.authorizeChannel(socketId, channel.name, member));
        },
      }),
    });
    clients.set(id, echo);
    echo.connector.pusher.connection.bind("connected", () =>
      report({ type: "echo_connected", id, socket_id: echo.socketId() }));
  }

  function subscribed(id, channel) {
    return channel.subscribed(() => report({ type: "echo_subscribed", id, channel: channel.name }));
  }

  return {
    echo_connect: connect,
    // `kind`: "channel", "private" or "encryptedPrivate"; `name` without its prefix.
    echo_listen: ({ id, kind, name, event }) => {
      const channel = clients.get(id)[kind](name);
      subscribed(id, channel).listen(event, (data) =>
        report({ type: "echo_event", id, channel: channel.name, event, data }));
    },
    echo_join: ({ id, name }) => {
      subscribed(id, clients.get(id).join(name))
        .here((users) => report({ type: "echo_here", id, users: users.map((u) => u.name).sort() }))
        .joining((u) => report({ type: "echo_joining", id, user: u && u.name }))
        .leaving((u) => report({ type: "echo_leaving", id, user: u && u.name }));
    },
    echo_listen_for_whisper: ({ id, name, event }) => {
      const channel = clients.get(id).private(name);
      subscribed(id, channel).listenForWhisper(event, (data) =>
        report({ type: "echo_whisper", id, channel: channel.name, event, data }));
    },
    echo_whisper: ({ id, name, event, data }) => { clients.get(id).private(name).whisper(event, data); },
    echo_close: ({ id }) => { const e = clients.get(id); if (e) e.disconnect(); clients.delete(id); },
    closeAll: () => { for (const e of clients.values()) e.disconnect(); },
  };
};
