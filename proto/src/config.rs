//! Owns `Config`: every limit and setting of the server, with its documented default, in one
//! place. Plain data; it parses nothing (cli.rs fills it from flags, `WSLOOP_*` variables and
//! a config file; `cli/keys.rs` maps each setting name to its field here) and performs
//! nothing.
//! Must not: parse, validate against the environment, or perform anything.

use std::net::SocketAddr;
use std::time::Duration;

use crate::cidr::Cidr;

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
    /// Largest request body (`POST /publish`), refused with 413 before it is read. Default
    /// 64 KiB.
    pub max_body: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_request_line: 8 * 1024,
            max_body: 64 * 1024,
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

/// Limits of the pub/sub hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubLimits {
    /// Most topics one connection may subscribe to. Default 128.
    pub max_topics_per_conn: usize,
    /// Longest topic name in bytes. Default 255.
    pub max_topic_len: usize,
    /// Messages each topic keeps for resumption (SSE, polling). Default 100.
    pub history_len: usize,
    /// Most topics one worker's hub holds (with subscribers, or kept for their history).
    /// When a new topic needs a slot, the idle topic published to least recently is evicted;
    /// with none idle, the subscription or publish is refused. Default 10,000.
    pub max_topics: usize,
    /// Most bytes of kept messages (`Published::kept_cost`: frame + ~100 B) over every
    /// topic's history in one worker's hub; past it the oldest messages go first, whatever
    /// their topic. Default 16 MiB.
    pub max_history_bytes: usize,
}

impl Default for PubSubLimits {
    fn default() -> Self {
        PubSubLimits {
            max_topics_per_conn: 128,
            max_topic_len: 255,
            history_len: 100,
            max_topics: 10_000,
            max_history_bytes: 16 << 20,
        }
    }
}

/// Slow consumers (the Redis `client-output-buffer-limit` model): what a connection may have
/// queued before it is closed with 1008.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowConsumer {
    /// Queued bytes that close a connection at once. Default 1 MiB.
    pub hard_limit: usize,
    /// Queued bytes that close a connection if it stays over them for `soft_for`. Default
    /// 256 KiB.
    pub soft_limit: usize,
    /// Default 10 s.
    pub soft_for: Duration,
    /// Queued bytes over all connections of the process beyond which a publish closes every
    /// subscriber that is over the soft limit. Default 256 MiB.
    pub process_limit: usize,
}

impl Default for SlowConsumer {
    fn default() -> Self {
        SlowConsumer {
            hard_limit: 1 << 20,
            soft_limit: 256 << 10,
            soft_for: Duration::from_secs(10),
            process_limit: 256 << 20,
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
    /// without context takeover costs a compressor reset (mostly clearing its 128 KiB hash
    /// table), and deflate shrinks short JSON little (both measured in
    /// docs/benchmarks-deflate.md). Default 256 bytes.
    pub threshold: usize,
    /// With `Dedicated`: most connections owning compression state (~420 KiB each) in the
    /// process; later ones negotiate as with `Shared`. The client chooses context takeover,
    /// so without this cap it would choose the server's memory. Default 1024 (~420 MiB).
    pub max_dedicated: usize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            mode: CompressionMode::Shared,
            threshold: 256,
            max_dedicated: 1024,
        }
    }
}

/// Where the Redis backplane is: `redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]`
/// (`cli/value.rs::parse_redis_url`). `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// A name or an address; a name is resolved once, at start-up.
    pub host: String,
    /// Default 6379.
    pub port: u16,
    /// The ACL user for `HELLO 3 AUTH` (Redis 6); none means `default`.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Selected after the handshake. Redis pub/sub ignores the database number (channels are
    /// global to the server), so it does not separate deployments: the prefix does.
    pub db: u32,
    /// More seed nodes of a Redis Cluster after the first (`redis://A:7000,B:7001`): any one
    /// of them answering is enough to learn the cluster's map.
    pub more: Vec<(String, u16)>,
    /// `rediss://`: TLS to Redis, its certificate verified for `host` (every node of a
    /// cluster's too) against `RedisConfig::ca`.
    pub tls: bool,
}

