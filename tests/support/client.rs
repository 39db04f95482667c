//! A raw, blocking WebSocket client for integration tests: exact bytes in and out, so tests
//! can send what no well-behaved client would.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const UPGRADE: &str = "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

pub struct Client {
    pub sock: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connect without a handshake.
    pub fn connect(addr: SocketAddr) -> Client {
        let sock = TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock.set_nodelay(true).unwrap();
        Client {
            sock,
            buf: Vec::new(),
        }
    }

    /// Connect from source address `src` (any 127.0.0.x reaches loopback), so one machine
    /// can play several clients with addresses of their own.
    pub fn connect_from(src: [u8; 4], addr: SocketAddr) -> Client {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let from = SocketAddr::from((std::net::Ipv4Addr::from(src), 0));
        sock.bind(&from.into())
            .expect("bind a loopback source address");
        sock.connect(&addr.into()).expect("connect");
        Client::from_stream(TcpStream::from(sock))
    }

    /// Wrap a connected stream (e.g. one with socket options set before connecting).
    pub fn from_stream(sock: TcpStream) -> Client {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock.set_nodelay(true).unwrap();
        Client {
            sock,
            buf: Vec::new(),
        }
    }

    /// Connect and complete the upgrade on /echo.
    pub fn open(addr: SocketAddr) -> Client {
        Client::open_path(addr, "/echo")
    }

    /// Connect and complete the upgrade on `path`.
    pub fn open_path(addr: SocketAddr, path: &str) -> Client {
        let mut c = Client::connect(addr);
        c.send_raw(UPGRADE.replacen("/echo", path, 1).as_bytes());
        let head = c.read_head();
        assert!(head.starts_with("HTTP/1.1 101 "), "{path}: {head}");
        c
    }

    /// Read frames until a text message arrives; returns it (panics on EOF).
    /// Upgrade to `path` offering `protocol`; panics unless the server selects it.
    pub fn open_with_protocol(addr: SocketAddr, path: &str, protocol: &str) -> Client {
        let mut c = Client::connect(addr);
        let req = UPGRADE.replacen("/echo", path, 1).replacen(
            "\r\n\r\n",
            &format!("\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"),
            1,
        );
        c.send_raw(req.as_bytes());
        let head = c.read_head();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        let selected = format!("Sec-WebSocket-Protocol: {protocol}\r\n");
        assert!(head.contains(&selected), "{head}");
        c
    }

    pub fn next_text(&mut self) -> String {
        loop {
            match self.read_frame() {
                Some((0x81, p)) => return String::from_utf8(p).expect("UTF-8"),
                Some((0x89, p)) => self.send_frame(0x8A, &p),
                Some(_) => {}
                None => panic!("connection closed while waiting for a message"),
            }
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("write");
    }

    /// Read an HTTP response head (through CRLFCRLF); extra bytes stay buffered.
    pub fn read_head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            if self.fill() == 0 {
                return String::from_utf8_lossy(&self.buf).into_owned();
            }
        }
    }

    /// Read until the server closes; returns everything left.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill() > 0 {}
        std::mem::take(&mut self.buf)
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        match self.sock.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Send one masked frame with the given first byte (FIN/RSV/opcode).
    pub fn send_frame(&mut self, b0: u8, payload: &[u8]) {
        self.send_raw(&frame(b0, payload));
    }

    /// Read one server frame: (first byte, payload). None on EOF.
    pub fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                assert_eq!(b1 & 0x80, 0, "server frames are never masked");
                let (len, hl) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(b) as usize, 10)
                    }
                    n if n < 126 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= hl + len {
                    let payload = self.buf[hl..hl + len].to_vec();
                    self.buf.drain(..hl + len);
                    return Some((b0, payload));
                }
            }
            if self.fill() == 0 {
                return None;
            }
        }
    }

    /// Send a text message and expect it back.
    pub fn echo(&mut self, text: &str) {
        self.send_frame(0x81, text.as_bytes());
        assert_eq!(self.read_frame(), Some((0x81, text.as_bytes().to_vec())));
    }
}

/// A masked client frame.
pub fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0xA1, 0xB2, 0xC3, 0xD4];
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Read until `needle` has appeared `count` times (or EOF); returns what was read.
pub fn read_until(s: &mut TcpStream, needle: &str, count: usize) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while String::from_utf8_lossy(&got).matches(needle).count() < count {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}; so far: {}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}
