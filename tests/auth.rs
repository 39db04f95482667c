//! Access tokens against real peers (issue 19): tokens minted by PyJWT (installed by
//! scripts/test), checked before every transport opens — 401 with the RFC 6750 challenge
//! when missing, malformed, badly signed, expired or not yet valid, 403 when the claims do
//! not grant the topic — from the `Authorization` header, the `token` parameter or a
//! cookie; the algorithm comes from the configured key (no `alg: none`, no HS/RS
//! confusion); a WebSocket without the publish right is closed with 3003 when it publishes,
//! and with 3000 when its token expires (a stream then ends) unless it refreshed it in-band
//! (subprotocol `wsloop.auth`);
//! the server's own topic (the clock) takes no publish from anyone; topic rules open a topic
//! to anyone or close it to all but the server and the backend's API key; the chat names a
//! member by its token's `sub`; refusals are counted by reason and a token seen again is not
//! verified again; and a token never reaches the log.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use client::{read_until, Client, UPGRADE};
use server::Server;

/// A scratch directory for keys, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("wsloop-auth-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 (scripts/test installs PyJWT)");
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A token with `claims` (JSON), signed by PyJWT with the key in `key_file` and `alg` (an
/// HMAC secret without its trailing newline, as the server reads it).
fn mint(claims: &str, key_file: &str, alg: &str) -> String {
    python(
        "import jwt, json, sys\n\
         key = open(sys.argv[2], 'rb').read()\n\
         key = key.removesuffix(b'\\n') if sys.argv[3].startswith('HS') else key\n\
         print(jwt.encode(json.loads(sys.argv[1]), key, algorithm=sys.argv[3]))",
        &[claims, key_file, alg],
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims for `sub` valid for an hour with these grants (JSON arrays).
fn claims(subscribe: &str, publish: &str) -> String {
    format!(
        r#"{{"sub":"alice","exp":{},"subscribe":{subscribe},"publish":{publish}}}"#,
        now() + 3600
    )
}

fn exchange(srv: &Server, raw: &str) -> String {
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    read_until(&mut s, "\r\n\r\n", 1)
}

fn publish(srv: &Server, topic: &str, auth: &str) -> String {
    exchange(
        srv,
        &format!(
            "POST /publish/{topic} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 2\r\nConnection: close\r\n\r\nhi"
        ),
    )
}

fn status(resp: &str) -> &str {
    resp.get(9..12).unwrap_or("")
}

/// The first response line of an upgrade to `path` (the token in its query, if any).
fn upgrade_status(srv: &Server, path: &str, extra: &str) -> String {
    let req =
        UPGRADE
            .replacen("/echo", path, 1)
            .replacen("\r\n\r\n", &format!("\r\n{extra}\r\n"), 1);
    exchange(srv, &req)
}

#[test]
fn hmac_tokens_gate_every_transport() {
    let dir = Scratch::new("hs");
    let secret = dir.file("secret", b"correct horse battery staple\n");
    let other = dir.file("other", b"another secret");
    let srv = Server::start(&["--workers", "1", "--token-secret-file", &secret]);
    let both = mint(&claims(r#"["news.*"]"#, r#"["news.*"]"#), &secret, "HS256");
    let reader = mint(&claims(r#"["news.*"]"#, "[]"), &secret, "HS384");

    // POST /publish: missing, granted, not granted, badly signed, expired, not yet valid.
    let resp = publish(&srv, "news.eu", "");
    assert_eq!(status(&resp), "401", "{resp}");
    assert!(
        resp.contains("\r\nWWW-Authenticate: Bearer error=\"invalid_token\"\r\n"),
        "{resp}"
    );
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    assert_eq!(status(&publish(&srv, "news.eu", &bearer(&both))), "202");
    assert_eq!(status(&publish(&srv, "news.eu", &bearer(&reader))), "403");
    assert_eq!(status(&publish(&srv, "weather", &bearer(&both))), "403");
    let forged = mint(&claims(r#"["*"]"#, r#"["*"]"#), &other, "HS256");
    assert_eq!(status(&publish(&srv, "news.eu", &bearer(&forged))), "401");
    let expired = format!(r#"{{"sub":"a","exp":{},"publish":["*"]}}"#, now() - 10);
    let expired = mint(&expired, &secret, "HS256");
    assert_eq!(status(&publish(&srv, "news.eu", &bearer(&expired))), "401");
    let early = format!(
        r#"{{"sub":"a","exp":{},"nbf":{},"publish":["*"]}}"#,
        now() + 7200,
        now() + 3600
    );
    let early = mint(&early, &secret, "HS256");
    assert_eq!(status(&publish(&srv, "news.eu", &bearer(&early))), "401");
    // No `sub` or no `exp`: invalid.
    let no_exp = mint(r#"{"sub":"a","publish":["*"]}"#, &secret, "HS256");
    assert_eq!(status(&publish(&srv, "news.eu", &bearer(&no_exp))), "401");
    // `alg: none` is never accepted.
    let none = python(
        "import jwt, json, sys\nprint(jwt.encode(json.loads(sys.argv[1]), None, algorithm='none'))",
        &[&claims(r#"["*"]"#, r#"["*"]"#)],
    );
    assert_eq!(status(&publish(&srv, "news.eu", &bearer(&none))), "401");
    // Garbage, and a token over the size cap (4 KiB), even one that would verify.
    for junk in ["garbage", "a.b.c", "...", "eyJhbGciOiJIUzI1NiJ9.e30.AAAA"] {
        assert_eq!(status(&publish(&srv, "news.eu", &bearer(junk))), "401");
    }
    let padding = "x".repeat(5000);
    let big = format!(
        r#"{{"sub":"a","exp":{},"publish":["*"],"pad":"{padding}"}}"#,
        now() + 60
    );
    let big = mint(&big, &secret, "HS256");
    let resp = publish(&srv, "news.eu", &bearer(&big));
    assert_eq!(status(&resp), "401", "{resp}");
    // Every bad token is refused the same way on every other transport, and the clock takes
    // no publish even from a writer of `*`.
    let all = mint(&claims(r#"["*"]"#, r#"["*"]"#), &secret, "HS256");
    assert_eq!(status(&publish(&srv, "clock", &bearer(&all))), "403");
    let bad = [&forged, &expired, &early, &no_exp, &none, &big, "garbage"];
    for token in bad {
        for path in ["/sse/news.eu", "/stream/news.eu", "/poll/news.eu?wait=0"] {
            let sep = if path.contains('?') { '&' } else { '?' };
            let get = format!(
                "GET {path}{sep}token={token} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            );
            let resp = exchange(&srv, &get);
            assert_eq!(status(&resp), "401", "{path}: {resp}");
            assert!(resp.contains("WWW-Authenticate: Bearer"), "{resp}");
        }
        let resp = upgrade_status(&srv, "/topic/news.eu", &bearer(token));
        assert_eq!(status(&resp), "401", "WebSocket: {resp}");
    }

    // SSE, streaming and polling need the subscribe right; the token in the query works.
    for path in ["/sse/news.eu", "/stream/news.eu", "/poll/news.eu?wait=0"] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let get =
            |q: &str| format!("GET {path}{q} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(status(&exchange(&srv, &get(""))), "401", "{path}");
        let ok = exchange(&srv, &get(&format!("{sep}token={reader}")));
        assert_eq!(status(&ok), "200", "{path}: {ok}");
        let no = mint(&claims(r#"["weather"]"#, "[]"), &secret, "HS256");
        assert_eq!(
            status(&exchange(&srv, &get(&format!("{sep}token={no}")))),
            "403"
        );
    }

    // A WebSocket: reading needs the subscribe right; publishing without the publish right
    // is closed with 3003.
    assert_eq!(status(&upgrade_status(&srv, "/topic/news.eu", "")), "401");
    let no = mint(&claims(r#"["weather"]"#, "[]"), &secret, "HS256");
    let path = format!("/topic/news.eu?token={no}");
    assert_eq!(status(&upgrade_status(&srv, &path, "")), "403");
    let mut writer = Client::open_path(srv.addr(), &format!("/topic/news.eu?token={both}"));
    let mut ro = Client::open_path(srv.addr(), &format!("/topic/news.eu?token={reader}"));
    writer.send_frame(0x81, b"from the writer");
    assert_eq!(ro.next_text(), "from the writer");
    ro.send_frame(0x81, b"from the reader");
    match ro.read_frame() {
        Some((0x88, p)) => assert_eq!(&p[..2], &3003u16.to_be_bytes(), "{p:?}"),
        other => panic!("expected a close, got {other:?}"),
    }
    assert_eq!(writer.next_text(), "from the writer");
    writer.send_frame(0x81, b"second");
    assert_eq!(
        writer.next_text(),
        "second",
        "the reader's message went nowhere"
    );
    // A route without a topic needs no token.
    Client::open_path(srv.addr(), "/echo");
}

#[test]
fn a_public_key_fixes_the_algorithm_and_a_cookie_may_carry_the_token() {
    let dir = Scratch::new("rs");
    let private = python(
        "from cryptography.hazmat.primitives.asymmetric import rsa\n\
         from cryptography.hazmat.primitives import serialization as s\n\
         k = rsa.generate_private_key(public_exponent=65537, key_size=2048)\n\
         print(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()).decode())\n\
         print(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo).decode())",
        &[],
    );
    let split = private.find("-----BEGIN PUBLIC KEY-----").unwrap();
    let (private, public) = private.split_at(split);
    let private = dir.file("private.pem", private.as_bytes());
    let public = dir.file("public.pem", public.as_bytes());
    let srv = Server::start(&[
        "--workers",
        "1",
        "--token-public-key-file",
        &public,
        "--token-cookie",
        "wsloop_token",
        "--token-audience",
        "wsloop",
    ]);
    let mut c = claims("[]", r#"["*"]"#);
    c.insert_str(1, r#""aud":"wsloop","#);
    let good = mint(&c, &private, "RS256");
    let bearer = format!("Authorization: Bearer {good}\r\n");
    assert_eq!(status(&publish(&srv, "t", &bearer)), "202");
    let cookie = format!("Cookie: theme=dark; wsloop_token={good}\r\n");
    assert_eq!(status(&publish(&srv, "t", &cookie)), "202");
    // The wrong audience, and HS256 signed with the public key as its secret (the classic
    // confusion): both refused.
    let wrong_aud = mint(&claims("[]", r#"["*"]"#), &private, "RS256");
    let bearer = format!("Authorization: Bearer {wrong_aud}\r\n");
    assert_eq!(status(&publish(&srv, "t", &bearer)), "401");
    let confused = python(
        "import json, sys, hmac, hashlib, base64\n\
         b = lambda x: base64.urlsafe_b64encode(x).rstrip(b'=')\n\
         h = b(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())\n\
         p = b(sys.argv[1].encode())\n\
         key = open(sys.argv[2], 'rb').read()\n\
         s = b(hmac.new(key, h + b'.' + p, hashlib.sha256).digest())\n\
         print((h + b'.' + p + b'.' + s).decode())",
        &[&c, &public],
    );
    let bearer = format!("Authorization: Bearer {confused}\r\n");
    assert_eq!(status(&publish(&srv, "t", &bearer)), "401");
}

#[test]
fn the_clock_is_the_servers_and_a_token_never_reaches_the_log() {
    let dir = Scratch::new("log");
    let log = dir.0.join("server.log");
    let file = std::fs::File::create(&log).unwrap();
    let srv = Server::start_with(&["--workers", "1"], |cmd| {
        cmd.env("RUST_LOG", "debug").stderr(file);
    });
    // Without tokens configured too: nobody publishes into the clock.
    assert_eq!(status(&publish(&srv, "clock", "")), "403");
    let mut c = Client::open_path(srv.addr(), "/topic/clock?token=SECRET-TOKEN-VALUE");
    c.send_frame(0x81, b"HACKED");
    loop {
        match c.read_frame() {
            Some((0x88, p)) => {
                assert_eq!(&p[..2], &3003u16.to_be_bytes());
                break;
            }
            Some((0x81, text)) => assert!(!text.starts_with(b"HACKED"), "it was published"),
            other => panic!("expected a close, got {other:?}"),
        }
    }
    let _ = exchange(
        &srv,
        "GET /sse/x?token=SECRET-TOKEN-VALUE&wait=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    std::thread::sleep(Duration::from_millis(100));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("token=***"), "the request was logged: {text}");
    assert!(!text.contains("SECRET-TOKEN-VALUE"), "{text}");
}

#[test]
fn a_connection_ends_when_its_token_expires() {
    let dir = Scratch::new("exp");
    let secret = dir.file("secret", b"s3cret");
    let srv = Server::start(&["--workers", "1", "--token-secret-file", &secret]);
    let exp = now() + 3;
    let soon = format!(r#"{{"sub":"bob","exp":{exp},"subscribe":["t"],"publish":["t"]}}"#);
    let token = mint(&soon, &secret, "HS256");
    let mut ws = Client::open_path(srv.addr(), &format!("/topic/t?token={token}"));
    let mut sse = TcpStream::connect(srv.addr()).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let get = format!("GET /sse/t HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n");
    sse.write_all(get.as_bytes()).unwrap();
    // The WebSocket gets 3000 (IANA: Unauthorized) once exp passes, not before.
    loop {
        match ws.read_frame() {
            Some((0x88, p)) => {
                assert_eq!(&p[..2], &3000u16.to_be_bytes(), "{p:?}");
                break;
            }
            Some((0x89, p)) => ws.send_frame(0x8A, &p),
            other => panic!("expected a close, got {other:?}"),
        }
    }
    // Not before `exp` by the wall clock (the server's clock, read once per loop iteration,
    // may lag a little), and not long after.
    let closed_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let exp = Duration::from_secs(exp);
    assert!(
        closed_at + Duration::from_millis(50) >= exp && closed_at < exp + Duration::from_secs(3),
        "closed at {closed_at:?}, exp {exp:?}"
    );
    // The SSE response just ends (EventSource reconnects, with a fresh token).
    let all = read_until(&mut sse, "never in a stream", 1);
    assert!(all.starts_with("HTTP/1.1 200 "), "{all}");
}

#[test]
fn topic_rules_and_the_api_key_decide_who_may_read_and_write() {
    let dir = Scratch::new("rules");
    let secret = dir.file("secret", b"s3cret");
    let api_key = dir.file("api-key", b"backend-key-0123456789\n");
    let args = [
        "--workers",
        "1",
        "--token-secret-file",
        &secret,
        "--api-key-file",
        &api_key,
        "--topic-rule",
        "public.* subscribe=anyone",
        "--topic-rule",
        "lobby subscribe=anyone publish=anyone",
        "--topic-rule",
        "alerts publish=server",
    ];
    let srv = Server::start(&args);
    let sse =
        |topic: &str| format!("GET /sse/{topic} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    // subscribe=anyone: read without a token; publishing still needs one.
    assert_eq!(status(&exchange(&srv, &sse("public.news"))), "200");
    assert_eq!(status(&exchange(&srv, &sse("private"))), "401");
    assert_eq!(status(&publish(&srv, "public.news", "")), "401");
    let mut ws = Client::open_path(srv.addr(), "/topic/public.news");
    ws.send_frame(0x81, b"not without a token");
    match ws.read_frame() {
        Some((0x88, p)) => assert_eq!(&p[..2], &3003u16.to_be_bytes()),
        other => panic!("expected a close, got {other:?}"),
    }
    // publish=anyone: a WebSocket without a token talks in the lobby.
    assert_eq!(status(&publish(&srv, "lobby", "")), "202");
    let mut ws = Client::open_path(srv.addr(), "/topic/lobby");
    ws.send_frame(0x81, b"hello lobby");
    assert_eq!(ws.next_text(), "hello lobby");

    // publish=server: not even a writer of `*`; the backend's API key may.
    let all = mint(&claims(r#"["*"]"#, r#"["*"]"#), &secret, "HS256");
    let bearer = format!("Authorization: Bearer {all}\r\n");
    let resp = publish(&srv, "alerts", &bearer);
    assert_eq!(status(&resp), "403", "{resp}");
    let key = "Authorization: ApiKey backend-key-0123456789\r\n";
    assert_eq!(status(&publish(&srv, "alerts", key)), "202");
    let mut reader = Client::open_path(srv.addr(), &format!("/topic/alerts?token={all}"));
    reader.send_frame(0x81, b"an alert");
    match reader.read_frame() {
        Some((0x88, p)) => assert_eq!(&p[..2], &3003u16.to_be_bytes()),
        other => panic!("expected a close, got {other:?}"),
    }
    // The API key publishes to an ordinary topic too; a wrong one is 401; the clock is
    // nobody's but its handler's.
    assert_eq!(status(&publish(&srv, "news", key)), "202");
    let wrong = "Authorization: ApiKey backend-key-0123456788\r\n";
    assert_eq!(status(&publish(&srv, "news", wrong)), "401");
    assert_eq!(status(&publish(&srv, "alerts", wrong)), "401");
    assert_eq!(status(&publish(&srv, "clock", key)), "403");
}

#[test]
fn a_rule_that_needs_a_token_without_a_key_stops_the_start() {
    let refused = |rule: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_wsloop"))
            .args(["--listen", "127.0.0.1:0", "--topic-rule", rule])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{rule:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused("news subscribe=token");
    assert!(err.contains("subscribe=token needs"), "{err}");
    let err = refused("news publish=everyone");
    assert!(err.contains("not anyone, token or server"), "{err}");
}

#[test]
fn the_chat_names_members_by_sub_and_tokens_are_counted_and_cached() {
    let dir = Scratch::new("chat");
    let secret = dir.file("secret", b"s3cret");
    let srv = Server::start(&["--workers", "1", "--token-secret-file", &secret]);
    let c = format!(
        r#"{{"sub":"alice","exp":{},"subscribe":["chat.*"],"publish":["chat.*"]}}"#,
        now() + 600
    );
    let token = mint(&c, &secret, "HS256");
    let mut alice = Client::open_path(srv.addr(), &format!("/chat/room1?token={token}"));
    let join = alice.next_text();
    assert!(join.contains(r#","name":"alice","room":"room1""#), "{join}");
    alice.send_frame(0x81, b"hi");
    let line = alice.next_text();
    assert!(line.contains(r#","name":"alice","text":"hi""#), "{line}");
    // The same token again: found in the cache, not verified a second time.
    let _again = Client::open_path(srv.addr(), &format!("/chat/room1?token={token}"));
    assert_eq!(
        status(&upgrade_status(&srv, "/chat/room1?token=junk", "")),
        "401"
    );
    assert_eq!(status(&upgrade_status(&srv, "/chat/room1", "")), "401");
    let metrics = exchange_all(
        &srv,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    for line in [
        "wsloop_token_checks_total{how=\"verified\"} 1\n",
        "wsloop_token_checks_total{how=\"cached\"} 1\n",
        "wsloop_token_refusals_total{reason=\"malformed\"} 1\n",
        "wsloop_token_refusals_total{reason=\"missing\"} 1\n",
        "wsloop_token_refusals_total{reason=\"expired\"} 0\n",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    assert!(!metrics.contains(&token), "the token is in the metrics");
}

/// The whole response to `raw` (the server closes after it).
fn exchange_all(srv: &Server, raw: &str) -> String {
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut all = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut all);
    all
}

/// A token for `t` expiring at `exp`, signed with the secret in `secret` (a file).
fn grant_t(secret: &str, exp: u64) -> String {
    let c = format!(r#"{{"sub":"bob","exp":{exp},"subscribe":["t"],"publish":["t"]}}"#);
    mint(&c, secret, "HS256")
}

/// A WebSocket on `/topic/t` with a token expiring in 2 s, offering `offer`; checks the
/// server selected `selected`, then refreshes in-band to a token of an hour and checks the
/// answer.
fn refreshed(srv: &Server, secret: &str, offer: &str, selected: &str) -> Client {
    let mut c = Client::connect(srv.addr());
    let req = UPGRADE
        .replacen(
            "/echo",
            &format!("/topic/t?token={}", grant_t(secret, now() + 2)),
            1,
        )
        .replacen(
            "\r\n\r\n",
            &format!("\r\nSec-WebSocket-Protocol: {offer}\r\n\r\n"),
            1,
        );
    c.send_raw(req.as_bytes());
    let head = c.read_head();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let chosen = format!("Sec-WebSocket-Protocol: {selected}\r\n");
    assert!(head.contains(&chosen), "{head}");
    let later = now() + 3600;
    let refresh = format!(
        r#"{{"type":"refresh","token":"{}"}}"#,
        grant_t(secret, later)
    );
    c.send_frame(0x81, refresh.as_bytes());
    assert_eq!(
        c.next_text(),
        format!(r#"{{"type":"refreshed","exp":{later}}}"#)
    );
    c
}

#[test]
fn a_websocket_refreshes_its_token_in_band() {
    let dir = Scratch::new("refresh");
    let secret = dir.file("secret", b"s3cret");
    let srv = Server::start(&["--workers", "1", "--token-secret-file", &secret]);
    let mut c = refreshed(&srv, &secret, "wsloop.auth", "wsloop.auth");
    // Past the first token's exp the connection is still open and publishing.
    std::thread::sleep(Duration::from_millis(2500));
    c.send_frame(0x81, b"still here");
    assert_eq!(c.next_text(), "still here");
    // A refresh that does not verify ends it like an expiry: 3000.
    c.send_frame(0x81, br#"{"type":"refresh","token":"not.a.token"}"#);
    match c.read_frame() {
        Some((0x88, p)) => assert_eq!(&p[..2], &3000u16.to_be_bytes(), "{p:?}"),
        other => panic!("expected a close, got {other:?}"),
    }
}

#[test]
fn a_positions_websocket_refreshes_its_token_in_band() {
    let dir = Scratch::new("refresh-positions");
    let secret = dir.file("secret", b"s3cret");
    let srv = Server::start(&["--workers", "1", "--token-secret-file", &secret]);
    let offer = "wsloop.positions.auth, wsloop.positions";
    let mut c = refreshed(&srv, &secret, offer, "wsloop.positions.auth");
    // Past the first token's exp: still open, and what it sends is published and comes back
    // with its position (the refresh itself was not published).
    std::thread::sleep(Duration::from_millis(2500));
    c.send_frame(0x81, b"still here");
    let back = c.next_text();
    assert!(
        back.starts_with(r#"{"position":""#) && back.ends_with(r#","text":"still here"}"#),
        "{back}"
    );

    // Without a token there is nothing to refresh: the plain positions protocol is chosen.
    let open = Server::start(&["--workers", "1"]);
    let mut c = Client::connect(open.addr());
    c.send_raw(
        UPGRADE
            .replacen("/echo", "/topic/t", 1)
            .replacen(
                "\r\n\r\n",
                &format!("\r\nSec-WebSocket-Protocol: {offer}\r\n\r\n"),
                1,
            )
            .as_bytes(),
    );
    let head = c.read_head();
    assert!(
        head.contains("Sec-WebSocket-Protocol: wsloop.positions\r\n"),
        "{head}"
    );
}
