#!/usr/bin/env node
// tests/interop/node_client.js: interop check of a wsloop echo endpoint with the Node `ws` client.
//
// usage: node node_client.js ws://127.0.0.1:PORT/echo [EXTENSIONS]
// Exchanges text and binary messages of edge-case sizes (0 .. 1 MiB), multi-byte UTF-8 text and
// fragmented messages, checking every echo byte-for-byte; pings with a payload and awaits the
// pong with the same payload; closes with 1000 + reason and checks the server answered 1000.
// ws offers permessage-deflate (RFC 7692); this client compresses every message (threshold 0).
// With EXTENSIONS, the server's Sec-WebSocket-Extensions response must be exactly that ("none":
// absent), and ws must have enabled what it says; when deflate is on, a compressible 1 MiB echo
// must arrive compressed.
// Exit 0 on success, 1 on any mismatch/error (message on stderr), 2 on usage errors.
'use strict';

const path = require('path');
const crypto = require('crypto');

let WebSocket;
try {
  WebSocket = require(path.join(__dirname, 'node_modules', 'ws'));
} catch (e) {
  console.error(`node_client: cannot load ws from ${path.join(__dirname, 'node_modules')} ` +
    `(${e.code || e.message}); run scripts/test (it runs npm ci in tests/interop)`);
  process.exit(1);
}

const SIZES = [0, 1, 125, 126, 127, 65535, 65536, 100000, 1048576];
const MAX_PAYLOAD = 1048576 + 65536; // 1 MiB + slack
const CONNECT_TIMEOUT_MS = 10000;
const OVERALL_TIMEOUT_MS = 30000;
const STEP_TIMEOUT_MS = 15000;

const url = process.argv[2];
const expectedExtensions = process.argv[3];
if (process.argv.length < 3 || process.argv.length > 4 || !/^wss?:\/\//.test(url)) {
  console.error('usage: node node_client.js ws://127.0.0.1:PORT/echo [EXTENSIONS]');
  process.exit(2);
}

function fail(msg) {
  console.error(`node_client: FAIL: ${msg}`);
  process.exit(1);
}

const overall = setTimeout(() => fail(`overall timeout (${OVERALL_TIMEOUT_MS / 1000}s) against ${url}`),
  OVERALL_TIMEOUT_MS);

// Event queue: every message/pong/close is pushed here and taken in order by next().
const events = [];
let waiter = null;
function push(ev) {
  if (waiter) { const w = waiter; waiter = null; w(ev); } else { events.push(ev); }
}
function next(what) {
  if (events.length) return Promise.resolve(events.shift());
  return new Promise((resolve) => {
    const t = setTimeout(() => fail(`timed out after ${STEP_TIMEOUT_MS / 1000}s waiting for ${what}`),
      STEP_TIMEOUT_MS);
    waiter = (ev) => { clearTimeout(t); resolve(ev); };
  });
}

function diff(sent, got) {
  if (sent.length !== got.length) return `length ${got.length} != sent ${sent.length}`;
  const i = sent.findIndex((b, k) => b !== got[k]);
  return `first difference at byte ${i}: sent 0x${sent[i].toString(16)}, got 0x${got[i].toString(16)}`;
}

async function expectEcho(label, sentBytes, binary) {
  const ev = await next(`echo of ${label}`);
  if (ev.type !== 'message') fail(`${label}: expected the echo, got ${ev.type} ${ev.desc || ''}`);
  if (ev.isBinary !== binary) {
    fail(`${label}: sent a ${binary ? 'binary' : 'text'} message, echo is ${ev.isBinary ? 'binary' : 'text'}`);
  }
  if (!sentBytes.equals(ev.data)) fail(`${label}: echo differs: ${diff(sentBytes, ev.data)}`);
  console.log(`ok   ${label}`);
}

function send(ws, data, opts) {
  return new Promise((resolve) => ws.send(data, opts, (err) => {
    if (err) fail(`send failed: ${err.message}`);
    resolve();
  }));
}

function asciiText(n) {
  const b = crypto.randomBytes(n);
  for (let i = 0; i < n; i++) b[i] = 0x20 + (b[i] % 0x5f); // printable ASCII
  return b.toString('latin1');
}

function checkExtensions(ws, answered) {
  if (expectedExtensions !== undefined && (answered || 'none') !== expectedExtensions) {
    fail(`Sec-WebSocket-Extensions: server answered ${JSON.stringify(answered)}, ` +
      `expected ${JSON.stringify(expectedExtensions)}`);
  }
  const deflate = ws._extensions['permessage-deflate'];
  if (Boolean(answered) !== Boolean(deflate)) {
    fail(`server answered ${JSON.stringify(answered)} but ws.extensions is ${JSON.stringify(ws.extensions)}`);
  }
  if (deflate) {
    const p = deflate.params;
    console.log(`ok   permessage-deflate negotiated (${answered}): client context takeover ` +
      `${!p.client_no_context_takeover}, server context takeover ${!p.server_no_context_takeover}`);
  } else {
    console.log('ok   no extension negotiated');
  }
  return Boolean(deflate);
}

