#!/usr/bin/env python3
# scripts/slow-consumer-attack.py: measures wsloop's memory under a slow-consumer attack.
#
# usage: scripts/slow-consumer-attack.py [--stalled N] [--messages M] [--size BYTES] [-- SERVER_ARGS]
# Starts target/release/wsloop (build it first) on a free loopback port, opens N subscribers
# to /topic/attack that never read (small receive buffers), then publishes M messages of
# BYTES from a subscriber that does read, sampling the server's RSS. Prints one JSON line:
# RSS before, peak, after, how many stalled subscribers the server closed, and the limits.
import argparse, json, os, socket, struct, subprocess, sys, time

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

def upgrade(port, path, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    return s

def frame(payload):
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
                            if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
    return head + b"\0\0\0\0" + payload  # zero mask key: payload unchanged

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stalled", type=int, default=500)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--size", type=int, default=4000)
    ap.add_argument("server_args", nargs="*")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    srv = subprocess.Popen([os.path.join(root, "target/release/wsloop"), "--listen", "127.0.0.1:0",
                            "--workers", "1", *a.server_args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "RUST_LOG": "info"})
    try:
        port = int(srv.stdout.readline().rsplit(":", 1)[1])
        time.sleep(0.2)
        before = rss_kib(srv.pid)
        stalled = [upgrade(port, "/topic/attack", rcvbuf=4096) for _ in range(a.stalled)]
        pub = upgrade(port, "/topic/attack")
        pub.setblocking(False)
        msg, peak = frame(b"x" * a.size), before
        deadline = time.time() + 120
        for i in range(a.messages):
            pub.setblocking(True)
            pub.sendall(msg)
            pub.setblocking(False)
            try:
                while pub.recv(1 << 20):
                    pass
            except BlockingIOError:
                pass
            if i % 200 == 0:
                peak = max(peak, rss_kib(srv.pid))
            if time.time() > deadline:
                break
        time.sleep(0.5)
        peak = max(peak, rss_kib(srv.pid))
        after = rss_kib(srv.pid)
        print(json.dumps({"stalled": a.stalled, "messages": a.messages, "size": a.size,
                          "published_mib": round(a.messages * a.size / 2**20, 1),
                          "rss_before_kib": before, "rss_peak_kib": peak, "rss_after_kib": after,
                          "server_args": a.server_args}), flush=True)
    finally:
        srv.terminate()
        _, err = srv.communicate(timeout=10)
        closed = err.count("slow consumer")
        print(json.dumps({"stalled_closed_by_server": closed}))

if __name__ == "__main__":
    sys.exit(main())
