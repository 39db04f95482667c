// clients/js/test/client.test.mjs: the client's logic under Node's own test runner
// (`node --test clients/js/test/`), against a fake server: fake WebSocket, EventSource and
// fetch that the tests script, and timers the tests fire by hand — backoff and its jitter
// bounds, the server's hints obeyed, fallback decisions, exact resume, gaps surfaced.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  WsloopClient,
  backoffDelay,
  hintFromReason,
  hintFromRetryAfter,
  nextTransport,
  refreshDelay,
  tokenExpiry,
  TRANSPORTS,
} from "../wsloop.js";

/** A scripted environment: every socket the client opens, every timer it sets. */
function fakeEnv() {
  const env = { sockets: [], sources: [], polls: [], timers: [], random: () => 0.5 };
  env.setTimeout = (fn, ms) => {
    const t = { fn, ms, done: false };
    env.timers.push(t);
    return t;
  };
  env.clearTimeout = (t) => t && (t.done = true);
  // Fire the pending timers (those set meanwhile wait for the next call); their delays.
  env.tick = () => {
    const due = env.timers.filter((t) => !t.done);
    env.timers = [];
    for (const t of due) {
      t.done = true;
      t.fn();
    }
    return due.map((t) => t.ms);
  };
  env.WebSocket = class {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.protocol = "";
      this.closedByClient = false;
      this.readyState = 0;
      this.sent = [];
      env.sockets.push(this);
    }
    open(protocol = "wsloop.positions") {
      this.protocol = protocol;
      this.readyState = 1;
      this.onopen && this.onopen();
    }
    send(data) {
      this.sent.push(data);
    }
    message(obj) {
      this.onmessage && this.onmessage({ data: JSON.stringify(obj) });
    }
    serverClose(code, reason = "") {
      this.onclose && this.onclose({ code, reason });
    }
    close() {
      this.closedByClient = true;
      this.readyState = 3;
      this.onclose && this.onclose({ code: 1005, reason: "" });
    }
  };
  env.EventSource = class {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.handlers = {};
      env.sources.push(this);
    }
    addEventListener(kind, fn) {
      this.handlers[kind] = fn;
    }
    open() {
      this.readyState = 1;
      this.onopen && this.onopen();
    }
    event(data, id, kind = "message") {
      const e = { data, lastEventId: id };
      if (kind === "message") this.onmessage && this.onmessage(e);
      else this.handlers[kind] && this.handlers[kind](e);
    }
    fail() {
      this.readyState = 2;
      this.onerror && this.onerror();
    }
    close() {
      this.readyState = 2;
    }
  };
  // fetch: each poll waits for the test to answer it.
  env.fetch = (url, init) =>
    new Promise((resolve) => {
      env.polls.push({ url, init, answer: resolve });
    });
  return env;
}

const response = (status, body, headers = {}) => ({
  status,
  headers: { get: (k) => headers[k] ?? null },
  json: async () => JSON.parse(body),
  text: async () => body,
});
const settle = () => new Promise((r) => setImmediate(r));

// Answer the client's GET /healthz probes (asked after a transport never opened).
async function healthz(env, status = 200) {
  await settle();
  for (const p of env.polls.filter((p) => p.url.endsWith("/healthz"))) {
    env.polls.splice(env.polls.indexOf(p), 1);
    p.answer(response(status, "ok"));
  }
  await settle();
}

// An unsigned JWT-shaped token expiring `secs` from now (the client only reads its `exp`).
let minted = 0;
const jwt = (secs) => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256" })}.${b64({ exp: Math.floor(Date.now() / 1000) + secs, n: ++minted })}.sig`;
};

test("full-jitter backoff stays within its doubling cap and reaches zero", () => {
  const opts = { backoffInitial: 500, backoffMax: 30000 };
  for (let a = 0; a < 40; a++) {
    const cap = Math.min(30000, 500 * 2 ** a);
    assert.ok(backoffDelay(a, opts, () => 0.999999) < cap, `attempt ${a}`);
    assert.equal(backoffDelay(a, opts, () => 0), 0);
  }
  // Spread over the whole range, not bunched at its end.
  let seed = 7;
  const rnd = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
  const waits = Array.from({ length: 10000 }, () => backoffDelay(10, opts, rnd));
  for (let slice = 0; slice < 10; slice++) {
    const n = waits.filter((w) => Math.floor(w / 3000) === slice).length;
    assert.ok(n > 800 && n < 1200, `slice ${slice}: ${n}`);
  }
});

