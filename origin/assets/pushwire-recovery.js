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

  return { track: track };
});
