#!/usr/bin/env python3
# tests/interop/py_client.py: interop check of a wsloop echo endpoint with the Python `websockets` client.
"""usage: py_client.py ws://127.0.0.1:PORT/echo [EXTENSIONS]

Exchanges text and binary messages of edge-case sizes (0 .. 1 MiB), multi-byte UTF-8 text and a
fragmented message, checking every echo byte-for-byte; pings with a payload and awaits the pong;
closes with 1000 + reason and checks the closing handshake completed cleanly.
websockets offers permessage-deflate (RFC 7692) by default and compresses every message once it
is negotiated. With EXTENSIONS, the server's Sec-WebSocket-Extensions response must be exactly
that ("none": absent), and when it is permessage-deflate, websockets must have enabled it.
Exit 0 on success, 1 on any mismatch/error (with a message on stderr), 2 on usage errors.
"""
import asyncio
import random
import sys

try:
    import websockets
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosedOK
    from websockets.extensions.permessage_deflate import PerMessageDeflate
    from websockets.protocol import State
except ImportError as e:  # missing or too old (< 13) websockets
    print(f"py_client: cannot import websockets ({e}); run scripts/test "
          "(it installs tests/interop/requirements.txt)", file=sys.stderr)
    sys.exit(1)

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 100000, 1048576]
MAX_SIZE = 1048576 + 65536  # 1 MiB + slack
CONNECT_TIMEOUT = 10
OVERALL_TIMEOUT = 30
MESSAGE_TIMEOUT = 15


class Mismatch(Exception):
    pass


def describe_diff(sent, got):
    if type(sent) is not type(got):
        return f"sent {type(sent).__name__}, echo is {type(got).__name__}"
    if len(sent) != len(got):
        return f"length {len(got)} != sent {len(sent)}"
    first = next(i for i, (a, b) in enumerate(zip(sent, got)) if a != b)
    return f"first difference at index {first}: sent {sent[first]!r}, got {got[first]!r}"


async def roundtrip(ws, label, msg):
    await ws.send(msg)
    got = await asyncio.wait_for(ws.recv(), MESSAGE_TIMEOUT)
    if type(got) is not type(msg) or got != msg:
        raise Mismatch(f"{label}: echo differs: {describe_diff(msg, got)}")
    print(f"ok   {label}")


def check_extensions(ws, expected):
    got = ws.response.headers.get("Sec-WebSocket-Extensions")
    if expected is not None and (got or "none") != expected:
        raise Mismatch(f"Sec-WebSocket-Extensions: server answered {got!r}, expected {expected!r}")
    deflate = [e for e in ws.protocol.extensions if isinstance(e, PerMessageDeflate)]
    if got and not deflate:
        raise Mismatch(f"server answered {got!r} but websockets did not enable permessage-deflate")
    if deflate:
        d = deflate[0]
        # websockets names the directions from its own side: local = client -> server.
        print(f"ok   permessage-deflate negotiated ({got}): client context takeover "
              f"{not d.local_no_context_takeover}, server context takeover "
              f"{not d.remote_no_context_takeover}")
    else:
        print("ok   no extension negotiated")


