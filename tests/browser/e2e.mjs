// tests/browser/e2e.mjs: the browser end-to-end scenarios — Debian's Chromium, driven by
// playwright-core, against a running wsloop serving its demo page.
//
// usage: node tests/browser/e2e.mjs SCENARIO http://127.0.0.1:PORT
//   env WSLOOP_CHROMIUM    the browser (default /usr/bin/chromium)
//   env WSLOOP_SERVER_PID  the server's pid (scenario "shutdown" sends it SIGTERM)
//   env WSLOOP_SCREENSHOT  where scenario "screenshot" writes its PNG
//   env WSLOOP_TOKEN_SECRET the HMAC secret scenario "tokens" signs its tokens with (the
//                          server's --token-secret-file, cookie --token-cookie wsloop_token)
//   env WSLOOP_NODES       scenario "sse-nodes": JSON [[pid, port], ...] of the nodes behind
//                          the base URL (an nginx balancing them round robin)
//   env WSLOOP_EXPECT      scenario "client": the transport the client must settle on
//   env WSLOOP_DIRECT      scenario "client": the server itself (publishes go there)
// Prints "PASS SCENARIO ..." and exits 0, or prints "FAIL SCENARIO: why" and exits non-zero.
// tests/browser.rs starts one server per scenario and runs this once per scenario.
//
// Why playwright-core rather than a page that reports its own results to the server: the
// driver sees the browser from outside, so a page that hangs, throws or never loads fails
// with a bounded timeout and a reason instead of silence; it can type and click like a user,
// open two independent browser contexts for the chat room, take the screenshot, and close
// Chromium for certain at the end. A self-reporting page would need an extra results
// endpoint in the server under test, a second way to launch and kill Chromium, and could
// not tell "the check failed" from "the page never ran". playwright-core is pinned to 1.64.1,
// the release built for Chromium 156 (Debian's chromium here); it downloads no browser.
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import crypto from "node:crypto";

const [scenario, base] = process.argv.slice(2);
const CHROMIUM = process.env.WSLOOP_CHROMIUM || "/usr/bin/chromium";
// Bound on one wait (a page load, a message to arrive).
const WAIT_MS = 5000;
// Bound on a whole scenario, browser start and stop included; tests/browser.rs has its own.
const SCENARIO_MS = 45000;
// The flags this machine's Chromium needs (no sandbox as root; no calls to Google's hosts,
// which this network refuses). Playwright adds --headless and a fresh --user-data-dir.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// WebSocket readyState values (there is no WebSocket global in Node to read them from).
const WebSocket_CONNECTING = 0;
const WebSocket_OPEN = 1;
const WebSocket_CLOSING = 2;
const WebSocket_CLOSED = 3;

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