impl RedisUrl {
    /// The URL with the password replaced by `***`, for logs and `--print-config`.
    pub fn redacted(&self) -> String {
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (None, Some(_)) => ":***@".to_string(),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let db = if self.db == 0 {
            String::new()
        } else {
            format!("/{}", self.db)
        };
        let more: String = self
            .more
            .iter()
            .map(|(h, p)| match h.contains(':') {
                true => format!(",[{h}]:{p}"),
                false => format!(",{h}:{p}"),
            })
            .collect();
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{auth}{host}:{}{more}{db}", self.port)
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The Redis pub/sub backplane (docs/architecture.md, "The Redis link"): topics shared by
/// every node that names the same Redis and prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Default none: no backplane, topics are local to this process.
    pub url: Option<RedisUrl>,
    /// Prepended to a topic to name its Redis channel (`wsloop:news`), so several
    /// deployments can share one Redis. Default `wsloop:`.
    pub prefix: String,
    /// Deadline for connecting and the `HELLO` answer, and for the answer to a `PING` sent
    /// after this much silence from Redis. Default 2 s.
    pub timeout: Duration,
    /// Longest wait between reconnection attempts; the wait starts at 100 ms, doubles per
    /// failed attempt and is jittered (a random 50–100 % of it). Default 5 s.
    pub backoff_max: Duration,
    /// How long a channel stays subscribed after its last local subscriber left, so a
    /// long-poll client that polls again (or an SSE client that reconnects) within it misses
    /// nothing published on other nodes meanwhile. Default 30 s.
    pub linger: Duration,
    /// Bytes queued for Redis beyond which further publishes are dropped (and counted): a
    /// paused Redis must not grow the server without bound. Default 8 MiB.
    pub max_queued: usize,
    /// The URL names seed nodes of a Redis Cluster (`--redis-cluster`): one link per master,
    /// sharded pub/sub (Redis 7). Default false.
    pub cluster: bool,
    /// The CAs (PEM) a `rediss://` Redis's certificate must chain to; default none: the
    /// system's (`/etc/ssl/certs/ca-certificates.crt`).
    pub ca: Option<std::path::PathBuf>,
    /// How long a topic's log and numbering stay in Redis after its last publish (0: until
    /// trimmed or deleted). Default 1 day.
    pub log_ttl: Duration,
    /// Replicas that must have each publish before it is acknowledged (`WAIT`; 0: Redis's
    /// answer is enough), so a failover cannot lose what a 202 promised. Default 0.
    pub wait_replicas: u32,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            prefix: "wsloop:".to_string(),
            timeout: Duration::from_secs(2),
            backoff_max: Duration::from_secs(5),
            linger: Duration::from_secs(30),
            max_queued: 8 << 20,
            cluster: false,
            ca: None,
            log_ttl: Duration::from_secs(24 * 3600),
            wait_replicas: 0,
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
    /// How long a long poll is held waiting for a message before 204. Default 25 s (under
    /// the 30 s that browsers and proxies commonly allow an idle request).
    pub poll_hold: Duration,
    /// Interval of keep-alive comments on SSE and streaming responses, so proxies (nginx's
    /// 60 s `proxy_read_timeout`) never cut a quiet stream. Default 15 s.
    pub stream_keepalive: Duration,
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
            poll_hold: Duration::from_secs(25),
            stream_keepalive: Duration::from_secs(15),
        }
    }
}

impl Timeouts {
    /// Silence before the heartbeat ping.
    pub fn ping_after(&self) -> Duration {
        self.idle.saturating_sub(self.ping_margin)
    }
}

/// Where access tokens are verified from (`src/auth/`). With neither key file set, no token
/// is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// An HMAC secret (HS256, HS384, HS512): the file's bytes, a trailing newline aside.
    pub secret_file: Option<std::path::PathBuf>,
    /// A PEM public key (RS256/384/512, ES256/384, EdDSA).
    pub public_key_file: Option<std::path::PathBuf>,
    /// Required `aud` (empty: not checked).
    pub audience: String,
    /// Required `iss` (empty: not checked).
    pub issuer: String,
    /// A cookie that may carry the token (empty: none).
    pub cookie: String,
    /// Topic rules, `PATTERN [subscribe=anyone|token] [publish=anyone|token|server]`, the
    /// first that matches a topic deciding (docs/protocol.md "Topic rules").
    pub topic_rules: Vec<String>,
    /// The key backend publishers send as `Authorization: ApiKey KEY` on `POST /publish`.
    pub api_key_file: Option<std::path::PathBuf>,
    /// Verified tokens each worker remembers by hash until they expire (0: none).
    pub cache_entries: usize,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            secret_file: None,
            public_key_file: None,
            audience: String::new(),
            issuer: String::new(),
            cookie: String::new(),
            topic_rules: Vec::new(),
            api_key_file: None,
            cache_entries: AuthConfig::DEFAULT_CACHE_ENTRIES,
        }
    }
}