async def run(url, expected_extensions):
    rng = random.Random(6455)
    async with connect(url, open_timeout=CONNECT_TIMEOUT, close_timeout=10,
                       max_size=MAX_SIZE, ping_interval=None) as ws:
        print(f"connected to {url} (websockets {websockets.__version__})")
        check_extensions(ws, expected_extensions)
        for n in SIZES:
            # printable ASCII so the text is n bytes of valid UTF-8
            text = "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(n))
            await roundtrip(ws, f"text   {n:>7} bytes", text)
            await roundtrip(ws, f"binary {n:>7} bytes", rng.randbytes(n))
            # compressible payloads too: random bytes deflate to more than they are
            json_like = "".join('{"seq":%d,"topic":"prices","ok":true},' % i
                                for i in range(n // 30 + 1))[:n]
            await roundtrip(ws, f"json   {n:>7} bytes", json_like)

        utf8 = "héllo wörld, Ελληνικά, русский, 日本語, emoji 🦀🎉, combining e\u0301, \u0000 nul"
        await roundtrip(ws, f"text   multi-byte UTF-8 ({len(utf8.encode())} bytes)", utf8)
        big_utf8 = ("€😀ü" * 50000)  # 450000 bytes, 2-, 3- and 4-byte sequences
        await roundtrip(ws, f"text   multi-byte UTF-8 ({len(big_utf8.encode())} bytes)", big_utf8)

        # fragmented messages (continuation frames), reassembled by the server before echoing
        parts = ["frag", "mented ", "Ünïcode ", "", "text"]
        await ws.send(parts)
        got = await asyncio.wait_for(ws.recv(), MESSAGE_TIMEOUT)
        if got != "".join(parts):
            raise Mismatch(f"fragmented text: echo differs: {describe_diff(''.join(parts), got)}")
        print("ok   fragmented text (5 frames)")
        bparts = [rng.randbytes(n) for n in (1000, 0, 70000, 1)]
        await ws.send(bparts)
        got = await asyncio.wait_for(ws.recv(), MESSAGE_TIMEOUT)
        if got != b"".join(bparts):
            raise Mismatch(f"fragmented binary: echo differs: {describe_diff(b''.join(bparts), got)}")
        print("ok   fragmented binary (4 frames)")

        payload = b"wsloop-ping-\x00\xff"
        pong = await ws.ping(payload)
        try:
            await asyncio.wait_for(pong, MESSAGE_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            raise Mismatch(f"ping: no pong carrying the payload {payload!r} within "
                           f"{MESSAGE_TIMEOUT}s (websockets ignores pongs with other payloads)")
        print(f"ok   ping {payload!r} answered by pong with the same payload")

        await roundtrip(ws, "text   after ping", "still echoing")

        await asyncio.wait_for(ws.close(1000, "py_client done"), MESSAGE_TIMEOUT)
        proto = ws.protocol
        if ws.state is not State.CLOSED:
            raise Mismatch(f"close: connection state is {ws.state.name}, expected CLOSED")
        if proto.close_sent is None or proto.close_sent.code != 1000:
            raise Mismatch(f"close: we did not send close 1000 (close_sent={proto.close_sent})")
        if proto.close_rcvd is None:
            raise Mismatch("close: no close frame received from the server "
                           "(closing handshake did not complete)")
        if proto.close_rcvd.code != 1000:
            raise Mismatch(f"close: server answered code {proto.close_rcvd.code} "
                           f"({proto.close_rcvd.reason!r}), expected 1000")
        if proto.close_rcvd_then_sent:  # we initiated: ours must go first, then the server's
            raise Mismatch("close: server sent its close frame before ours (unexpected order)")
        try:
            await ws.recv()
            raise Mismatch("close: recv() after close returned data")
        except ConnectionClosedOK:
            pass  # ConnectionClosedError would mean an unclean close
        print(f"ok   close 1000: server replied {proto.close_rcvd.code} "
              f"{proto.close_rcvd.reason!r}, handshake complete")


def main():
    if len(sys.argv) not in (2, 3) or not sys.argv[1].startswith(("ws://", "wss://")):
        print(__doc__, file=sys.stderr)
        return 2
    url = sys.argv[1]
    expected = sys.argv[2] if len(sys.argv) == 3 else None
    try:
        asyncio.run(asyncio.wait_for(run(url, expected), OVERALL_TIMEOUT))
    except Mismatch as e:
        print(f"py_client: FAIL: {e}", file=sys.stderr)
        return 1
    except (asyncio.TimeoutError, TimeoutError):
        print(f"py_client: FAIL: timed out (connect {CONNECT_TIMEOUT}s, per message "
              f"{MESSAGE_TIMEOUT}s, overall {OVERALL_TIMEOUT}s) against {url}", file=sys.stderr)
        return 1
    except Exception as e:  # connection refused, handshake rejected, unclean close, ...
        print(f"py_client: FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("py_client: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