// `promise`, or a rejection naming `what` after `ms` (page.evaluate has no timeout of its own).
function bounded(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// What a page's `window.demo` holds now (for failure messages); the client is shown by its
// subscriptions' transports and states.
async function demoState(page) {
  try {
    return await bounded(
      page.evaluate(() => {
        const d = window.demo || {};
        const channels = {};
        for (const [k, v] of (d.client && d.client.channels) || []) channels[k] = `${v.transport} ${v.state}`;
        return JSON.stringify({ ...d, client: undefined, channels });
      }),
      "reading window.demo",
      2000,
    );
  } catch (e) {
    return `(unreadable: ${e.message})`;
  }
}

// Wait until `fn(arg)` is truthy in `page`, at most `ms`; the error says `what` and shows
// the page's state.
async function until(page, what, fn, arg, ms = WAIT_MS) {
  try {
    await page.waitForFunction(fn, arg, { timeout: ms, polling: 50 });
  } catch (e) {
    throw new Error(`${what} (waited ${ms} ms)\n  page ${page.url()}\n  window.demo = ${await demoState(page)}`);
  }
}

const consoleLog = [];

// Open the demo page at `base` + `query` in a new page of `context`.
async function openDemo(context, query, root = base) {
  const page = await context.newPage();
  const tag = `[${query}]`;
  page.on("console", (m) => consoleLog.push(`${tag} console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLog.push(`${tag} page error: ${e.message}`));
  page.on("response", (r) => r.status() >= 400 && consoleLog.push(`${tag} ${r.status()} ${r.request().method()} ${r.url()}`));
  const res = await page.goto(`${root}/${query}`, { timeout: WAIT_MS, waitUntil: "load" });
  assert.equal(res.status(), 200, `GET /${query}`);
  await until(page, "window.demo exists", () => window.demo && window.demo.client);
  return page;
}

// Wait until the page's three subscriptions (echo, chat, clock) are open over `kind`.
async function channelsOpen(page, kind) {
  await until(
    page,
    `every subscription is open over ${kind}`,
    (kind) => {
      const chans = [...window.demo.client.channels.values()];
      return chans.length === 3 && chans.every((c) => c.state === "open" && c.transport === kind);
    },
    kind,
  );
}

// POST /publish/{topic} straight to the server (not through the page).
async function publish(topic, body, root = base) {
  const r = await fetch(`${root}/publish/${topic}`, { method: "POST", body, signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(r.status, 202, `POST /publish/${topic}`);
}

// Type `text` into the form `formId` of `page` and click its Send button, as a user would.
async function typeAndSend(page, formId, text) {
  await page.fill(`#${formId} input`, text, { timeout: WAIT_MS });
  await page.click(`#${formId} button`, { timeout: WAIT_MS });
}

const chatTexts = (page) => page.evaluate(() => window.demo.chat.filter((m) => m.type === "message").map((m) => m.text));
const uniqueRoom = (what) => `${what}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

// A page at `base` whose browser client follows `topic`: window.__got ([data, position]),
// __opens, __closes ({code, reason}) and __transports (each distinct transport it used).
async function clientPage(browser, tag, topic) {
  const page = await (await browser.newContext()).newPage();
  page.on("console", (m) => consoleLog.push(`[${tag}] console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLog.push(`[${tag}] page error: ${e.message}`));
  const res = await page.goto(`${base}/healthz`, { timeout: WAIT_MS });
  assert.equal(res.status(), 200, "GET /healthz");
  await page.evaluate(async (topic) => {
    const { WsloopClient } = await import("/wsloop.js");
    const c = new WsloopClient("", { openTimeout: 2000, backoffInitial: 100, backoffMax: 1000 });
    Object.assign(window, { __got: [], __opens: 0, __closes: [], __transports: [], __client: c });
    c.on("state", (s) => {
      if (s.state !== "open") return;
      window.__opens++;
      if (!window.__transports.includes(s.transport)) window.__transports.push(s.transport);
    });
    c.on("closed", (e) => window.__closes.push({ code: e.code, reason: e.reason }));
    c.subscribe(topic, (data, meta) => window.__got.push([data, meta.position]));
  }, topic);
  await until(page, "the client's subscription opens", () => window.__opens >= 1);
  return page;
}

// Publish m1, m2, … to `topic` every 50 ms at `target()` until stopped, keeping what was
// acknowledged (202, with its position); a refusal (503, a node down) is counted and the same
// message tried again on the next turn.
function publishing(topic, target) {
  const out = { acked: [], refused: 0, running: true };
  const loop = (async () => {
    let n = 1;
    while (out.running) {
      try {
        const r = await fetch(`${target()}/publish/${topic}`, { method: "POST", body: `m${n}`, signal: AbortSignal.timeout(2000) });
        if (r.status === 202) out.acked.push([`m${n++}`, (await r.json()).position]);
        else out.refused++;
      } catch (_) {
        out.refused++;
      }
      await sleep(50);
    }
  })();
  out.stop = async () => {
    out.running = false;
    await loop;
  };
  return out;
}

// Wait until the page got as many messages as were acknowledged; check each arrived once, in
// order, under the position it was acknowledged with; the page's counters.
async function allArrived(page, acked) {
  await until(page, `all ${acked.length} acknowledged messages arrive`, (n) => window.__got.length >= n, acked.length, 15000);
  await sleep(300); // a repeat would arrive right behind
  const r = await page.evaluate(() => ({ got: window.__got, opens: window.__opens, closes: window.__closes, transports: window.__transports }));
  assert.deepEqual(r.got.map(([d]) => d), acked.map(([d]) => d), "every acknowledged message once, in order");
  assert.deepEqual(r.got.map(([, p]) => p), acked.map(([, p]) => p), "under the positions they were acknowledged with");
  const ps = r.got.map(([, p]) => BigInt(p));
  for (let i = 1; i < ps.length; i++) assert.equal(ps[i], ps[i - 1] + 1n, `consecutive positions at ${i}`);
  await page.evaluate(() => window.__client.close());
  return r;
}

// Which of `nodes` ([pid, port]) counts one open connection of `transport`.
async function holder(nodes, transport) {
  const re = new RegExp(`^wsloop_connections\\{transport="${transport}",state="open"\\} 1$`, "m");
  for (const [pid, port] of nodes) {
    try {
      if (re.test(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())) return pid;
    } catch (_) {
      // a node just killed
    }
  }
  return null;
}

// --- the SSE relay --------------------------------------------------------------------------

// A TCP relay on loopback between the browser and the server that the test can cut, so that
// EventSource loses its connection while the server (and the topic's history) lives on.
// While down it still accepts connections and reads their requests, but forwards nothing
// until `restore()`. It records every request head it relays (method, path, headers).
class Relay {
  constructor(port) {
    this.port = port;
    this.up = true;
    this.conns = new Set();
    this.heads = [];
  }

  async start() {
    this.server = net.createServer((c) => this.accept(c));
    await new Promise((res) => this.server.listen(0, "127.0.0.1", res));
    return `http://127.0.0.1:${this.server.address().port}`;
  }

  accept(client) {
    const conn = { client, upstream: null, pending: [], text: "", parsed: 0 };
    this.conns.add(conn);
    client.on("data", (d) => {
      this.sniff(conn, d);
      if (conn.upstream) conn.upstream.write(d);
      else conn.pending.push(d);
    });
    client.on("error", () => {});
    client.on("close", () => {
      if (conn.upstream) conn.upstream.destroy();
      this.conns.delete(conn);
    });
    if (this.up) this.connect(conn);
  }

  connect(conn) {
    const up = net.connect(this.port, "127.0.0.1");
    conn.upstream = up;
    for (const d of conn.pending) up.write(d);
    conn.pending = [];
    up.on("data", (d) => conn.client.write(d));
    up.on("end", () => conn.client.end());
    up.on("error", () => conn.client.destroy());
  }

  // Record the request heads in the client's bytes (bodies skipped by Content-Length).
  sniff(conn, d) {
    conn.text += d.toString("latin1");
    for (;;) {
      const end = conn.text.indexOf("\r\n\r\n", conn.parsed);
      if (end < 0) return;
      const lines = conn.text.slice(conn.parsed, end).split("\r\n");
      const [method, path] = lines[0].split(" ");
      const headers = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":");
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      this.heads.push({ method, path, headers, whileDown: !this.up });
      conn.parsed = end + 4 + Number(headers["content-length"] || 0);
    }
  }

  // Drop every relayed connection: the server side is closed, the browser gets a FIN.
  cut() {
    this.up = false;
    for (const c of this.conns) {
      if (c.upstream) c.upstream.destroy();
      c.client.end();
    }
  }

  // Forward again, first the connections that arrived while down.
  restore() {
    this.up = true;
    for (const c of this.conns) if (!c.upstream && !c.client.destroyed) this.connect(c);
  }

  close() {
    for (const c of this.conns) {
      if (c.upstream) c.upstream.destroy();
      c.client.destroy();
    }
    this.server.close();
  }
}

// --- scenarios ------------------------------------------------------------------------------

// An HS256 JWT signed with node:crypto (an implementation independent of the server's).
function hs256(claims, secret) {
  const b64 = (x) => Buffer.from(x).toString("base64url");
  const body = b64(JSON.stringify({ alg: "HS256", typ: "JWT" })) + "." + b64(JSON.stringify(claims));
  return body + "." + crypto.createHmac("sha256", secret).update(body).digest("base64url");
}

