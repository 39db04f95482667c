// web/demo.js: the demo page's client. Every panel reads a topic and writes to one; a
// "channel" hides whether that happens over WebSocket, Server-Sent Events (+ POST /publish)
// or long polling (+ POST /publish). `window.demo` exposes the state for the browser tests.
"use strict";

const params = new URLSearchParams(location.search);
const room = params.get("room") || "lobby";
const me = "web-" + Math.random().toString(36).slice(2, 8);
const demo = (window.demo = { transport: null, readyState: null, closes: [], echo: [], chat: [], ticks: [] });

const $ = (id) => document.getElementById(id);
function log(id, text, cls) {
  const div = document.createElement("div");
  div.textContent = text;
  if (cls) div.className = cls;
  $(id).appendChild(div);
  $(id).scrollTop = $(id).scrollHeight;
}
function status(transport, ready) {
  if (transport) $("inuse").textContent = demo.transport = transport;
  if (ready !== undefined) $("ready").textContent = demo.readyState = ready;
}
function closed(code, reason) {
  demo.closes.push({ code, reason });
  $("closecode").textContent = code + (reason ? " " + reason : "");
}
const wsUrl = (path) => (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
const publish = (topic, text) => fetch("/publish/" + topic, { method: "POST", body: text });

// A WebSocket channel: `path` is the endpoint; messages arrive as text.
function wsChannel(path, onText, onFail) {
  const ws = new WebSocket(wsUrl(path));
  let opened = false;
  status("websocket", "CONNECTING (0)");
  ws.onopen = () => { opened = true; status("websocket", "OPEN (1)"); };
  ws.onmessage = (e) => onText(typeof e.data === "string" ? e.data : "[binary]");
  ws.onclose = (e) => {
    status(null, "CLOSED (3)");
    closed(e.code, e.reason);
    if (!opened && onFail) onFail();
  };
  return { send: (t) => ws.send(t), ws };
}

// An SSE channel on `topic`; sending goes through POST /publish/{topic}.
function sseChannel(topic, onText, onFail) {
  const es = new EventSource("/sse/" + topic);
  let opened = false;
  status("sse", "CONNECTING (0)");
  es.onopen = () => { opened = true; status("sse", "OPEN (1)"); };
  es.onmessage = (e) => { demo.lastEventId = e.lastEventId; onText(e.data); };
  es.onerror = () => {
    status(null, ["CONNECTING (0)", "OPEN (1)", "CLOSED (2)"][es.readyState]);
    if (!opened && onFail && es.readyState === EventSource.CLOSED) onFail();
  };
  return { send: (t) => publish(topic, t), es };
}

// A long-polling channel on `topic`: each answer carries the messages after `after`.
function pollChannel(topic, onText) {
  let after = null;
  status("poll", "polling");
  (async function loop() {
    for (;;) {
      try {
        const q = after === null ? "" : "?after=" + after;
        const r = await fetch("/poll/" + topic + q);
        if (r.status === 200) {
          const batch = await r.json();
          for (const m of batch.messages) onText(m.text !== undefined ? m.text : "[binary]");
          after = batch.last_seq;
        } else if (r.status !== 204) {
          await new Promise((res) => setTimeout(res, 1000));
        }
      } catch (e) {
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
  })();
  return { send: (t) => publish(topic, t) };
}

// Open the three panels with `kind`; `auto` falls back WebSocket → SSE → polling.
function start(kind) {
  const fallback = kind === "auto";
  const open = (k, wsPath, topic, onText) => {
    if (k === "poll") return pollChannel(topic, onText);
    const next = fallback ? () => (channels[topic] = open(k === "websocket" ? "sse" : "poll", wsPath, topic, onText)) : null;
    if (k === "sse") return sseChannel(topic, onText, next);
    return wsChannel(wsPath, onText, next);
  };
  const first = fallback ? "websocket" : kind;
  const channels = {};
  // Echo: over WebSocket the /echo endpoint; elsewhere a private topic echoes the same way.
  const echoTopic = "echo." + me;
  channels[echoTopic] = open(first, "/echo", echoTopic, (t) => { demo.echo.push(t); log("echo-log", "← " + t); });
  // Chat: WebSocket members send text and get JSON from the server; HTTP members publish JSON.
  const chatTopic = "chat." + room;
  channels[chatTopic] = open(first, "/chat/" + room, chatTopic, (t) => {
    let m;
    try { m = JSON.parse(t); } catch (e) { m = { type: "message", from: "?", text: t }; }
    demo.chat.push(m);
    if (m.type === "message") log("chat-log", (m.name || m.from) + ": " + m.text);
    else log("chat-log", (m.name || m.id) + " " + m.type + "s " + (m.room || ""), "sys");
  });
  channels.clock = open(first, "/clock", "clock", (t) => {
    const m = JSON.parse(t);
    demo.ticks.push(m);
    $("clock").textContent = m.time.slice(11, 19) + " UTC";
    log("clock-log", m.time, "sys");
  });
  $("room-name").textContent = room;
  $("echo-form").onsubmit = (e) => {
    e.preventDefault();
    const t = $("echo-input").value;
    $("echo-input").value = "";
    log("echo-log", "→ " + t, "sys");
    channels[echoTopic].send(t);
  };
  $("chat-form").onsubmit = (e) => {
    e.preventDefault();
    const t = $("chat-input").value;
    $("chat-input").value = "";
    const ch = channels[chatTopic];
    if (ch.ws) ch.send(t);
    else ch.send(JSON.stringify({ type: "message", from: me, text: t }));
  };
  demo.channels = channels;
}

const chosen = params.get("transport") || "auto";
$("transport").value = chosen;
$("transport").onchange = (e) => {
  params.set("transport", e.target.value);
  location.search = params.toString();
};
start(chosen);
