#!/usr/bin/env python3
"""Echo check for the wss:// peer benches/peers/tokio-rustls-echo (check_peers.py's WebSocket checks over TLS).

Builds nothing: expects the release binary
(`cargo build --release --manifest-path benches/peers/tokio-rustls-echo/Cargo.toml`).
Makes a throwaway P-256 certificate with openssl, starts the peer on a free port, checks the
TLS session (TLS 1.3, ALPN http/1.1), then runs exactly the WebSocket checks of
check_peers.py (text, 1 MiB binary, fragmented text, 200 pipelined, ping, another path,
clean close) with every ws:// connection made as wss:// against that certificate.

Usage: python3 benches/peers/check_tls_peer.py     (needs `pip install websockets`)
"""

import asyncio
import os
import select
import socket
import ssl
import subprocess
import sys
import tempfile

import check_peers
from check_peers import CheckError, expect, free_port, stop

NAME = "tokio-rustls-echo"


def main():
    try:
        import websockets.asyncio.client as client
    except ImportError:
        print("the 'websockets' package is required: pip install websockets", file=sys.stderr)
        return 2
    path = check_peers.binary(NAME)
    if not os.access(path, os.X_OK):
        print(f"FAIL {NAME}: missing binary {path}", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="tls-peer-check-")
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    ctx = ssl.create_default_context(cafile=cert)
    ctx.set_alpn_protocols(["http/1.1"])

    # check_peers.ws_check connects to ws://127.0.0.1:PORT/...: the same checks, over TLS.
    plain_connect = client.connect

    def tls_connect(uri, **kw):
        expect(uri.startswith("ws://"), f"unexpected URI {uri}")
        return plain_connect("wss://" + uri[len("ws://"):], ssl=ctx, server_hostname="localhost", **kw)

    client.connect = tls_connect

    port = free_port()
    proc = subprocess.Popen([path, "--port", str(port), "--cert", cert, "--key", key],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        want = f"listening on 127.0.0.1:{port}"
        ready, _, _ = select.select([proc.stdout], [], [], 10.0)
        line = proc.stdout.readline().decode(errors="replace").strip() if ready else ""
        expect(line == want, f"expected {want!r} on stdout, got {line!r}")
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                             server_hostname="localhost") as s:
            expect(s.version() == "TLSv1.3", f"TLS version {s.version()}")
            expect(s.selected_alpn_protocol() == "http/1.1", f"ALPN {s.selected_alpn_protocol()}")
            suite = s.cipher()[0]
        asyncio.run(asyncio.wait_for(check_peers.ws_check(port), check_peers.TIMEOUT))
        expect(proc.poll() is None, f"server exited with {proc.returncode}")
        print(f"ok   {NAME} (TLSv1.3, {suite}, ALPN http/1.1)")
        return 0
    except (CheckError, OSError, asyncio.TimeoutError) as e:
        print(f"FAIL {NAME}: {type(e).__name__}: {e}")
        return 1
    finally:
        stop(proc)


if __name__ == "__main__":
    sys.exit(main())
