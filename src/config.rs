//! Owns `Config`: every limit and setting of the server, with its documented default, in one
//! place. Plain data; it parses nothing (cli.rs fills it) and performs nothing.

use std::net::SocketAddr;
use std::time::Duration;

/// Limits on what a peer may send during the HTTP upgrade (tungstenite's `AttackCheck`, made
/// configurable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest request head (request line + headers + CRLFs). Larger → 431. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Most header fields. More → 431. Default 100.
    pub max_headers: usize,
    /// Longest request line. Longer → 414. Default 8 KiB.
    pub max_request_line: usize,
    /// Most reads a request head may arrive in (a head dribbled in tiny pieces costs a
    /// syscall and a scan per piece). More → 400. Default 64.
    pub max_head_reads: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_request_line: 8 * 1024,
            max_head_reads: 64,
        }
    }
}

/// Limits on WebSocket frames and messages (RFC 6455 §10.4 "implementations SHOULD impose
/// limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsLimits {
    /// Largest payload of one frame, checked on the header before the payload is read. Larger →
    /// close 1009. Default 1 MiB.
    pub max_frame_size: u64,
    /// Largest message (all fragments). Larger → close 1009. Default 1 MiB.
    pub max_message_size: u64,
    /// Most frames in one message, empty ones included. More → close 1008. Default 1024.
    pub max_fragments: u32,
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            max_frame_size: 1 << 20,
            max_message_size: 1 << 20,
            max_fragments: 1024,
        }
    }
}

/// Whether and how permessage-deflate (RFC 7692) is negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionMode {
    /// Never negotiate: the 101 carries no `Sec-WebSocket-Extensions`.
    Off,
    /// Negotiate, always answering `server_no_context_takeover; client_no_context_takeover`:
    /// no compression state outlives a message, so one compressor per window size and one
    /// decompressor per reactor serve every connection. Default.
    Shared,
    /// Negotiate what the client offers, context takeover included: each connection that
    /// keeps context owns its compressor and decompressor (better ratio, ~418 KiB).
    Dedicated,
}

/// permessage-deflate settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressionConfig {
    /// Default `Shared`.
    pub mode: CompressionMode,
    /// Outgoing messages shorter than this are sent uncompressed: every compressed message
    /// without context takeover costs a compressor reset (~8 µs, mostly clearing its 128 KiB
    /// hash table), and deflate shrinks JSON of 64 bytes to ~90%, of 256 bytes to ~50%
    /// (docs/benchmarks-deflate.md). Default 256 bytes.
    pub threshold: usize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            mode: CompressionMode::Shared,
            threshold: 256,
        }
    }
}

/// Every deadline the reactor's timer wheel enforces (DESIGN §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// From accept to a complete request head; a client that dribbles its request
    /// (slowloris) gets 408 and is closed. Default 10 s.
    pub handshake: Duration,
    /// Silence after which a WebSocket is dropped (the app sees 1006). Default 120 s.
    pub idle: Duration,
    /// How long before `idle` the server pings a silent peer: the ping goes out after
    /// `idle - ping_margin` of silence, and the peer has `ping_margin` to answer. Default
    /// 75 s, so the ping comes after 45 s, under nginx's 60 s `proxy_read_timeout`.
    pub ping_margin: Duration,
    /// After our close frame or FIN, how long a peer may take to finish; then it is
    /// dropped. Default 5 s.
    pub close_linger: Duration,
    /// Longest time one message may take from its first frame to its last; slower →
    /// close 1008. Default 60 s.
    pub message: Duration,
    /// On SIGTERM/SIGINT, how long to wait for closing handshakes before exiting. Default 10 s.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(10),
            idle: Duration::from_secs(120),
            ping_margin: Duration::from_secs(75),
            close_linger: Duration::from_secs(5),
            message: Duration::from_secs(60),
            drain: Duration::from_secs(10),
        }
    }
}

impl Timeouts {
    /// Silence before the heartbeat ping.
    pub fn ping_after(&self) -> Duration {
        self.idle.saturating_sub(self.ping_margin)
    }
}

/// Everything the server needs to run. Built by `cli.rs`; `Default` gives the documented
/// defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Most open client connections per worker; further ones are accepted and closed at once.
    /// Default 100,000 (the fd limit usually binds first).
    pub max_connections: usize,
    /// Size of each pooled rx/tx ring buffer; a power of two. Default 16 KiB.
    pub buffer_size: usize,
    /// Pooled buffers kept for reuse when connections drain; the rest are freed. Default 1024.
    pub pool_max_free: usize,
    /// Bytes queued for one connection beyond which the server stops reading from it (TCP
    /// backpressure on a client that sends faster than it reads). Default 1 MiB.
    pub max_queued_bytes: usize,
    /// Origins allowed to upgrade (exact match of the `Origin` header). Empty: any origin.
    pub allowed_origins: Vec<String>,
    /// Subprotocols the echo app accepts, in order of preference. Default none.
    pub subprotocols: Vec<String>,
    pub http: HttpLimits,
    pub ws: WsLimits,
    pub timeouts: Timeouts,
    pub compression: CompressionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 100_000,
            buffer_size: 16 * 1024,
            pool_max_free: 1024,
            max_queued_bytes: 1 << 20,
            allowed_origins: Vec::new(),
            subprotocols: Vec::new(),
            http: HttpLimits::default(),
            ws: WsLimits::default(),
            timeouts: Timeouts::default(),
            compression: CompressionConfig::default(),
        }
    }
}