test("the server's hints are read from close reasons and Retry-After", () => {
  assert.equal(hintFromReason("server shutting down; retry-after-ms=3316"), 3316);
  assert.equal(hintFromReason("over the handshake budget; retry-after-ms=850"), 850);
  assert.equal(hintFromReason("goodbye"), null);
  assert.equal(hintFromReason(undefined), null);
  assert.equal(hintFromRetryAfter("2"), 2000);
  assert.equal(hintFromRetryAfter(null), null);
  const now = Date.parse("2026-12-07T10:00:00Z");
  assert.equal(hintFromRetryAfter("Mon, 07 Dec 2026 10:00:05 GMT", now), 5000);
});

test("fallback moves on after two failures in a row, never after a working connection", () => {
  assert.equal(nextTransport(TRANSPORTS, "websocket", false, 1), "websocket");
  assert.equal(nextTransport(TRANSPORTS, "websocket", false, 2), "sse");
  assert.equal(nextTransport(TRANSPORTS, "sse", false, 2), "poll");
  assert.equal(nextTransport(TRANSPORTS, "poll", false, 9), "poll");
  assert.equal(nextTransport(TRANSPORTS, "websocket", true, 5), "websocket");
});

test("a WebSocket that never opens falls back to SSE, which resumes from the last position", async () => {
  const env = fakeEnv();
  const client = new WsloopClient("http://h", { env });
  const got = [];
  const switched = [];
  client.on("transport", (t) => switched.push(t.transport));
  client.subscribe("news", (data, meta) => got.push([data, meta.position, meta.transport]));
  await settle();
  // A proxy refuses the upgrade: the WebSocket closes without opening, twice.
  for (let i = 0; i < 2; i++) {
    const ws = env.sockets.at(-1);
    assert.match(ws.url, /^ws:\/\/h\/topic\/news/);
    assert.deepEqual(ws.protocols, ["wsloop.positions"]);
    ws.serverClose(1006);
    await healthz(env); // the server is up: the transport is what fails
    env.tick();
    await settle();
  }
  assert.deepEqual(switched, ["sse"]);
  const es = env.sources.at(-1);
  assert.equal(es.url, "http://h/sse/news?hello=1");
  es.open();
  es.event("{}", "", "hello");
  es.event("m1", "41");
  es.event("m2", "42");
  es.event("m2", "42"); // a repeat is not delivered twice
  assert.deepEqual(got, [
    ["m1", "41", "sse"],
    ["m2", "42", "sse"],
  ]);
  assert.equal(client.transport, "sse");
  // The stream fails for good (an HTTP error): the client reconnects, resuming after 42.
  es.fail();
  env.tick();
  await settle();
  assert.equal(env.sources.at(-1).url, "http://h/sse/news?lastEventId=42&hello=1");
  client.close();
});

test("an SSE stream a buffering proxy holds back (no hello in time) falls back to polling", async () => {
  const env = fakeEnv();
  const client = new WsloopClient("http://h", { env, transports: ["sse", "poll"] });
  const switched = [];
  client.on("transport", (t) => switched.push(t.transport));
  client.subscribe("t", () => {});
  await settle();
  for (let i = 0; i < 2; i++) {
    env.sources.at(-1).open(); // headers through, the body held back: no hello
    env.tick(); // the open deadline
    await healthz(env);
    env.tick(); // the backoff
    await settle();
  }
  assert.deepEqual(switched, ["poll"]);
  assert.equal(env.polls.at(-1).url, "http://h/poll/t?wait=0");
  client.close();
});

test("a WebSocket whose subprotocol a proxy stripped is not trusted", async () => {
  const env = fakeEnv();
  const client = new WsloopClient("http://h", { env });
  client.subscribe("t", () => {});
  await settle();
  env.sockets.at(-1).open(""); // opened, but no positions
  assert.ok(env.sockets.at(-1).closedByClient, "closed by the client");
  client.close();
});

