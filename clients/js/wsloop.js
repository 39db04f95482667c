// clients/js/wsloop.js: the browser client of wsloop — one subscription per topic over
// WebSocket (subprotocol wsloop.positions), Server-Sent Events or long polling, falling back
// in that order when a transport fails where it runs, resuming every reconnection from the
// last position it delivered (on whichever transport and node it lands), surfacing gaps, and
// reconnecting with full-jitter backoff that obeys the server's hints (retry-after-ms= in a
// close reason, Retry-After on a 503). No dependencies; an ES module. docs/client.md is the
// guide; docs/protocol.md the wire it speaks.

/** The transports, best first. */
export const TRANSPORTS = ["websocket", "sse", "poll"];

// The WebSocket subprotocols of /topic (docs/protocol.md): positions, and positions with
// in-band token refresh.
const POSITIONS = "wsloop.positions";
const POSITIONS_REFRESH = "wsloop.positions.auth";

const DEFAULTS = {
  transports: TRANSPORTS,
  // How long a transport may take to show it works (a WebSocket to open, an EventSource to
  // open) before the next one is tried.
  openTimeout: 5000,
  // Backoff between reconnections: full jitter over [0, min(max, initial * 2^attempt)).
  backoffInitial: 500,
  backoffMax: 30000,
  // On a fallen-back transport, how long before the better ones are tried again.
  upgradeAfter: 60000,
  // A token (string) or a function returning one (or a promise of one), asked again at
  // every connection so a refreshed token is used; sent as ?token= (browsers cannot set
  // headers on WebSocket or EventSource).
  token: null,
  // With an expiring token (a JWT's `exp`), replace it before it expires without losing
  // anything: in-band on a WebSocket (subprotocol wsloop.positions.auth), by a resuming
  // reconnection on SSE; long polls ask for a token at every request anyway. The refresh
  // happens when min(refreshBefore, a quarter of the token's lifetime) is left.
  refresh: true,
  refreshBefore: 30000,
};

/** Full-jitter exponential backoff: a wait in [0, min(max, initial * 2^attempt)). */
export function backoffDelay(attempt, { backoffInitial, backoffMax }, random = Math.random) {
  const cap = Math.min(backoffMax, backoffInitial * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

/** The wait a close reason asks for (`…; retry-after-ms=N`), or null. */
export function hintFromReason(reason) {
  const m = /retry-after-ms=(\d+)/.exec(reason || "");
  return m ? Number(m[1]) : null;
}

/** The wait (ms) a 503's Retry-After asks for (seconds, or an HTTP date), or null. */
export function hintFromRetryAfter(value, now = Date.now()) {
  if (value == null || value === "") return null;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/** A JWT's `exp` in ms since the epoch, or null (not a JWT, no `exp`). */
export function tokenExpiry(token) {
  const part = typeof token === "string" ? token.split(".")[1] : null;
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const json = JSON.parse(globalThis.atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)));
    return typeof json.exp === "number" ? json.exp * 1000 : null;
  } catch (_) {
    return null;
  }
}

/** How long from `now` until a token expiring at `expMs` should be replaced: when
 * min(refreshBefore, a quarter of what is left) remains; null without an expiry. */
export function refreshDelay(expMs, now, refreshBefore) {
  if (expMs === null) return null;
  const left = expMs - now;
  return Math.max(0, Math.floor(left - Math.min(refreshBefore, left / 4)));
}

/**
 * What to do after a connection ended: `opened` whether it ever worked, `failures` how many
 * times in a row this transport failed before working. Returns the transport to use next.
 */
export function nextTransport(transports, current, opened, failures) {
  const i = transports.indexOf(current);
  if (opened || i === transports.length - 1) return current;
  // Never opened: the second failure in a row (the first may be a network blip) moves on.
  return failures >= 2 ? transports[i + 1] : current;
}