function jsonLike(n) {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `{"seq":${i},"topic":"prices","ok":true},`;
  return s.slice(0, n);
}

async function run(ws, deflate) {
  for (const n of SIZES) {
    const text = asciiText(n);
    await send(ws, text, { binary: false });
    await expectEcho(`text   ${String(n).padStart(7)} bytes`, Buffer.from(text, 'utf8'), false);
    const bin = crypto.randomBytes(n);
    await send(ws, bin, { binary: true });
    await expectEcho(`binary ${String(n).padStart(7)} bytes`, bin, true);
    const json = jsonLike(n);
    const before = ws._socket.bytesRead;
    await send(ws, json, { binary: false });
    await expectEcho(`json   ${String(n).padStart(7)} bytes`, Buffer.from(json), false);
    const wire = ws._socket.bytesRead - before;
    if (deflate && n === 1048576 && wire > n / 4) {
      fail(`json 1 MiB: the echo took ${wire} bytes on the wire; the server did not compress it`);
    }
  }

  for (const s of ['héllo wörld, Ελληνικά, русский, 日本語, emoji 🦀🎉, combining e\u0301, \u0000 nul',
    '€😀ü'.repeat(50000)]) {
    const b = Buffer.from(s, 'utf8');
    await send(ws, s, { binary: false });
    await expectEcho(`text   multi-byte UTF-8 (${b.length} bytes)`, b, false);
  }

  // fragmented messages: fin:false frames followed by continuation frames
  const tparts = ['frag', 'mented ', 'Ünïcode ', 'text'];
  for (let i = 0; i < tparts.length; i++) {
    await send(ws, tparts[i], { binary: false, fin: i === tparts.length - 1 });
  }
  await expectEcho(`fragmented text (${tparts.length} frames)`, Buffer.from(tparts.join(''), 'utf8'), false);
  const bparts = [1000, 0, 70000, 1].map((n) => crypto.randomBytes(n));
  for (let i = 0; i < bparts.length; i++) {
    await send(ws, bparts[i], { binary: true, fin: i === bparts.length - 1 });
  }
  await expectEcho(`fragmented binary (${bparts.length} frames)`, Buffer.concat(bparts), true);

  const payload = Buffer.from('wsloop-ping-\u0000\u00ff', 'latin1');
  ws.ping(payload);
  const pong = await next('pong');
  if (pong.type !== 'pong') fail(`ping: expected a pong, got ${pong.type}`);
  if (!payload.equals(pong.data)) {
    fail(`ping: pong payload ${pong.data.toString('hex')} != ping payload ${payload.toString('hex')}`);
  }
  console.log(`ok   ping ${payload.toString('hex')} answered by pong with the same payload`);

  const after = Buffer.from('still echoing');
  await send(ws, after.toString(), { binary: false });
  await expectEcho('text   after ping', after, false);

  ws.close(1000, 'node_client done');
  const closed = await next('close');
  if (closed.type !== 'close') fail(`close: expected the close event, got ${closed.type}`);
  // ws reports the code of the server's close frame; 1005 = none in the frame, 1006 = no close frame
  if (closed.code !== 1000) {
    fail(`close: server answered code ${closed.code} (${JSON.stringify(closed.reason)}), expected 1000`);
  }
  console.log(`ok   close 1000: server replied ${closed.code} ${JSON.stringify(closed.reason)}`);
}

const ws = new WebSocket(url, {
  maxPayload: MAX_PAYLOAD,
  handshakeTimeout: CONNECT_TIMEOUT_MS,
  perMessageDeflate: { threshold: 0 },
});
let answeredExtensions;
ws.on('upgrade', (res) => { answeredExtensions = res.headers['sec-websocket-extensions']; });
ws.on('error', (e) => fail(`${e.code || 'error'}: ${e.message}`));
ws.on('unexpected-response', (req, res) => fail(`handshake rejected: HTTP ${res.statusCode} ${res.statusMessage}`));
ws.on('message', (data, isBinary) => push({ type: 'message', data, isBinary }));
ws.on('pong', (data) => push({ type: 'pong', data }));
ws.on('close', (code, reason) => push({ type: 'close', code, reason: reason.toString(), desc: `code ${code}` }));
ws.on('open', () => {
  console.log(`connected to ${url} (ws ${require(path.join(__dirname, 'node_modules', 'ws', 'package.json')).version})`);
  const deflate = checkExtensions(ws, answeredExtensions);
  run(ws, deflate).then(() => {
    clearTimeout(overall);
    console.log('node_client: all checks passed');
    process.exit(0);
  }, (e) => fail(e.stack || String(e)));
});