test("over WebSocket: positions, a gap surfaced, the shutdown hint obeyed, resume with since", async () => {
  const env = fakeEnv();
  const client = new WsloopClient("https://h:8443", { env, token: () => "tok" });
  const got = [];
  const gaps = [];
  client.on("gap", (g) => gaps.push(g));
  client.subscribe("news", (data, meta) => got.push([data, meta.position]));
  await settle();
  const ws = env.sockets.at(-1);
  assert.equal(ws.url, "wss://h:8443/topic/news?token=tok");
  ws.open();
  ws.message({ position: "7", text: "a" });
  ws.message({ type: "gap", topic: "news", after: "7", resumed_at: "12" });
  ws.message({ position: "12", text: "b" });
  assert.deepEqual(got, [
    ["a", "7"],
    ["b", "12"],
  ]);
  assert.deepEqual(gaps, [{ topic: "news", after: "7", resumedAt: "12" }]);
  // The server shuts down and says when to come back: exactly then, not the backoff.
  ws.serverClose(1001, "server shutting down; retry-after-ms=3316");
  assert.deepEqual(env.tick().filter((ms) => ms !== 5000), [3316]);
  await settle();
  assert.equal(env.sockets.at(-1).url, "wss://h:8443/topic/news?since=12&token=tok");
  client.close();
});

test("over long polling: batches in order, resume by after=, a gap flag surfaced", async () => {
  const env = fakeEnv();
  const client = new WsloopClient("http://h", { env, transports: ["poll"] });
  const got = [];
  const gaps = [];
  client.on("gap", (g) => gaps.push(g));
  client.subscribe("q", (data, meta) => got.push([data, meta.position]));
  await settle();
  let poll = env.polls.shift();
  assert.equal(poll.url, "http://h/poll/q?wait=0", "the first poll answered at once");
  poll.answer(response(200, '{"topic":"q","last_seq":3,"gap":false,"messages":[{"seq":3,"text":"x"}]}'));
  await settle();
  await settle();
  poll = env.polls.shift();
  assert.equal(poll.url, "http://h/poll/q?after=3");
  poll.answer(response(200, '{"topic":"q","last_seq":9,"gap":true,"messages":[{"seq":9,"text":"y"}]}'));
  await settle();
  await settle();
  assert.deepEqual(got, [
    ["x", "3"],
    ["y", "9"],
  ]);
  assert.deepEqual(gaps, [{ topic: "q", after: "3", resumedAt: "9" }]);
  // A 503 with Retry-After: the client waits that long.
  poll = env.polls.shift();
  poll.answer(response(503, "", { "Retry-After": "2" }));
  await settle();
  await settle();
  assert.ok(env.timers.some((t) => !t.done && t.ms === 2000), "waits the 2 s asked for");
  client.close();
});

test("publish resolves with the position, and rejects with the 503's hint", async () => {
  const env = fakeEnv();
  const client = new WsloopClient("http://h", { env });
  const p = client.publish("news", "hello");
  await settle();
  const req = env.polls.shift();
  assert.equal(req.url, "http://h/publish/news");
  assert.equal(req.init.method, "POST");
  req.answer(response(202, '{"topic":"news","position":"55"}'));
  assert.deepEqual(await p, { topic: "news", position: "55" });
  const q = client.publish("news", "again");
  await settle();
  env.polls.shift().answer(response(503, "", { "Retry-After": "1" }));
  await assert.rejects(q, (e) => e.status === 503 && e.retryAfter === 1000);
});

test("a token's expiry is read from the JWT, and replaced a quarter of its life early (at most refreshBefore)", () => {
  const t = jwt(100);
  const exp = tokenExpiry(t);
  assert.ok(Math.abs(exp - (Date.now() + 100000)) < 1500, `exp ${exp}`);
  assert.equal(tokenExpiry("opaque-api-token"), null);
  assert.equal(tokenExpiry("a.%%%.c"), null);
  assert.equal(refreshDelay(null, 0, 30000), null);
  assert.equal(refreshDelay(8000, 0, 30000), 6000, "short-lived: with a quarter left");
  assert.equal(refreshDelay(3600000, 0, 30000), 3570000, "long-lived: refreshBefore ahead");
  assert.equal(refreshDelay(1000, 5000, 30000), 0, "already expired: at once");
});