export class WsloopClient {
  /**
   * @param {string} baseUrl  the server, e.g. "https://example.com" (or "" for this page's)
   * @param {object} options  see DEFAULTS; `env` replaces WebSocket, EventSource, fetch,
   *                          setTimeout, clearTimeout and random (tests)
   */
  constructor(baseUrl = "", options = {}) {
    this.options = { ...DEFAULTS, ...options };
    const g = globalThis;
    this.env = {
      WebSocket: g.WebSocket,
      EventSource: g.EventSource,
      fetch: g.fetch && g.fetch.bind(g),
      setTimeout: g.setTimeout.bind(g),
      clearTimeout: g.clearTimeout.bind(g),
      random: Math.random,
      ...(options.env || {}),
    };
    const loc = g.location;
    this.base = (baseUrl || (loc ? loc.origin : "")).replace(/\/$/, "");
    this.channels = new Map();
    this.listeners = { state: [], gap: [], transport: [], closed: [], error: [] };
    this.closed = false;
    // What worked in this session (sessionStorage when there is one): start there.
    this.preferred = this.options.transports[0];
    try {
      const saved = g.sessionStorage && g.sessionStorage.getItem("wsloop.transport");
      if (saved && this.options.transports.includes(saved)) this.preferred = saved;
    } catch (_) {
      // storage disabled: remember in memory only
    }
  }

  /** The transport the most recent subscription uses ("websocket", "sse" or "poll"). */
  get transport() {
    let t = null;
    for (const ch of this.channels.values()) t = ch.transport;
    return t;
  }

  /** Listen for "state" ({topic, state, transport}), "gap" ({topic, after, resumedAt}),
   * "transport" ({topic, transport}), "closed" ({topic, code, reason, wasClean}: a WebSocket's close)
   * and "error" ({topic, error}). */
  on(event, fn) {
    (this.listeners[event] || (this.listeners[event] = [])).push(fn);
    return () => (this.listeners[event] = this.listeners[event].filter((f) => f !== fn));
  }

  emit(event, detail) {
    for (const fn of this.listeners[event] || []) fn(detail);
  }

  /**
   * Subscribe to `topic`: `onMessage(data, meta)` gets each message once, in order, with
   * meta {topic, position, transport}. `options.since` resumes after a position. Returns a
   * function that ends the subscription.
   */
  subscribe(topic, onMessage, { since = null } = {}) {
    if (this.channels.has(topic)) throw new Error(`already subscribed to ${topic}`);
    const ch = new Channel(this, topic, onMessage, since);
    this.channels.set(topic, ch);
    ch.connect();
    return () => {
      ch.stop();
      this.channels.delete(topic);
    };
  }

  /** Publish `data` (a string) to `topic` over POST /publish: resolves to {topic, position}
   * once the server (and its broker) has it; rejects with the status otherwise. */
  async publish(topic, data) {
    const headers = {};
    const token = await this.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = await this.env.fetch(`${this.base}/publish/${encodeURIComponent(topic)}`, {
      method: "POST",
      body: data,
      headers,
    });
    if (r.status !== 202) {
      const err = new Error(`publish to ${topic}: HTTP ${r.status}`);
      err.status = r.status;
      err.retryAfter = hintFromRetryAfter(r.headers && r.headers.get && r.headers.get("Retry-After"));
      throw err;
    }
    const text = await r.text();
    try {
      return JSON.parse(text);
    } catch (_) {
      return { topic, position: null };
    }
  }

  /** End every subscription. */
  close() {
    this.closed = true;
    for (const ch of this.channels.values()) ch.stop();
    this.channels.clear();
  }

  /** Whether the server answers GET /healthz with 200 within openTimeout. */
  async serverUp() {
    const { env, options } = this;
    let timer = null;
    const late = new Promise((res) => (timer = env.setTimeout(() => res(false), options.openTimeout)));
    const probe = env
      .fetch(`${this.base}/healthz`, { cache: "no-store" })
      .then((r) => r.status === 200)
      .catch(() => false);
    const up = await Promise.race([probe, late]);
    env.clearTimeout(timer);
    return up;
  }

  async token() {
    const t = this.options.token;
    return typeof t === "function" ? await t() : t;
  }

  remember(transport) {
    this.preferred = transport;
    try {
      globalThis.sessionStorage && globalThis.sessionStorage.setItem("wsloop.transport", transport);
    } catch (_) {
      // storage disabled
    }
  }
}

/** One topic's subscription: its transport, its position, its reconnection state. */
class Channel {
  constructor(client, topic, onMessage, since) {
    this.client = client;
    this.topic = topic;
    this.onMessage = onMessage;
    this.position = since;
    this.transport = client.preferred;
    this.attempt = 0; // reconnections since the last that worked
    this.failures = 0; // failures in a row of this transport before it worked
    this.stopped = false;
    this.conn = null;
    this.timer = null;
    this.refreshTimer = null;
    this.fellBackAt = null;
  }

