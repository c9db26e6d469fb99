// Drives the npm `@upstash/redis` client, at its defaults (base64 response
// encoding, auto-pipelining), against a REST endpoint given as argv[2] with the
// token in argv[3]. Prints one JSON report of what each call returned or threw.
"use strict";
const { Redis } = require("@upstash/redis");

const [url, token] = process.argv.slice(2);
// The bridge publishes only to pushwire's pub/sub channels.
const channel = "pushwire:v2:{1:upstash-ch}:ch";

async function attempt(fn) {
  try {
    return { ok: await fn() };
  } catch (e) {
    return { error: String(e && e.message || e) };
  }
}

(async () => {
  const redis = new Redis({ url, token });
  const out = {};
  out.ping = await attempt(() => redis.ping());
  out.publish = await attempt(() => redis.publish(channel, "héllo {\"x\":1}"));
  // Issued together, so the client auto-pipelines them into one /pipeline request.
  out.pipelined = await attempt(() => Promise.all([redis.publish(channel, "second"), redis.ping()]));
  out.multi = await attempt(() => redis.multi().publish(channel, "third").ping().exec());
  out.not_allowed = await attempt(() => redis.set("k", "v"));
  out.unauthorized = await attempt(() => new Redis({ url, token: token + "x", retry: false }).ping());
  process.stdout.write(JSON.stringify(out) + "\n");
})();