test("over WebSocket an expiring token is refreshed in-band, before it expires, on the same connection", async () => {
  const env = fakeEnv();
  const client = new WsloopClient("http://h", { env, token: () => jwt(8) });
  const got = [];
  client.subscribe("news", (data, meta) => got.push([data, meta.position]));
  await settle();
  const ws = env.sockets.at(-1);
  assert.deepEqual(ws.protocols, ["wsloop.positions.auth", "wsloop.positions"]);
  ws.open("wsloop.positions.auth");
  const refresh = env.timers.find((t) => !t.done && t.ms !== 5000);
  assert.ok(refresh && refresh.ms > 5000 && refresh.ms <= 6000, `refresh timer ${refresh && refresh.ms}`);
  env.tick();
  await settle();
  assert.equal(ws.sent.length, 1);
  const m = JSON.parse(ws.sent[0]);
  assert.equal(m.type, "refresh");
  assert.notEqual(m.token, new URL(ws.url).searchParams.get("token"), "a fresh token");
  // The server's answer is not a message; the next refresh is due again.
  ws.message({ type: "refreshed", exp: Math.floor(Date.now() / 1000) + 8 });
  ws.message({ position: "3", text: "a" });
  assert.deepEqual(got, [["a", "3"]]);
  assert.equal(env.sockets.length, 1, "no reconnection");
  assert.ok(env.timers.some((t) => !t.done && t.ms > 5000 && t.ms <= 6000), "the next refresh is scheduled");
  client.close();
  // Without an expiring token (or with refresh off) only the positions protocol is offered.
  const plain = new WsloopClient("http://h", { env, token: "opaque" });
  plain.subscribe("news", () => {});
  await settle();
  assert.deepEqual(env.sockets.at(-1).protocols, ["wsloop.positions"]);
  plain.close();
});

test("over SSE an expiring token is replaced by a resuming reconnection before it expires", async () => {
  const env = fakeEnv();
  const client = new WsloopClient("http://h", { env, transports: ["sse"], token: () => jwt(8) });
  const got = [];
  client.subscribe("s", (data, meta) => got.push([data, meta.position]));
  await settle();
  const es = env.sources.at(-1);
  es.open();
  es.event("", "", "hello");
  es.event("x", "41");
  assert.ok(env.timers.some((t) => !t.done && t.ms > 5000 && t.ms <= 6000), "replacement scheduled");
  env.tick(); // the replacement: closes, and reconnects at once (hint 0)
  assert.equal(es.readyState, 2, "the old stream is closed");
  env.tick();
  await settle();
  const next = new URL(env.sources.at(-1).url);
  assert.equal(env.sources.length, 2);
  assert.equal(next.searchParams.get("lastEventId"), "41", "resumes after the last position");
  assert.notEqual(next.searchParams.get("token"), new URL(es.url).searchParams.get("token"));
  client.close();
});

test("a server that is down (restarting) does not make the client fall back", async () => {
  const env = fakeEnv();
  const client = new WsloopClient("http://h", { env });
  const switched = [];
  client.on("transport", (t) => switched.push(t.transport));
  client.subscribe("news", () => {});
  await settle();
  for (let i = 0; i < 4; i++) {
    env.sockets.at(-1).serverClose(1006); // connection refused
    const probe = env.polls.find((p) => p.url === "http://h/healthz");
    assert.ok(probe, "the client asks /healthz");
    env.polls.splice(env.polls.indexOf(probe), 1);
    probe.answer(Promise.reject(new TypeError("Failed to fetch")));
    await settle();
    await settle();
    env.tick();
    await settle();
  }
  assert.deepEqual(switched, [], "still WebSocket after four refused connections");
  assert.equal(env.sockets.length, 5);
  client.close();
});