  setState(state) {
    this.state = state;
    this.client.emit("state", { topic: this.topic, state, transport: this.transport });
  }

  url(path, params) {
    const q = Object.entries(params)
      .filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
      .join("&");
    return `${this.client.base}${path}${q ? "?" + q : ""}`;
  }

  async connect() {
    if (this.stopped) return;
    const { options } = this.client;
    // Back on a better transport once the fallback has lasted long enough.
    const best = options.transports[0];
    if (this.transport !== best && this.fellBackAt !== null && Date.now() - this.fellBackAt > options.upgradeAfter) {
      this.transport = best;
      this.failures = 0;
      this.fellBackAt = null;
    }
    this.setState("connecting");
    const token = await this.client.token();
    if (this.stopped) return;
    const run = { websocket: this.viaWebSocket, sse: this.viaSse, poll: this.viaPoll }[this.transport];
    run.call(this, token);
  }

  /** A message (or a batch's entry) at `position`: delivered once, in order. */
  deliver(data, position) {
    if (position !== null && this.position !== null && BigInt(position) <= BigInt(this.position)) return;
    if (position !== null) this.position = String(position);
    this.onMessage(data, { topic: this.topic, position: this.position, transport: this.transport });
  }

  gap(after, resumedAt) {
    this.client.emit("gap", { topic: this.topic, after: String(after), resumedAt: String(resumedAt) });
  }

  opened() {
    if (this.state === "open") return;
    this.attempt = 0;
    this.failures = 0;
    this.client.remember(this.transport);
    this.setState("open");
  }

  /** The connection ended: `opened` whether it worked; `hint` a wait the server asked for. */
  ended(opened, hint = null) {
    if (this.stopped) return;
    this.conn = null;
    this.unschedule();
    this.setState("reconnecting");
    const { transports } = this.client.options;
    if (opened || this.transport === transports[transports.length - 1]) return this.retry(false, hint);
    // It never worked: either the way to the server blocks this transport, or the server
    // is down (restarting, unreachable) — which says nothing about the transport and must
    // not make the client fall back. A plain GET /healthz tells the two apart.
    this.client.serverUp().then((up) => !this.stopped && this.retry(up, hint));
  }

  /** Reconnect after the wait; `failed` counts this as a failure of the transport. */
  retry(failed, hint) {
    if (failed) this.failures += 1;
    const next = nextTransport(this.client.options.transports, this.transport, !failed, this.failures);
    if (next !== this.transport) {
      this.transport = next;
      this.failures = 0;
      this.fellBackAt = Date.now();
      this.client.emit("transport", { topic: this.topic, transport: next });
    }
    const { env, options } = this.client;
    const wait = hint !== null ? hint : backoffDelay(this.attempt, options, env.random);
    this.attempt += 1;
    this.timer = env.setTimeout(() => this.connect(), wait);
  }

  stop() {
    this.stopped = true;
    if (this.timer !== null) this.client.env.clearTimeout(this.timer);
    this.unschedule();
    if (this.conn) this.conn.close();
    this.conn = null;
  }

  /** Call `replace` when `token` (if it expires) should be replaced. */
  schedule(token, replace) {
    const { env, options } = this.client;
    this.unschedule();
    if (!options.refresh) return;
    const wait = refreshDelay(tokenExpiry(token), Date.now(), options.refreshBefore);
    if (wait !== null) this.refreshTimer = env.setTimeout(replace, wait);
  }

  unschedule() {
    if (this.refreshTimer !== null) this.client.env.clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
  }