const scenarios = {
  // Access tokens from a browser, which cannot set headers on WebSocket or EventSource: the
  // token in the query and in a cookie opens both; without one, or with a forged one, neither
  // opens; the chat names the member by the token's sub.
  async tokens(browser) {
    const secret = process.env.WSLOOP_TOKEN_SECRET;
    assert.ok(secret, "WSLOOP_TOKEN_SECRET is set by tests/browser.rs");
    const exp = Math.floor(Date.now() / 1000) + 600;
    const good = hs256({ sub: "alice", exp, subscribe: ["tok.*", "chat.*"], publish: ["tok.*", "chat.*"] }, secret);
    const forged = hs256({ sub: "mallory", exp, subscribe: ["*"], publish: ["*"] }, secret + "x");
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on("console", (m) => consoleLog.push(`[tokens] console.${m.type()}: ${m.text()}`));
    const res = await page.goto(`${base}/healthz`, { timeout: WAIT_MS });
    assert.equal(res.status(), 200);
    const probe = ({ good, forged }) => {
      // Does a WebSocket to `path` open, and does it get back what it publishes?
      const ws = (path) =>
        new Promise((res) => {
          const w = new WebSocket(`ws://${location.host}${path}`);
          const t = setTimeout(() => res("timeout"), 4000);
          w.onopen = () => w.send("ping " + path);
          w.onmessage = (e) => {
            if (String(e.data).startsWith("ping ")) {
              clearTimeout(t);
              w.close(1000);
              res("echoed");
            }
          };
          w.onclose = (e) => {
            clearTimeout(t);
            res("closed " + e.code);
          };
        });
      // Does an EventSource on `path` open and receive a publish made with the good token?
      const sse = (path, topic) =>
        new Promise((res) => {
          const es = new EventSource(path);
          const t = setTimeout(() => (es.close(), res("timeout")), 4000);
          es.onopen = () =>
            fetch(`/publish/${topic}`, { method: "POST", body: "hello " + topic, headers: { Authorization: `Bearer ${good}` } });
          es.onmessage = (e) => {
            clearTimeout(t);
            es.close();
            res(e.data);
          };
          es.onerror = () => {
            if (es.readyState === EventSource.CLOSED) {
              clearTimeout(t);
              res("refused");
            }
          };
        });
      const chat = (path) =>
        new Promise((res) => {
          const w = new WebSocket(`ws://${location.host}${path}`);
          const t = setTimeout(() => res(null), 4000);
          w.onmessage = (e) => {
            clearTimeout(t);
            w.close(1000);
            res(JSON.parse(e.data));
          };
        });
      return (async () => {
        const out = {};
        out.wsNone = await ws("/topic/tok.a");
        out.wsForged = await ws(`/topic/tok.a?token=${forged}`);
        out.wsQuery = await ws(`/topic/tok.a?token=${good}`);
        out.sseNone = await sse("/sse/tok.b", "tok.b");
        out.sseQuery = await sse(`/sse/tok.c?token=${good}`, "tok.c");
        out.chat = await chat(`/chat/r1?token=${good}`);
        document.cookie = `wsloop_token=${forged}; path=/`;
        out.wsCookieForged = await ws("/topic/tok.d");
        document.cookie = `wsloop_token=${good}; path=/`;
        out.wsCookie = await ws("/topic/tok.d");
        out.sseCookie = await sse("/sse/tok.e", "tok.e");
        return out;
      })();
    };
    const r = await bounded(page.evaluate(probe, { good, forged }), "token probes", 40000);
    assert.equal(r.wsNone, "closed 1006", "no token: the upgrade is refused (401)");
    assert.equal(r.wsForged, "closed 1006", "a forged token is refused");
    assert.equal(r.wsQuery, "echoed", "?token= opens the WebSocket and may publish");
    assert.equal(r.sseNone, "refused", "EventSource without a token");
    assert.equal(r.sseQuery, "hello tok.c", "EventSource with ?token=");
    assert.equal(r.wsCookieForged, "closed 1006", "a forged cookie is refused");
    assert.equal(r.wsCookie, "echoed", "the cookie opens the WebSocket");
    assert.equal(r.sseCookie, "hello tok.e", "the cookie opens the EventSource");
    assert.ok(r.chat && r.chat.type === "join" && r.chat.name === "alice", `the chat names alice: ${JSON.stringify(r.chat)}`);
    return "query and cookie tokens open WebSocket and EventSource; none or forged: refused; chat names alice";
  },

  // WebSocket echo from the page: text (UTF-8) and binary with binaryType "arraybuffer", at
  // the sizes where the frame length encoding changes; then the demo's echo form.
  async echo(browser) {
    const page = await openDemo(await browser.newContext(), "?transport=websocket");
    const sizes = [0, 1, 125, 126, 65535, 65536, 300000];
    const r = await bounded(
      page.evaluate(async (sizes) => {
        const ws = new WebSocket(`ws://${location.host}/echo`);
        ws.binaryType = "arraybuffer";
        const inbox = [];
        let wake = () => {};
        ws.onmessage = (e) => {
          inbox.push(e.data);
          wake();
        };
        await new Promise((res, rej) => {
          ws.onopen = res;
          ws.onerror = () => rej(new Error("WebSocket error before open"));
        });
        const next = () =>
          inbox.length
            ? Promise.resolve(inbox.shift())
            : new Promise((res) => (wake = () => res(inbox.shift())));
        const out = { texts: [], binaries: [] };
        for (const t of ["hello", "héllo, wsloop ✓ 🚀", "x".repeat(70000)]) {
          ws.send(t);
          const back = await next();
          out.texts.push({ type: typeof back, same: back === t, len: back.length });
        }
        for (const n of sizes) {
          const sent = new Uint8Array(n);
          for (let i = 0; i < n; i++) sent[i] = (i * 31 + 7) & 255;
          ws.send(sent.buffer);
          const back = await next();
          const got = back instanceof ArrayBuffer ? new Uint8Array(back) : null;
          out.binaries.push({
            n,
            arrayBuffer: back instanceof ArrayBuffer,
            len: got ? got.length : -1,
            same: got !== null && got.length === n && got.every((b, i) => b === sent[i]),
          });
        }
        ws.close(1000);
        return out;
      }, sizes),
      "echo of text and binary messages",
      15000,
    );
    for (const t of r.texts) assert.deepEqual([t.type, t.same], ["string", true], `text echo ${JSON.stringify(t)}`);
    assert.equal(r.binaries.length, sizes.length);
    for (const b of r.binaries) assert.deepEqual(b, { n: b.n, arrayBuffer: true, len: b.n, same: true }, "binary echo");

    await channelsOpen(page, "websocket");
    await typeAndSend(page, "echo-form", "typed into the page");
    await until(page, "the typed echo comes back", () => window.demo.echo.includes("typed into the page"));
    const log = await page.textContent("#echo-log");
    assert.ok(log.includes("← typed into the page"), `echo log shows the answer: ${log}`);
    return `${r.texts.length} texts and ${sizes.length} binaries (0..300000 bytes) echoed`;
  },

  // readyState of a page's own WebSocket: CONNECTING at construction, OPEN in onopen,
  // CLOSING after close(), CLOSED in onclose with the code the server echoed.
  async readystate(browser) {
    const page = await openDemo(await browser.newContext(), "?transport=websocket");
    const r = await bounded(
      page.evaluate(async () => {
        const seen = [];
        const ws = new WebSocket(`ws://${location.host}/echo`);
        seen.push(["constructed", ws.readyState]);
        await new Promise((res, rej) => {
          ws.onopen = () => {
            seen.push(["open", ws.readyState]);
            res();
          };
          ws.onerror = () => rej(new Error("WebSocket error before open"));
        });
        const ev = await new Promise((res) => {
          ws.onclose = (e) => {
            seen.push(["close", ws.readyState]);
            res({ code: e.code, reason: e.reason, wasClean: e.wasClean });
          };
          ws.close(1000, "client done");
          seen.push(["close() called", ws.readyState]);
        });
        return { seen, ev };
      }),
      "a WebSocket opened and closed",
    );
    assert.deepEqual(r.seen, [
      ["constructed", WebSocket_CONNECTING],
      ["open", WebSocket_OPEN],
      ["close() called", WebSocket_CLOSING],
      ["close", WebSocket_CLOSED],
    ]);
    // The server echoes the status code of the client's close (RFC 6455 §5.5.1).
    assert.deepEqual(r.ev, { code: 1000, reason: "", wasClean: true }, "onclose");
    return `readyState ${r.seen.map((s) => s[1]).join(" → ")}, onclose ${JSON.stringify(r.ev)}`;
  },

  // Two users (two browser contexts) in one room: join notices, a message typed in one
  // appears in the other, and a leave notice when one goes.
  async chat(browser) {
    const room = uniqueRoom("chat");
    const alice = await openDemo(await browser.newContext(), `?transport=websocket&room=${room}`);
    await until(alice, "alice sees her own join", () => window.demo.chat.some((m) => m.type === "join"));
    const aliceId = await alice.evaluate(() => window.demo.chat.find((m) => m.type === "join").id);
    const bob = await openDemo(await browser.newContext(), `?transport=websocket&room=${room}`);
    await until(bob, "bob sees his own join", () => window.demo.chat.some((m) => m.type === "join"));
    const bobId = await bob.evaluate(() => window.demo.chat.find((m) => m.type === "join").id);
    assert.notEqual(aliceId, bobId, "two connections, two ids");
    await until(alice, "alice sees bob join", (id) => window.demo.chat.some((m) => m.type === "join" && m.id === id), bobId);
    const joins = await alice.evaluate(() => window.demo.chat.filter((m) => m.type === "join").map((m) => m.room));
    assert.deepEqual(joins, [room, room], "alice saw exactly two joins, both in the room");

    await typeAndSend(alice, "chat-form", "hello from alice");
    const fromAlice = { type: "message", from: aliceId, text: "hello from alice" };
    await until(bob, "bob receives alice's message", (m) => window.demo.chat.some((c) => c.type === m.type && c.from === m.from && c.text === m.text), fromAlice);
    await until(alice, "alice receives her own copy", (m) => window.demo.chat.some((c) => c.from === m.from && c.text === m.text), fromAlice);
    const bobLog = await bob.textContent("#chat-log");
    assert.ok(bobLog.includes(`${aliceId}: hello from alice`), `bob's chat log shows it: ${bobLog}`);
    assert.equal(await alice.inputValue("#chat-input"), "", "the input is cleared after Send");

    await typeAndSend(bob, "chat-form", "hi alice");
    await until(alice, "alice receives bob's answer", (id) => window.demo.chat.some((c) => c.from === id && c.text === "hi alice"), bobId);
    await until(bob, "bob receives his own copy", (id) => window.demo.chat.some((c) => c.from === id && c.text === "hi alice"), bobId);
    assert.deepEqual(await chatTexts(alice), ["hello from alice", "hi alice"], "alice's messages, in order");
    assert.deepEqual(await chatTexts(bob), ["hello from alice", "hi alice"], "bob's messages, in order");

    await bob.close();
    await until(alice, "alice sees bob leave", (id) => window.demo.chat.some((m) => m.type === "leave" && m.id === id), bobId);
    return `ids ${aliceId} and ${bobId}: joins, messages both ways, leave`;
  },

  // The clock ticks at least twice within 3 s, about a second apart, and the page shows it.
  async clock(browser) {
    const page = await openDemo(await browser.newContext(), "?transport=websocket");
    await channelsOpen(page, "websocket");
    const before = await page.evaluate(() => window.demo.ticks.length);
    await until(page, "two more ticks within 3 s", (n) => window.demo.ticks.length >= n + 2, before, 3000);
    const ticks = await page.evaluate(() => window.demo.ticks);
    for (let i = 1; i < ticks.length; i++) {
      const dt = ticks[i].unix_ms - ticks[i - 1].unix_ms;
      assert.ok(dt >= 500 && dt <= 1500, `ticks about a second apart: ${dt} ms`);
    }
    const last = ticks[ticks.length - 1];
    assert.match(last.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.ok(Math.abs(Date.parse(last.time) - last.unix_ms) < 1000, "time and unix_ms agree");
    await until(page, "the clock face shows a tick", () => /^\d\d:\d\d:\d\d UTC$/.test(document.getElementById("clock").textContent));
    return `${ticks.length} ticks`;
  },

  // /bye closes with 1000 "goodbye" on the first message: the browser's onclose sees the
  // server's code and reason, and a clean close.
  async bye(browser) {
    const page = await openDemo(await browser.newContext(), "?transport=websocket");
    const ev = await bounded(
      page.evaluate(async () => {
        const ws = new WebSocket(`ws://${location.host}/bye`);
        await new Promise((res, rej) => {
          ws.onopen = res;
          ws.onerror = () => rej(new Error("WebSocket error before open"));
        });
        return new Promise((res) => {
          ws.onclose = (e) => res({ code: e.code, reason: e.reason, wasClean: e.wasClean, readyState: ws.readyState });
          ws.send("hi");
        });
      }),
      "the close after a message to /bye",
    );
    assert.deepEqual(ev, { code: 1000, reason: "goodbye", wasClean: true, readyState: 3 }, "onclose");
    return `onclose ${JSON.stringify(ev)}`;
  },

  // SIGTERM to the server while the demo page is connected: each of its three WebSockets
  // sees 1001 with a retry-after-ms hint, after a clean closing handshake; the page's state
  // went connecting → open → reconnecting.
  async shutdown(browser) {
    const pid = Number(process.env.WSLOOP_SERVER_PID);
    assert.ok(pid > 0, "WSLOOP_SERVER_PID is the server's pid");
    const context = await browser.newContext();
    // Record every value the page's state pill takes, from before the page's script runs.
    await context.addInitScript(() => {
      window.__ready = [];
      new MutationObserver((records) => {
        for (const r of records)
          if (r.target.id === "ready") for (const n of r.addedNodes) window.__ready.push(n.textContent);
      }).observe(document, { childList: true, subtree: true });
    });
    const page = await openDemo(context, "?transport=websocket");
    await channelsOpen(page, "websocket");
    process.kill(pid, "SIGTERM");
    await until(page, "three closes", () => window.demo.closes.length >= 3);
    const r = await page.evaluate(() => ({
      closes: window.demo.closes,
      states: Object.values(window.demo.states),
      ready: window.__ready.filter((t) => t !== "–"),
      pill: document.getElementById("closecode").textContent,
    }));
    assert.deepEqual(r.closes.map((c) => c.code), [1001, 1001, 1001], `onclose codes: ${JSON.stringify(r.closes)}`);
    assert.ok(r.closes.every((c) => /retry-after-ms=\d+/.test(c.reason)), `each says when to come back: ${JSON.stringify(r.closes)}`);
    assert.ok(r.closes.every((c) => c.wasClean), "closing handshakes completed (wasClean)");
    assert.deepEqual(r.states, ["reconnecting", "reconnecting", "reconnecting"], "every subscription waits to reconnect");
    assert.match(r.pill, /^1001\b/, "the page shows the close code");
    const transitions = r.ready.filter((t, i) => i === 0 || t !== r.ready[i - 1]);
    assert.deepEqual(transitions, ["connecting", "open", "reconnecting"], `state pill history ${JSON.stringify(r.ready)}`);
    return `closes ${JSON.stringify(r.closes.map((c) => [c.code, c.reason]))}; state ${transitions.join(" → ")}`;
  },

  // permessage-deflate offered by Chromium and accepted by the server (tests/browser.rs
  // skips this until the extension lands).
  async deflate(browser) {
    const page = await openDemo(await browser.newContext(), "?transport=websocket");
    const r = await bounded(
      page.evaluate(async () => {
        const ws = new WebSocket(`ws://${location.host}/echo`);
        await new Promise((res, rej) => {
          ws.onopen = res;
          ws.onerror = () => rej(new Error("WebSocket error before open"));
        });
        const text = "compress me ".repeat(5000);
        const back = await new Promise((res) => {
          ws.onmessage = (e) => res(e.data);
          ws.send(text);
        });
        ws.close();
        return { extensions: ws.extensions, same: back === text };
      }),
      "a deflated echo",
    );
    assert.match(r.extensions, /^permessage-deflate/, "the server accepted Chromium's permessage-deflate offer");
    assert.ok(r.same, "a compressed message echoes intact");
    return `extensions "${r.extensions}"`;
  },

  // The SSE transport: EventSource channels, the clock, echo through POST + SSE, and chat
  // with a WebSocket member of the same room, both ways.
  async sse(browser) {
    const room = uniqueRoom("sse");
    const page = await openDemo(await browser.newContext(), `?transport=sse&room=${room}`);
    await channelsOpen(page, "sse");
    assert.equal(await page.evaluate(() => window.demo.transport), "sse");
    const ticks = await page.evaluate(() => window.demo.ticks.length);
    await until(page, "two ticks over SSE within 3 s", (n) => window.demo.ticks.length >= n + 2, ticks, 3000);

    await typeAndSend(page, "echo-form", "echo over sse");
    await until(page, "the echo comes back over SSE", () => window.demo.echo.includes("echo over sse"));

    const ws = await openDemo(await browser.newContext(), `?transport=websocket&room=${room}`);
    await until(ws, "the WebSocket member joins", () => window.demo.chat.some((m) => m.type === "join"));
    const wsId = await ws.evaluate(() => window.demo.chat.find((m) => m.type === "join").id);
    await until(page, "the SSE page sees the join", (id) => window.demo.chat.some((m) => m.type === "join" && m.id === id), wsId);
    await typeAndSend(ws, "chat-form", "to the sse page");
    await until(page, "the SSE page receives it", (id) => window.demo.chat.some((m) => m.from === id && m.text === "to the sse page"), wsId);
    await typeAndSend(page, "chat-form", "from the sse page");
    await until(ws, "the WebSocket page receives the SSE page's message", () => window.demo.chat.some((m) => m.text === "from the sse page"));
    const positions = await page.evaluate((t) => window.demo.positions[t], `chat.${room}`);
    assert.ok(positions.length > 0 && positions.every((p) => /^\d+$/.test(p)), `events carry numeric ids: ${positions}`);
    return `transport sse: ticks, echo, chat both ways with a WebSocket member`;
  },

  // EventSource reconnects with Last-Event-ID after its connection drops, and the server
  // replays exactly what was published meanwhile. The page goes through a relay that the
  // test cuts; the server and the topic's history stay up. Needs the server's --sse-retry
  // short (tests/browser.rs passes 250ms).
  async "sse-resume"(browser) {
    const room = uniqueRoom("resume");
    const topic = `chat.${room}`;
    const relay = new Relay(Number(new URL(base).port));
    const via = await relay.start();
    try {
      const page = await openDemo(await browser.newContext(), `?transport=sse&room=${room}`, via);
      await channelsOpen(page, "sse");
      const msg = (i) => JSON.stringify({ type: "message", from: "test", text: `m${i}` });
      for (const i of [1, 2, 3]) await publish(topic, msg(i));
      await until(page, "m1..m3 arrive", (n) => window.demo.chat.filter((m) => m.type === "message").length >= n, 3);

      relay.cut();
      await until(page, "EventSource notices the drop", (t) => window.demo.states[t] === "reconnecting", topic);
      for (const i of [4, 5, 6]) await publish(topic, msg(i));
      const deadline = Date.now() + WAIT_MS;
      const reconnect = () => relay.heads.find((h) => h.whileDown && h.path.startsWith(`/sse/${topic}?`));
      while (!reconnect() && Date.now() < deadline) await sleep(50);
      assert.ok(reconnect(), `EventSource tried to reconnect to /sse/${topic} within ${WAIT_MS} ms`);
      assert.deepEqual(await chatTexts(page), ["m1", "m2", "m3"], "nothing arrives while the relay is down");

      relay.restore();
      await until(page, "m4..m6 arrive after the reconnection", (n) => window.demo.chat.filter((m) => m.type === "message").length >= n, 6);
      await sleep(500); // a duplicate would arrive right behind
      const texts = await chatTexts(page);
      // The page's own join is on the topic too: the positions of the six messages.
      const ids = await page.evaluate((t) => window.demo.positions[t].filter((_, i) => window.demo.chat[i].type === "message").map(Number), topic);
      assert.deepEqual(texts, ["m1", "m2", "m3", "m4", "m5", "m6"], "each message exactly once, in order");
      assert.equal(ids.length, 6, "six events");
      for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1], `event ids increase: ${ids}`);
      assert.equal(reconnect().headers["last-event-id"], String(ids[2]), "the reconnection carries Last-Event-ID of m3");
      assert.equal(await page.evaluate((t) => window.demo.states[t], topic), "open", "open again");
      return `reconnected with Last-Event-ID ${ids[2]}; received ${texts.join(",")} (ids ${ids.join(",")})`;
    } finally {
      relay.close();
    }
  },

  // Chromium's own EventSource behind a round-robin nginx over three nodes on one Redis (no
  // sticky sessions): the node holding the stream is killed (SIGKILL), twice; each time
  // EventSource reconnects through nginx, lands on another node with its Last-Event-ID, and
  // gets exactly what was published meanwhile, then live — every message once, in order.
  async "sse-nodes"(browser) {
    const nodes = JSON.parse(process.env.WSLOOP_NODES || "[]");
    assert.equal(nodes.length, 3, "WSLOOP_NODES names three nodes");
    const topic = `nodes-${process.pid}`;
    const page = await (await browser.newContext()).newPage();
    page.on("console", (m) => consoleLog.push(`[sse-nodes] console.${m.type()}: ${m.text()}`));
    const res = await page.goto(`${base}/healthz`, { timeout: WAIT_MS });
    assert.equal(res.status(), 200, "GET /healthz through nginx");
    await page.evaluate((topic) => {
      window.__got = [];
      window.__opens = 0;
      const es = new EventSource(`/sse/${topic}`);
      es.onopen = () => window.__opens++;
      es.onmessage = (e) => window.__got.push([e.lastEventId, e.data]);
      window.__es = es;
    }, topic);
    await until(page, "the EventSource opens", () => window.__es.readyState === 1);
    const alive = new Set(nodes.map(([pid]) => pid));
    const live = () => nodes.filter(([pid]) => alive.has(pid));
    // Publishing goes to the live nodes in turn, straight to them.
    let turn = 0;
    const post = async (text) => {
      const [, port] = live()[turn++ % live().length];
      await publish(topic, text, `http://127.0.0.1:${port}`);
    };
    // Which node holds the stream: the one counting an open SSE connection.
    const holder = async () => {
      for (const [pid, port] of live()) {
        const m = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        if (/^wsloop_connections\{transport="sse",state="open"\} 1$/m.test(m)) return pid;
      }
      return null;
    };
    const sent = [];
    let n = 0;
    const round = async (count) => {
      for (let i = 0; i < count; i++) {
        const text = `m${++n}`;
        await post(text);
        sent.push(text);
      }
      await until(page, `${sent.length} messages arrive`, (k) => window.__got.length >= k, sent.length);
    };
    await round(3);
    const killed = [];
    for (const _ of [1, 2]) {
      const deadline = Date.now() + WAIT_MS;
      let pid = null;
      while (!(pid = await holder()) && Date.now() < deadline) await sleep(50);
      assert.ok(pid, "one live node holds the stream");
      process.kill(pid, "SIGKILL");
      alive.delete(pid);
      killed.push(pid);
      await until(page, "EventSource notices the node is gone", () => window.__es.readyState !== 1);
      await round(3); // published while it reconnects, and after
    }
    await round(2); // live on the last node
    await sleep(300); // a duplicate would arrive right behind
    const got = await page.evaluate(() => window.__got);
    assert.deepEqual(got.map(([, d]) => d), sent, "every message once, in order");
    const ids = got.map(([id]) => Number(id));
    for (let i = 1; i < ids.length; i++) assert.equal(ids[i], ids[i - 1] + 1, `consecutive positions: ${ids}`);
    const opens = await page.evaluate(() => window.__opens);
    assert.equal(opens, 3, "opened once per node");
    return `killed ${killed.join(", ")}; ${sent.length} messages once each over 3 nodes, ids ${ids[0]}..${ids[ids.length - 1]}`;
  },

  // The browser client (GET /wsloop.js, clients/js) on its own page: it settles on the
  // transport the way to the server allows (direct: WebSocket; through an nginx that drops
  // Upgrade: SSE; through one that also buffers responses: polling) and receives every
  // message once, in order, with its position; its own publish comes back too.
  async client(browser) {
    const expect = process.env.WSLOOP_EXPECT;
    const direct = process.env.WSLOOP_DIRECT || base;
    assert.ok(["websocket", "sse", "poll"].includes(expect), "WSLOOP_EXPECT names a transport");
    const topic = `client-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const page = await (await browser.newContext()).newPage();
    page.on("console", (m) => consoleLog.push(`[client] console.${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => consoleLog.push(`[client] page error: ${e.message}`));
    const res = await page.goto(`${base}/healthz`, { timeout: WAIT_MS });
    assert.equal(res.status(), 200, "GET /healthz");
    await page.evaluate(async (topic) => {
      const { WsloopClient } = await import("/wsloop.js");
      const c = new WsloopClient("", { openTimeout: 1500, backoffInitial: 100, backoffMax: 1000 });
      window.__got = [];
      window.__transports = [];
      c.on("transport", (t) => window.__transports.push(t.transport));
      c.subscribe(topic, (data, meta) => window.__got.push([data, meta.position, meta.transport]));
      window.__client = c;
    }, topic);
    try {
      await until(page, `the client settles on ${expect}`, (want) => {
        const ch = [...window.__client.channels.values()][0];
        return ch && ch.state === "open" && ch.transport === want;
      }, expect, 20000);
    } catch (e) {
      const seen = await page.evaluate(() => {
        const ch = [...window.__client.channels.values()][0];
        return { state: ch.state, transport: ch.transport, failures: ch.failures, fell: window.__transports };
      });
      throw new Error(`${e.message}; the client: ${JSON.stringify(seen)}`);
    }
    const sent = [];
    for (let i = 1; i <= 5; i++) {
      sent.push(`m${i}`);
      await publish(topic, `m${i}`, direct);
    }
    const own = await page.evaluate((topic) => window.__client.publish(topic, "from the page"), topic);
    assert.match(String(own.position), /^\d+$/, "the client's publish is answered with its position");
    sent.push("from the page");
    await until(page, "every message arrives", (n) => window.__got.length >= n, sent.length);
    await sleep(300); // a repeat would arrive right behind
    const got = await page.evaluate(() => window.__got);
    assert.deepEqual(got.map(([d]) => d), sent, "each once, in order");
    const positions = got.map(([, p]) => BigInt(p));
    for (let i = 1; i < positions.length; i++) assert.ok(positions[i] > positions[i - 1], `positions increase: ${positions}`);
    assert.equal(String(positions.at(-1)), String(own.position), "its own publish under the position it was given");
    assert.ok(got.every(([, , t]) => t === expect), `all over ${expect}: ${JSON.stringify(got)}`);
    const fell = await page.evaluate(() => window.__transports);
    await page.evaluate(() => window.__client.close());
    return `settled on ${expect} (fell back through ${JSON.stringify(fell)}); ${sent.length} messages once each, in order`;
  },

  // The client across a graceful restart of the node it is connected to, with publishing going
  // on through another node of the same Redis the whole time: the page is closed with 1001 and
  // a hint, comes back to the replacement on the same port (tests/browser.rs starts it once the
  // old one has exited), still over WebSocket (a refused connection while the node is down is
  // not a reason to fall back), and receives every acknowledged message once, in order.
  async "client-restart"(browser) {
    const pid = Number(process.env.WSLOOP_SERVER_PID);
    const other = process.env.WSLOOP_PUBLISH;
    assert.ok(pid > 0 && other, "WSLOOP_SERVER_PID and WSLOOP_PUBLISH are set by tests/browser.rs");
    const topic = `restart-${process.pid}`;
    const page = await clientPage(browser, "client-restart", topic);
    const stream = publishing(topic, () => other);
    try {
      await until(page, "five messages arrive", () => window.__got.length >= 5);
      process.kill(pid, "SIGTERM");
      await until(page, "closed by the shutdown", () => window.__closes.length >= 1);
      await until(page, "back on the restarted node", () => window.__opens >= 2, null, 20000);
      const n = stream.acked.length;
      while (stream.acked.length < n + 10) await sleep(50); // and live after it
    } finally {
      await stream.stop();
    }
    const r = await allArrived(page, stream.acked);
    assert.equal(r.closes[0].code, 1001, `closed with 1001: ${JSON.stringify(r.closes)}`);
    assert.match(r.closes[0].reason, /retry-after-ms=\d+/, "with a hint");
    assert.deepEqual(r.transports, ["websocket"], "WebSocket before and after the restart");
    return `${stream.acked.length} acknowledged (${stream.refused} refused), each once in order over ${r.opens} connections; close ${r.closes[0].code} "${r.closes[0].reason}"`;
  },

  // The client behind a round-robin nginx over three nodes on one Redis (no sticky sessions):
  // the node holding its WebSocket is killed (SIGKILL), twice; each time it reconnects through
  // nginx, lands on another node, resumes from its position and gets exactly what was
  // published meanwhile — every message once, in order, positions consecutive.
  async "client-nodes"(browser) {
    const nodes = JSON.parse(process.env.WSLOOP_NODES || "[]");
    assert.equal(nodes.length, 3, "WSLOOP_NODES names three nodes");
    const topic = `cnodes-${process.pid}`;
    const page = await clientPage(browser, "client-nodes", topic);
    const alive = new Set(nodes.map(([pid]) => pid));
    const live = () => nodes.filter(([pid]) => alive.has(pid));
    let turn = 0;
    const stream = publishing(topic, () => {
      const l = live();
      return `http://127.0.0.1:${l[turn++ % l.length][1]}`;
    });
    const killed = [];
    try {
      await until(page, "three messages arrive", () => window.__got.length >= 3);
      for (const round of [1, 2]) {
        const deadline = Date.now() + WAIT_MS;
        let pid = null;
        while (!(pid = await holder(live(), "websocket")) && Date.now() < deadline) await sleep(50);
        assert.ok(pid, "one live node holds the WebSocket");
        process.kill(pid, "SIGKILL");
        alive.delete(pid);
        killed.push(pid);
        await until(page, `reconnected after kill ${round}`, (n) => window.__opens >= n, round + 1, 15000);
        const n = stream.acked.length;
        while (stream.acked.length < n + 5) await sleep(50);
      }
    } finally {
      await stream.stop();
    }
    const r = await allArrived(page, stream.acked);
    assert.deepEqual(r.transports, ["websocket"], "WebSocket all along");
    assert.equal(r.opens, 3, "one connection per node");
    return `killed ${killed.join(", ")}; ${stream.acked.length} acknowledged, each once in order over 3 nodes`;
  },

  // The client with tokens that live about three seconds, two of them on one page: one
  // replaces its token before it expires, in-band on the open WebSocket (one connection all
  // along); the other does not (`refresh: false`), so the server closes it at `exp` (3000) and
  // it reconnects with a fresh token, resuming from its position. Both get m1..m6 once each.
  async "client-token"(browser) {
    const secret = process.env.WSLOOP_TOKEN_SECRET;
    assert.ok(secret, "WSLOOP_TOKEN_SECRET is set by tests/browser.rs");
    const topic = `ct.${process.pid}`;
    const page = await (await browser.newContext()).newPage();
    page.on("console", (m) => consoleLog.push(`[client-token] console.${m.type()}: ${m.text()}`));
    const issued = { refreshing: 0, expiring: 0 };
    await page.exposeFunction("freshToken", (who) => {
      issued[who]++;
      const exp = Math.floor(Date.now() / 1000) + 3;
      return hs256({ sub: who, exp, subscribe: ["ct.*"], publish: ["ct.*"] }, secret);
    });
    const res = await page.goto(`${base}/healthz`, { timeout: WAIT_MS });
    assert.equal(res.status(), 200, "GET /healthz");
    await page.evaluate(async (topic) => {
      const { WsloopClient } = await import("/wsloop.js");
      window.__c = {};
      for (const who of ["refreshing", "expiring"]) {
        const c = new WsloopClient("", { token: () => window.freshToken(who), refresh: who === "refreshing", backoffInitial: 100, backoffMax: 500 });
        const me = (window.__c[who] = { client: c, got: [], opens: 0, closes: [] });
        c.on("state", (s) => s.state === "open" && me.opens++);
        c.on("closed", (e) => me.closes.push(e.code));
        c.subscribe(topic, (data, meta) => me.got.push([data, meta.position]));
      }
    }, topic);
    await until(page, "both subscriptions open", () => window.__c.refreshing.opens >= 1 && window.__c.expiring.opens >= 1);
    // Published from here with a token of its own, so the pages' tokens count only their
    // connections and refreshes.
    const publisher = hs256({ sub: "test", exp: Math.floor(Date.now() / 1000) + 600, publish: ["ct.*"] }, secret);
    const send = async (text) => {
      const r = await fetch(`${base}/publish/${topic}`, { method: "POST", body: text, headers: { Authorization: `Bearer ${publisher}` } });
      assert.equal(r.status, 202, `POST /publish/${topic}`);
    };
    for (const i of [1, 2, 3]) await send(`m${i}`);
    await until(page, "m1..m3 arrive at both", () => window.__c.refreshing.got.length >= 3 && window.__c.expiring.got.length >= 3);
    // Past the first tokens' exp: one reconnected, the other refreshed twice in place.
    await until(page, "the expiring client reconnected with a fresh token", () => window.__c.expiring.opens >= 2, null, 8000);
    const deadline = Date.now() + 8000;
    while (issued.refreshing < 3 && Date.now() < deadline) await sleep(100);
    for (const i of [4, 5, 6]) await send(`m${i}`);
    await until(page, "m4..m6 arrive at both", () => window.__c.refreshing.got.length >= 6 && window.__c.expiring.got.length >= 6);
    await sleep(300);
    const r = await page.evaluate(() => {
      const out = {};
      for (const [who, c] of Object.entries(window.__c)) out[who] = { got: c.got, opens: c.opens, closes: c.closes };
      return out;
    });
    for (const who of ["refreshing", "expiring"]) {
      assert.deepEqual(r[who].got.map(([d]) => d), ["m1", "m2", "m3", "m4", "m5", "m6"], `${who}: each once, in order`);
    }
    assert.ok(issued.refreshing >= 3, `the refreshing client's first token and two refreshes: ${issued.refreshing}`);
    assert.equal(r.refreshing.opens, 1, "refreshed in-band: one connection all along");
    assert.deepEqual(r.refreshing.closes, [], "never closed");
    assert.ok(r.expiring.closes.includes(3000), `closed at exp with 3000: ${r.expiring.closes}`);
    await page.evaluate(() => Object.values(window.__c).forEach((c) => c.client.close()));
    return `in-band: 1 connection, ${issued.refreshing} tokens; without: ${r.expiring.opens} connections (closes ${r.expiring.closes}), ${issued.expiring} tokens; m1..m6 once each at both`;
  },

  // The long-polling transport: chat with a WebSocket member of the same room both ways,
  // echo through POST + poll, and the clock.
  async poll(browser) {
    const room = uniqueRoom("poll");
    const page = await openDemo(await browser.newContext(), `?transport=poll&room=${room}`);
    assert.equal(await page.evaluate(() => window.demo.transport), "poll");
    // Open means the first poll told where each topic is: nothing published from here on is
    // missed.
    await channelsOpen(page, "poll");

    const ws = await openDemo(await browser.newContext(), `?transport=websocket&room=${room}`);
    await until(ws, "the WebSocket member joins", () => window.demo.chat.some((m) => m.type === "join"));
    const wsId = await ws.evaluate(() => window.demo.chat.find((m) => m.type === "join").id);
    await until(page, "the polling page sees the join", (id) => window.demo.chat.some((m) => m.type === "join" && m.id === id), wsId);
    await typeAndSend(ws, "chat-form", "to the polling page");
    await until(page, "the polling page receives it", (id) => window.demo.chat.some((m) => m.from === id && m.text === "to the polling page"), wsId);
    await typeAndSend(page, "chat-form", "from the polling page");
    await until(ws, "the WebSocket page receives the polling page's message", () => window.demo.chat.some((m) => m.text === "from the polling page"));
    const texts = await chatTexts(page);
    assert.deepEqual(texts, ["to the polling page", "from the polling page"], "each message once, in order");

    await typeAndSend(page, "echo-form", "echo over polling");
    await until(page, "the echo comes back over polling", () => window.demo.echo.includes("echo over polling"));
    const ticks = await page.evaluate(() => window.demo.ticks.length);
    await until(page, "two ticks over polling within 3.5 s", (n) => window.demo.ticks.length >= n + 2, ticks, 3500);
    return "transport poll: chat both ways with a WebSocket member, echo, ticks";
  },

  // A 1200×800 screenshot of the demo page with a little traffic, for docs/demo.png.
  async screenshot(browser) {
    const path = process.env.WSLOOP_SCREENSHOT;
    assert.ok(path, "WSLOOP_SCREENSHOT names the output file");
    const room = "lobby";
    const opts = { viewport: { width: 1200, height: 800 } };
    const page = await openDemo(await browser.newContext(opts), `?transport=websocket&room=${room}`);
    await channelsOpen(page, "websocket");
    const other = await openDemo(await browser.newContext(opts), `?transport=websocket&room=${room}`);
    await channelsOpen(other, "websocket");
    await typeAndSend(page, "echo-form", "hello, wsloop");
    await typeAndSend(page, "echo-form", "one reactor, many sockets");
    await typeAndSend(other, "chat-form", "hi! anyone here?");
    await typeAndSend(page, "chat-form", "yes, over WebSocket");
    await until(page, "the traffic shows", () => window.demo.echo.length >= 2 && window.demo.chat.filter((m) => m.type === "message").length >= 2);
    await until(page, "three ticks", () => window.demo.ticks.length >= 3, null, 4000);
    await page.screenshot({ path, timeout: WAIT_MS });
    return `wrote ${path} (${fs.statSync(path).size} bytes)`;
  },
};

