/*
 * pushwire-recovery.js — nothing lost across reconnects, for a stock socket.io-client.
 *
 * Remembers the last position (`meta.pos`) seen on each channel and subscribes
 * again with `since` on every (re)connection, so the server replays what the
 * socket missed (in order, exactly once) before live events resume.
 *
 *   const socket = io("https://push.example.com", { auth: { app_key: "app-key" } });
 *   const channels = pushwireRecovery.track(socket);
 *   channels.subscribe("ticker-BTC", {
 *     // After every (re)subscription, and when the server reports lost history.
 *     onSubscribed: (ack) => { if (ack.recovered === false) refetchState(); },
 *   });
 *   socket.on("price", (data, meta) => render(data));
 *
 * Private channels: pass `auth: (socketId) => Promise<{auth}>` (called again
 * on every reconnection, as the socket id changes).
 *
 * A subscribe answered 4200 (the server could not reach its broker just then)
 * is asked again, 250 ms doubling to 5 s apart, for as long as the connection
 * lasts; `onSubscribed` gets the answer that ends the attempts.
 *
 * Pusher-protocol clients (pusher-js 7 and 8): `trackPusher` does the same
 * for every channel of a Pusher instance, created before its first subscribe.
 * pusher-js subscribes again by itself after a reconnection; the helper adds
 * `since` to those subscribes and reports channels whose events may be lost.
 *
 *   const pusher = new Pusher("app-key", { wsHost, wsPort, forceTLS: false, enabledTransports: ["ws"], cluster: "" });
 *   pushwireRecovery.trackPusher(pusher, {
 *     // The history no longer reached back to the last event seen on `channel`.
 *     onLost: (channel) => refetchState(channel),
 *   });
 *   pusher.subscribe("ticker-BTC").bind("price", render);
 *
 * pusher-js hands applications no more than `event`, `channel` and `data`, so
 * the helper reads the positions from the connection's raw frames (pusher-js's
 * `connection.connection.transport`, present in versions 7 and 8).
 *
 * Served by every pushwire origin at /pushwire-recovery.js. Works as a
 * <script> (global `pushwireRecovery`) and with require().
 */
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.pushwireRecovery = factory();
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  var RETRY_FIRST_MS = 250;
  var RETRY_MAX_MS = 5000;

  function track(socket) {
    var positions = new Map(); // channel -> last pos seen
    var wanted = new Map(); // channel -> options
    var socketId = null;

    // Runs before the application's own handlers of the event.
    socket.onAny(function (event, data, meta) {
      if (meta && typeof meta === "object" && typeof meta.pos === "string" && wanted.has(meta.channel)) {
        positions.set(meta.channel, meta.pos);
      }
    });

    function send(channel, attempt) {
      var options = wanted.get(channel);
      if (!options || socketId === null) return;
      var connection = socketId;
      var extra = options.auth ? Promise.resolve(options.auth(socketId)) : Promise.resolve({});
      extra.then(function (fields) {
        var payload = Object.assign({ channel: channel }, fields || {});
        var since = positions.get(channel);
        if (since) payload.since = since;
        socket.emit("subscribe", payload, function (ack) {
          var retry = ack && ack.ok === false && ack.error && ack.error.code === 4200;
          if (retry && socketId === connection && wanted.get(channel) === options) {
            var delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * Math.pow(2, attempt || 0));
            setTimeout(function () {
              // A reconnection in between has subscribed again by itself.
              if (socketId === connection) send(channel, (attempt || 0) + 1);
            }, delay);
            return;
          }
          if (options.onSubscribed) options.onSubscribed(ack);
        });
      });
    }

    socket.on("pushwire:connection_established", function (info) {
      socketId = info && info.socket_id;
      wanted.forEach(function (_, channel) { send(channel); });
    });
    // The server lost a channel's history while its own link to Redis was down:
    // events may have been missed; the subscription itself is intact.
    socket.on("pushwire:history_lost", function (notice) {
      var options = notice && wanted.get(notice.channel);
      if (options && options.onSubscribed) options.onSubscribed({ ok: true, recovered: false });
    });
    socket.on("disconnect", function (reason) {
      socketId = null;
      // The server disconnects a socket it cannot vouch for (its channel's
      // history was lost, or it stopped reading): reconnect and recover.
      if (reason === "io server disconnect") socket.connect();
    });

    return {
      /** Subscribes now (if connected) and again, with `since`, after every reconnection. */
      subscribe: function (channel, options) {
        wanted.set(channel, options || {});
        send(channel);
      },
      /** Stops re-subscribing `channel` and leaves it. */
      unsubscribe: function (channel) {
        wanted.delete(channel);
        positions.delete(channel);
        if (socket.connected) socket.emit("unsubscribe", { channel: channel });
      },
      /** The last position seen on `channel` (undefined before the first event). */
      position: function (channel) { return positions.get(channel); },
    };
  }

  function trackPusher(pusher, options) {
    var onLost = (options && options.onLost) || function () {};
    var positions = new Map(); // channel -> last pos seen
    var watched = null; // the transport whose frames are being read

    function read(message) {
      var frame;
      try {
        frame = JSON.parse(message.data);
      } catch (e) {
        return;
      }
      if (!frame || typeof frame.channel !== "string" || !pusher.channel(frame.channel)) return;
      if (typeof frame.pos === "string") positions.set(frame.channel, frame.pos);
      if (frame.event === "pushwire:history_lost") onLost(frame.channel);
      if (frame.event === "pusher_internal:subscription_succeeded") {
        var data = frame.data;
        try {
          data = typeof data === "string" ? JSON.parse(data) : data;
        } catch (e) {
          return;
        }
        if (data && data.recovered === false) onLost(frame.channel);
      }
    }

    // Each connection has a new transport: read it from its first frame on.
    function watch() {
      var connection = pusher.connection.connection;
      var transport = connection && connection.transport;
      if (!transport || transport === watched) return;
      watched = transport;
      transport.bind("message", read);
    }
    pusher.connection.bind("connected", watch);
    watch();

    var send = pusher.send_event.bind(pusher);
    pusher.send_event = function (name, data, channel) {
      if (name === "pusher:subscribe" && data && positions.has(data.channel)) {
        data = Object.assign({}, data, { since: positions.get(data.channel) });
      } else if (name === "pusher:unsubscribe" && data) {
        positions.delete(data.channel);
      }
      return send(name, data, channel);
    };

    return {
      /** The last position seen on `channel` (undefined before the first event). */
      position: function (channel) { return positions.get(channel); },
    };
  }

  return { track: track, trackPusher: trackPusher };
});