  viaWebSocket(token) {
    const { env, options } = this.client;
    const ws_url = this.url(`/topic/${encodeURIComponent(this.topic)}`, { since: this.position, token }).replace(/^http/, "ws");
    // With an expiring token, offer the variant that refreshes it in-band first.
    const refreshing = options.refresh && tokenExpiry(token) !== null;
    const protocols = refreshing ? [POSITIONS_REFRESH, POSITIONS] : [POSITIONS];
    const ws = new env.WebSocket(ws_url, protocols);
    let opened = false;
    let done = false;
    const deadline = env.setTimeout(() => {
      if (!opened) ws.close();
    }, options.openTimeout);
    const finish = (hint) => {
      if (done) return;
      done = true;
      env.clearTimeout(deadline);
      this.ended(opened, hint);
    };
    ws.onopen = () => {
      // A proxy that strips the subprotocol passes no positions: not a usable WebSocket.
      if (ws.protocol !== POSITIONS && ws.protocol !== POSITIONS_REFRESH) return ws.close();
      opened = true;
      this.opened();
      if (ws.protocol === POSITIONS_REFRESH) this.schedule(token, refresh);
    };
    // Ask for a fresh token and hand it over on the open connection; the server answers
    // {"type":"refreshed"} (or closes 3000, and the reconnection asks again).
    const refresh = async () => {
      const fresh = await this.client.token();
      if (done || ws.readyState !== 1) return;
      ws.send(JSON.stringify({ type: "refresh", token: fresh }));
      this.schedule(fresh, refresh);
    };
    ws.onmessage = (e) => {
      let m;
      try {
        m = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      if (m.type === "gap") return this.gap(m.after, m.resumed_at);
      if (m.position === undefined) return; // {"type":"refreshed"} and any other notice
      this.deliver(m.text !== undefined ? m.text : m.binary, m.position);
    };
    ws.onclose = (e) => {
      if (!done) this.client.emit("closed", { topic: this.topic, code: e.code, reason: e.reason, wasClean: e.wasClean });
      finish(hintFromReason(e.reason));
    };
    this.conn = { close: () => ((done = true), env.clearTimeout(deadline), ws.close()) };
  }

  viaSse(token) {
    const { env, options } = this.client;
    // hello=1: the server's first event, which a proxy that buffers responses holds back —
    // so an EventSource that opens but hears nothing in time is not trusted.
    const path = `/sse/${encodeURIComponent(this.topic)}`;
    const es = new env.EventSource(this.url(path, { lastEventId: this.position, token, hello: 1 }));
    let opened = false;
    let done = false;
    const deadline = env.setTimeout(() => {
      if (!opened) finish();
    }, options.openTimeout);
    const finish = (hint = null) => {
      if (done) return;
      done = true;
      env.clearTimeout(deadline);
      es.close();
      this.ended(opened, hint);
    };
    es.addEventListener("hello", () => {
      opened = true;
      this.opened();
      // An EventSource cannot be handed a new token: before this one expires, reconnect
      // with a fresh one, resuming after the last position (nothing lost, nothing twice).
      this.schedule(token, () => finish(0));
    });
    es.onmessage = (e) => this.deliver(e.data, e.lastEventId || null);
    es.addEventListener("gap", (e) => {
      let m = {};
      try {
        m = JSON.parse(e.data);
      } catch (_) {
        // the notice is advisory
      }
      this.gap(m.after, m.resumed_at);
    });
    // EventSource reconnects by itself (with Last-Event-ID) after a dropped stream; it
    // gives up (CLOSED) on an HTTP error, and then this client takes over.
    es.onerror = () => {
      if (es.readyState === 2) finish();
      else if (opened) this.setState("reconnecting");
    };
    this.conn = { close: () => ((done = true), env.clearTimeout(deadline), es.close()) };
  }

  viaPoll(token) {
    const { env } = this.client;
    let done = false;
    const loop = async () => {
      let opened = false;
      for (;;) {
        if (done || this.stopped) return;
        // Every request asks for the token afresh, so one refreshed meanwhile is used.
        const current = opened ? await this.client.token() : token;
        const headers = current ? { Authorization: `Bearer ${current}` } : {};
        let r;
        // The first request is answered at once (wait=0): it shows the way works and where
        // the topic is; the next ones are held until there is something (long polls).
        const wait = opened ? null : 0;
        try {
          const path = `/poll/${encodeURIComponent(this.topic)}`;
          r = await env.fetch(this.url(path, { after: this.position, wait }), { headers });
        } catch (_) {
          return this.ended(opened);
        }
        if (done) return;
        if (r.status === 204) continue;
        if (r.status !== 200) return this.ended(opened, hintFromRetryAfter(r.headers && r.headers.get && r.headers.get("Retry-After")));
        if (!opened) {
          opened = true;
          this.opened();
        }
        const batch = await r.json();
        if (batch.gap) this.gap(this.position, batch.messages.length ? batch.messages[0].seq : batch.last_seq + 1);
        for (const m of batch.messages) this.deliver(m.text !== undefined ? m.text : m.binary, m.seq);
        // A batch with nothing after our position still tells where the topic is.
        if (this.position === null) this.position = String(batch.last_seq);
      }
    };
    loop();
    this.conn = { close: () => (done = true) };
  }
}
