// pusher-js clients for the end-to-end tests, driven by driver.js. Every
// client reports its connection states, every raw frame the server sent it
// (`pusher_frame`, to read fields pusher-js hides, such as the event id), and
// every event pusher-js hands to the channel's listeners (`pusher_event`).
"use strict";
const PusherClient = require("pusher-js");
const Pusher = require("pusher");
// The recovery helper every origin serves at /pushwire-recovery.js.
const recovery = require("../../origin/assets/pushwire-recovery.js");

module.exports = function pusherCommands(report) {
  const clients = new Map();

  function connect({ id, host, port, key, appId, secret, presence, activityTimeout,
                     encryptionMasterKeyBase64, recover, user, badSignin }) {
    // Private and presence channels are authorized as an app backend does it,
    // with the server SDK's authorizeChannel (which, given the master key, adds
    // the shared_secret pusher-js decrypts private-encrypted-* channels with);
    // users are signed in with its authenticateUser (`badSignin`: with one
    // signature character changed).
    const backend = new Pusher({ appId, key, secret: secret || "unused", host, port: String(port), useTLS: false,
                                 encryptionMasterKeyBase64 });
    const client = new PusherClient(key, {
      wsHost: host, wsPort: port, forceTLS: false, enabledTransports: ["ws"], cluster: "pushwire",
      activityTimeout: activityTimeout || 120000,
      channelAuthorization: {
        customHandler: ({ socketId, channelName }, callback) =>
          callback(null, backend.authorizeChannel(socketId, channelName,
            channelName.startsWith("presence-") ? presence : undefined)),
      },
      userAuthentication: {
        customHandler: ({ socketId }, callback) => {
          const signed = backend.authenticateUser(socketId, user);
          if (badSignin) {
            const last = signed.auth.slice(-1);
            signed.auth = signed.auth.slice(0, -1) + (last === "0" ? "1" : "0");
          }
          callback(null, signed);
        },
      },
    });
    clients.set(id, client);
    // Events sent to the signed-in user (pusher.user.bind).
    client.user.bind_global((event, data) =>
      report({ type: "pusher_user_event", id, event, data: data === undefined ? null : data }));
    if (recover) {
      recovery.trackPusher(client, { onLost: (channel) => report({ type: "pusher_lost", id, channel }) });
    }
    client.connection.bind("state_change", ({ current }) => {
      report({ type: "pusher_state", id, state: current });
      if (current === "connected") {
        const transport = client.connection.connection.transport;
        transport.bind("message", (m) => {
          let frame;
          try { frame = JSON.parse(m.data); } catch (e) { frame = { unparsed: String(m.data) }; }
          report({ type: "pusher_frame", id, frame });
        });
        report({ type: "pusher_connected", id, socket_id: client.connection.socket_id });
      }
    });
    client.connection.bind("error", (err) =>
      report({ type: "pusher_error", id, error: JSON.parse(JSON.stringify(err)) }));
  }

  function subscribe({ id, channel }) {
    const ch = clients.get(id).subscribe(channel);
    ch.bind_global((event, data) => {
      if (event === "pusher:subscription_succeeded" && data && data.members !== undefined) {
        data = { count: data.count, me: data.me, ids: Object.keys(data.members).sort() };
      }
      report({ type: "pusher_event", id, channel, event, data: data === undefined ? null : data });
    });
  }

  return {
    pusher_connect: connect,
    pusher_subscribe: subscribe,
    pusher_unsubscribe: ({ id, channel }) => clients.get(id).unsubscribe(channel),
    pusher_signin: ({ id }) => clients.get(id).signin(),
    pusher_state: ({ id, req }) =>
      report({ type: "pusher_state_now", id, req, state: clients.get(id).connection.state }),
    pusher_signin: ({ id }) => clients.get(id).signin(),
    pusher_state: ({ id, req }) =>
      report({ type: "pusher_state_now", id, req, state: clients.get(id).connection.state }),
    // `sent` is what pusher-js's trigger returned, or the error it threw.
    pusher_client_event: ({ id, channel, event, data }) => {
      let sent;
      try { sent = clients.get(id).channel(channel).trigger(event, data); } catch (e) { sent = String(e.message); }
      report({ type: "pusher_triggered", id, sent });
    },
    // A text frame exactly as given, below pusher-js's own encoding.
    pusher_raw: ({ id, text }) => clients.get(id).connection.connection.transport.send(text),
    // Drops the connection and opens a new one, keeping the channels.
    pusher_disconnect: ({ id }) => clients.get(id).disconnect(),
    pusher_reconnect: ({ id }) => clients.get(id).connect(),
    pusher_close: ({ id }) => { const c = clients.get(id); if (c) c.disconnect(); clients.delete(id); },
    closeAll: () => { for (const c of clients.values()) c.disconnect(); },
  };
};
