// web/demo.js: the demo page — echo, a chat room and the clock, each a topic read and written
// through the browser client (/wsloop.js, clients/js): the client picks the transport
// (WebSocket, SSE or long polling; `?transport=` pins one), resumes exactly and reconnects
// with the server's hints. The page only renders. `window.demo` exposes its state for the
// browser tests.
import { WsloopClient, TRANSPORTS } from "/wsloop.js";

const params = new URLSearchParams(location.search);
const room = params.get("room") || "lobby";
const me = "web-" + Math.random().toString(36).slice(2, 8);
const chosen = params.get("transport") || "auto";
const transports = TRANSPORTS.includes(chosen) ? [chosen] : TRANSPORTS;
const client = new WsloopClient("", { transports, openTimeout: 3000, backoffInitial: 250, backoffMax: 5000 });

const topics = { echo: "echo." + me, chat: "chat." + room, clock: "clock" };
const demo = (window.demo = {
  client,
  me,
  topics,
  transport: null,
  state: null,
  states: {}, // per topic: "connecting" | "open" | "reconnecting"
  closes: [],
  gaps: [],
  positions: {}, // per topic: the positions delivered, in order
  echo: [],
  chat: [],
  ticks: [],
});

const $ = (id) => document.getElementById(id);
function log(id, text, cls) {
  const div = document.createElement("div");
  div.textContent = text;
  if (cls) div.className = cls;
  $(id).appendChild(div);
  $(id).scrollTop = $(id).scrollHeight;
}

// The header shows the transport in use and the worst state of the three subscriptions.
client.on("state", ({ topic, state, transport }) => {
  demo.states[topic] = state;
  const all = Object.values(demo.states);
  const shown = all.includes("reconnecting") ? "reconnecting" : all.includes("connecting") ? "connecting" : "open";
  $("inuse").textContent = demo.transport = transport;
  $("ready").textContent = demo.state = shown;
});
client.on("closed", ({ topic, code, reason, wasClean }) => {
  demo.closes.push({ topic, code, reason, wasClean });
  $("closecode").textContent = code + (reason ? " " + reason : "");
});
client.on("gap", (g) => {
  demo.gaps.push(g);
  log(g.topic === topics.chat ? "chat-log" : g.topic === topics.clock ? "clock-log" : "echo-log", `(missed ${g.after} → ${g.resumedAt})`, "sys");
});

// Subscribe to `topic`, recording each message's position before `render` sees it.
function follow(topic, render) {
  demo.positions[topic] = [];
  client.subscribe(topic, (data, meta) => {
    demo.positions[topic].push(meta.position);
    render(data);
  });
}

follow(topics.echo, (t) => {
  demo.echo.push(t);
  log("echo-log", "← " + t);
});

// Chat members announce themselves: a join once the room's subscription first opens, a leave
// when the page goes (sent with keepalive, so it outlives the page).
const say = (m) => JSON.stringify({ ...m, from: me, id: me, room });
let joined = false;
client.on("state", ({ topic, state }) => {
  if (topic !== topics.chat || state !== "open" || joined) return;
  joined = true;
  client.publish(topics.chat, say({ type: "join" })).catch(() => {});
});
addEventListener("pagehide", () => {
  if (joined) fetch("/publish/" + topics.chat, { method: "POST", body: say({ type: "leave" }), keepalive: true });
});
follow(topics.chat, (t) => {
  let m;
  try {
    m = JSON.parse(t);
  } catch (e) {
    m = { type: "message", from: "?", text: t };
  }
  demo.chat.push(m);
  if (m.type === "message") log("chat-log", (m.name || m.from) + ": " + m.text);
  else log("chat-log", (m.name || m.id) + " " + m.type + "s " + (m.room || ""), "sys");
});

follow(topics.clock, (t) => {
  const m = JSON.parse(t);
  demo.ticks.push(m);
  $("clock").textContent = m.time.slice(11, 19) + " UTC";
  log("clock-log", m.time, "sys");
});

// A publish the server refused is shown, not dropped silently.
function send(topic, body, logId) {
  client.publish(topic, body).catch((e) => log(logId, "not sent: " + e.message, "sys"));
}
$("room-name").textContent = room;
$("echo-form").onsubmit = (e) => {
  e.preventDefault();
  const t = $("echo-input").value;
  $("echo-input").value = "";
  log("echo-log", "→ " + t, "sys");
  send(topics.echo, t, "echo-log");
};
$("chat-form").onsubmit = (e) => {
  e.preventDefault();
  const t = $("chat-input").value;
  $("chat-input").value = "";
  send(topics.chat, say({ type: "message", text: t }), "chat-log");
};

$("transport").value = chosen;
$("transport").onchange = (e) => {
  params.set("transport", e.target.value);
  location.search = params.toString();
};