impl AuthConfig {
    /// Is a key configured, so that topics need tokens?
    pub fn enabled(&self) -> bool {
        self.secret_file.is_some() || self.public_key_file.is_some()
    }

    /// Verified tokens a worker remembers unless told otherwise.
    pub const DEFAULT_CACHE_ENTRIES: usize = 4096;
}

/// Everything the server needs to run. Built by `cli.rs`; `Default` gives the documented
/// defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Most open client connections over all workers (one process-wide count); further ones
    /// are accepted, answered 503 and closed at once. Default 100,000 (the fd limit usually
    /// binds first).
    pub max_connections: usize,
    /// Most open connections from one client address over all workers; further ones are
    /// answered 429 and closed. The client is the socket peer, or for a peer in
    /// `trust_proxy` the address its forwarding headers name (`http::forwarded`), counted
    /// while it has a request, stream or WebSocket open; trusted addresses themselves are
    /// never capped. 0 = no cap. Default 0: one host legitimately opening thousands (a
    /// proxy not yet in `trust_proxy`, a load generator, a NAT) must not be cut off by a
    /// default; docs/deployment.md §7 suggests values for the open internet.
    pub max_connections_per_ip: usize,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For`/`X-Real-IP`
    /// headers name the client, for the per-address cap and the logs. From any other peer
    /// those headers are ignored. Default none.
    pub trust_proxy: Vec<Cidr>,
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
    pub pubsub: PubSubLimits,
    pub slow: SlowConsumer,
    /// Reactors (threads), each with its own SO_REUSEPORT listener. Default: the number of
    /// cores (setting `workers = "auto"`); `Config::default()` itself says 1, for embedders
    /// and tests that run one reactor.
    pub workers: usize,
    /// Origins allowed to read the HTTP push endpoints from a browser (CORS); `*` allows any.
    /// Default none (same-origin only).
    pub cors_origins: Vec<String>,
    /// SSE `retry:` — how long a disconnected EventSource waits before reconnecting.
    /// Default 3 s.
    pub sse_retry: Duration,
    /// PEM certificate chain and private key: serve `wss://` and `https://` on the listener.
    /// Default none (plain `ws://`/`http://`).
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// Access tokens (JWT): who may read and write which topic. Default none (open).
    pub auth: AuthConfig,
    /// Refuse SSE, streaming and polling for topics that have no subscribers and no history
    /// (SSE gets 204, which tells EventSource to stop reconnecting). Default false.
    pub topics_must_exist: bool,
    pub compression: CompressionConfig,
    pub redis: RedisConfig,
    /// WebSocket handshakes each worker completes per second before it turns new ones away
    /// with close 1013 and a retry hint, so a reconnect storm queues as jittered retries.
    /// Default 0: no limit.
    pub max_handshake_rate: u32,
    /// On a graceful shutdown, each WebSocket's close 1001 carries a retry hint spread at
    /// random over this window, so clients do not all reconnect at once. Default 5 s.
    pub shutdown_spread: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 100_000,
            max_connections_per_ip: 0,
            trust_proxy: Vec::new(),
            buffer_size: 16 * 1024,
            pool_max_free: 1024,
            max_queued_bytes: 1 << 20,
            allowed_origins: Vec::new(),
            subprotocols: Vec::new(),
            http: HttpLimits::default(),
            ws: WsLimits::default(),
            timeouts: Timeouts::default(),
            pubsub: PubSubLimits::default(),
            slow: SlowConsumer::default(),
            workers: 1,
            cors_origins: Vec::new(),
            sse_retry: Duration::from_secs(3),
            topics_must_exist: false,
            tls_cert: None,
            tls_key: None,
            auth: AuthConfig::default(),
            compression: CompressionConfig::default(),
            redis: RedisConfig::default(),
            max_handshake_rate: 0,
            shutdown_spread: Duration::from_secs(5),
        }
    }
}
