#!/usr/bin/env python3
"""Echo check for the wsloop comparison peers in benches/peers/.

Builds nothing: expects the release binaries to exist
(`cargo build --release --manifest-path benches/peers/<name>/Cargo.toml`).
Starts each peer on a free port, checks that it echoes, stops it, and exits
non-zero if any check fails.

WebSocket peers (needs `pip install websockets`): text "hello", a 1 MiB binary
message, a fragmented text message, 200 pipelined messages, a ping, a second
path, then a clean close (1000 from the server). raw-mio-echo: 1 MiB of bytes
over a plain socket, then 8 MiB with a slow reader (backpressure), then a
half-close that the server must answer with EOF.

Usage: python3 benches/peers/check_peers.py [PEER ...]
"""

import asyncio
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WS_PEERS = ["tokio-tungstenite-echo", "fastwebsockets-echo"]
RAW_PEERS = ["raw-mio-echo"]
MIB = 1 << 20
TIMEOUT = 20.0


class CheckError(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise CheckError(what)


def binary(name):
    return os.path.join(HERE, name, "target", "release", name)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name):
    """Start a peer on a free port; return (process, port, stderr file)."""
    path = binary(name)
    if not os.access(path, os.X_OK):
        raise CheckError(
            f"missing binary {path}; build it with "
            f"cargo build --release --manifest-path benches/peers/{name}/Cargo.toml"
        )
    port = free_port()
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [path, "--port", str(port)], stdout=subprocess.PIPE, stderr=err
    )
    want = f"listening on 127.0.0.1:{port}"
    ready, _, _ = select.select([proc.stdout], [], [], 10.0)
    line = proc.stdout.readline().decode(errors="replace").strip() if ready else ""
    if line != want:
        stop(proc)
        err.seek(0)
        raise CheckError(
            f"expected {want!r} on stdout, got {line!r} "
            f"(exit={proc.returncode}, stderr={err.read().decode(errors='replace')!r})"
        )
    return proc, port, err


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def ws_check(port):
    from websockets.asyncio.client import connect

    uri = f"ws://127.0.0.1:{port}/"
    async with connect(uri, max_size=64 * MIB, compression=None, open_timeout=10) as ws:
        await ws.send("hello")
        got = await ws.recv()
        expect(got == "hello", f"text echo: expected 'hello', got {got!r}")

        big = os.urandom(MIB)
        await ws.send(big)
        got = await ws.recv()
        expect(isinstance(got, bytes), f"binary echo came back as {type(got).__name__}")
        expect(got == big, f"1 MiB binary echo mismatch (got {len(got)} bytes)")

        # Fragmented message must come back as one message.
        await ws.send(["frag", "mented ", "h\u00e9llo"])
        got = await ws.recv()
        expect(got == "fragmented h\u00e9llo", f"fragmented echo: got {got!r}")

        # Pipelined: everything sent before anything is read.
        msgs = [f"msg-{i}" if i % 2 else f"bin-{i}".encode() for i in range(200)]
        for m in msgs:
            await ws.send(m)
        for i, m in enumerate(msgs):
            got = await ws.recv()
            expect(got == m, f"pipelined message {i}: expected {m!r}, got {got!r}")

        pong = await ws.ping(b"are-you-there")
        await asyncio.wait_for(pong, 10)

        await ws.close()
        expect(ws.close_code == 1000, f"close code from server: {ws.close_code}")

    # Any path is accepted.
    async with connect(f"ws://127.0.0.1:{port}/some/other/path?q=1", open_timeout=10) as ws:
        await ws.send(b"\x00\x01\x02")
        got = await ws.recv()
        expect(got == b"\x00\x01\x02", f"echo on other path: got {got!r}")
        await ws.close()
        expect(ws.close_code == 1000, f"close code from server (other path): {ws.close_code}")


def recv_exact(sock, n):
    chunks, have = [], 0
    while have < n:
        chunk = sock.recv(min(n - have, 256 * 1024))
        if not chunk:
            raise CheckError(f"connection closed after {have} of {n} echoed bytes")
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)


def raw_roundtrip(port, size, read_delay):
    payload = os.urandom(size)
    send_err = []
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:

        def sender():
            try:
                sock.sendall(payload)
            except OSError as e:  # reported by the main thread
                send_err.append(e)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        time.sleep(read_delay)  # let output pile up on the server side
        got = recv_exact(sock, size)
        t.join(TIMEOUT)
        expect(not send_err, f"send failed: {send_err}")
        expect(got == payload, f"{size}-byte raw echo mismatch")

        # Half-close: the server should flush and then close its side.
        sock.shutdown(socket.SHUT_WR)
        tail = sock.recv(1)
        expect(tail == b"", f"expected EOF after half-close, got {tail!r}")


def raw_check(port):
    raw_roundtrip(port, MIB, 0.0)
    raw_roundtrip(port, 8 * MIB, 0.5)


def check(name):
    proc, port, err = start(name)
    try:
        if name in RAW_PEERS:
            raw_check(port)
        else:
            asyncio.run(asyncio.wait_for(ws_check(port), TIMEOUT))
        expect(proc.poll() is None, f"server exited with {proc.returncode}")
    finally:
        stop(proc)
        err.close()


def main(argv):
    names = argv[1:] or WS_PEERS + RAW_PEERS
    unknown = [n for n in names if n not in WS_PEERS + RAW_PEERS]
    if unknown:
        print(f"unknown peer(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    if any(n in WS_PEERS for n in names):
        try:
            import websockets  # noqa: F401
        except ImportError:
            print("the 'websockets' package is required: pip install websockets", file=sys.stderr)
            return 2

    failed = 0
    for name in names:
        try:
            check(name)
            print(f"ok   {name}")
        except Exception as e:  # report every peer, then fail overall
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