// --- main -----------------------------------------------------------------------------------

async function main() {
  if (!scenarios[scenario] || !/^http:\/\/127\.0\.0\.1:\d+$/.test(base || "")) {
    console.error(`usage: node e2e.mjs (${Object.keys(scenarios).join("|")}) http://127.0.0.1:PORT`);
    return 2;
  }
  if (!fs.existsSync(CHROMIUM)) {
    console.error(`FAIL ${scenario}: no Chromium at ${CHROMIUM}; scripts/test installs it (Debian package chromium)`);
    return 1;
  }
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (e) {
    console.error(`FAIL ${scenario}: playwright-core is missing (${e.message}); scripts/test installs it (npm ci --prefix tests/browser)`);
    return 1;
  }
  const started = Date.now();
  let browser = null;
  const watchdog = setTimeout(() => {
    console.error(`FAIL ${scenario}: not finished after ${SCENARIO_MS} ms`);
    // Exiting makes playwright kill the Chromium it launched.
    process.exit(3);
  }, SCENARIO_MS);
  let code = 1;
  try {
    browser = await bounded(
      chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 15000 }),
      `launching ${CHROMIUM}`,
      20000,
    );
    const detail = await scenarios[scenario](browser);
    console.log(`PASS ${scenario} in ${Date.now() - started} ms (Chromium ${browser.version()}): ${detail}`);
    code = 0;
  } catch (e) {
    console.error(`FAIL ${scenario} after ${Date.now() - started} ms: ${e.stack || e}`);
    if (consoleLog.length) console.error(`browser console:\n  ${consoleLog.join("\n  ")}`);
  } finally {
    if (browser) await bounded(browser.close(), "closing Chromium").catch((e) => console.error(e.message));
    clearTimeout(watchdog);
  }
  return code;
}

process.exit(await main());
