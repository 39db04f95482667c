//! Owns `SETTINGS`: the one table of every configurable setting. An entry names the setting
//! once (`max_message_size`); its flag (`--max-message-size`), environment variable
//! (`WSLOOP_MAX_MESSAGE_SIZE`) and config-file key (`max_message_size`) all derive from that
//! name, and its `Field` says how a value is parsed and which `Config` field it sets. To add a
//! setting: add the field (with its default) to `config.rs` and one entry here.
//! Must not: hold defaults or behaviour: one entry maps a name to a field, nothing more.

use std::net::SocketAddr;
use std::time::Duration;

use super::value::{self, COUNT_EXPECTED, DURATION_EXPECTED, SIZE_EXPECTED};
use crate::cidr::Cidr;
use crate::config::Config;

/// One configurable setting.
pub struct Setting {
    /// The config-file key; the flag replaces `_` with `-`, the environment variable is
    /// `WSLOOP_` + the name in capitals.
    pub name: &'static str,
    /// Section of `--help` and of the printed configuration.
    pub group: &'static str,
    pub value_name: &'static str,
    pub help: &'static str,
    pub field: Field,
}

/// How a setting's value is parsed, and the `Config` field it lands in. Each variant holds an
/// accessor, which both reads the field (for `--print-config`) and writes it.
pub enum Field {
    Addr(fn(&mut Config) -> &mut SocketAddr),
    /// A whole number.
    Count(fn(&mut Config) -> &mut usize),
    Count32(fn(&mut Config) -> &mut u32),
    /// Bytes, with an optional KiB/MiB/GiB suffix.
    Bytes(fn(&mut Config) -> &mut usize),
    Bytes64(fn(&mut Config) -> &mut u64),
    Duration(fn(&mut Config) -> &mut Duration),
    /// Repeatable flag; a TOML array of strings; comma-separated in the environment.
    List(fn(&mut Config) -> &mut Vec<String>),
    /// A positive number, or `auto` (stored as 0 until resolved): one worker per core.
    Workers(fn(&mut Config) -> &mut usize),
    /// `true`/`false` (also `yes`/`no`, `1`/`0`); a TOML boolean.
    Flag(fn(&mut Config) -> &mut bool),
    /// A file path; empty means none.
    Path(fn(&mut Config) -> &mut Option<std::path::PathBuf>),
    /// `off`, `shared` or `dedicated` (permessage-deflate).
    Compression(fn(&mut Config) -> &mut crate::config::CompressionMode),
    /// IP addresses and CIDR blocks: a repeatable flag whose values may also be
    /// comma-separated; a TOML array of strings; comma-separated in the environment.
    Blocks(fn(&mut Config) -> &mut Vec<Cidr>),
    /// A string, taken as it is.
    Text(fn(&mut Config) -> &mut String),
    /// A `redis://` URL; empty means none.
    Redis(fn(&mut Config) -> &mut Option<crate::config::RedisUrl>),
}

/// A value as a source supplies it.
pub enum Input<'a> {
    /// From a flag, an environment variable, or a TOML string.
    Text(&'a str),
    /// A TOML integer.
    Int(i64),
    /// Several strings: a repeated flag or a TOML array.
    Many(Vec<String>),
    /// Any other TOML value, as TOML text (for the error message).
    Other(String),
}

impl Setting {
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }

    pub fn env_var(&self) -> String {
        format!("WSLOOP_{}", self.name.to_ascii_uppercase())
    }

    pub fn is_list(&self) -> bool {
        matches!(self.field, Field::List(_) | Field::Blocks(_))
    }
}

impl Field {
    fn expected(&self) -> &'static str {
        match self {
            Field::Addr(_) => value::ADDR_EXPECTED,
            Field::Count(_) | Field::Count32(_) => COUNT_EXPECTED,
            Field::Bytes(_) | Field::Bytes64(_) => SIZE_EXPECTED,
            Field::Duration(_) => DURATION_EXPECTED,
            Field::List(_) => "a list of strings",
            Field::Workers(_) => "a number of workers from 1 to 256, or \"auto\"",
            Field::Flag(_) => "true or false",
            Field::Path(_) => "a file path",
            Field::Compression(_) => "off, shared or dedicated",
            Field::Blocks(_) => "IP addresses or CIDR blocks (e.g. 127.0.0.1, ::1, 10.0.0.0/8)",
            Field::Text(_) => "a string",
            Field::Redis(_) => value::REDIS_EXPECTED,
        }
    }

    /// Parse `input` and store it in `cfg`, or say what was wrong with it.
    pub fn set(&self, cfg: &mut Config, input: Input<'_>) -> Result<(), String> {
        // Text is parsed by the value's own parser; a TOML integer is a number of bytes,
        // seconds or things; anything else is the wrong type.
        let got = match &input {
            Input::Text(t) => format!("{t:?}"),
            Input::Int(i) => i.to_string(),
            Input::Many(v) => format!("{v:?}"),
            Input::Other(s) => s.clone(),
        };
        let wrong = || format!("expected {}, got {got}", self.expected());
        let number = |parse: fn(&str) -> Result<u64, String>| match &input {
            Input::Text(t) => parse(t),
            Input::Int(i) => u64::try_from(*i).map_err(|_| wrong()),
            _ => Err(wrong()),
        };
        match self {
            Field::Addr(f) => match input {
                Input::Text(t) => *f(cfg) = value::parse_addr(t)?,
                _ => return Err(wrong()),
            },
            Field::Count(f) => *f(cfg) = to_usize(number(value::parse_count)?)?,
            Field::Count32(f) => *f(cfg) = to_u32(number(value::parse_count)?)?,
            Field::Bytes(f) => *f(cfg) = to_usize(number(value::parse_size)?)?,
            Field::Bytes64(f) => *f(cfg) = number(value::parse_size)?,
            Field::Duration(f) => {
                *f(cfg) = match input {
                    Input::Text(t) => value::parse_duration(t)?,
                    Input::Int(i) => Duration::from_secs(u64::try_from(i).map_err(|_| wrong())?),
                    _ => return Err(wrong()),
                }
            }
            Field::List(f) => {
                *f(cfg) = match input {
                    // The environment's form: comma-separated (origins and subprotocol
                    // names cannot contain commas).
                    Input::Text(t) => t
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                    Input::Many(v) => v,
                    _ => return Err(wrong()),
                }
            }
            Field::Workers(f) => {
                let n = match input {
                    Input::Text(t) if t.trim().eq_ignore_ascii_case("auto") => {
                        *f(cfg) = 0; // resolved to the number of cores once all sources are in
                        return Ok(());
                    }
                    Input::Text(t) => value::parse_count(t).map_err(|_| wrong())?,
                    Input::Int(i) => u64::try_from(i).map_err(|_| wrong())?,
                    _ => return Err(wrong()),
                };
                if n == 0 {
                    return Err("must be at least 1 (\"auto\" is one per core)".into());
                }
                // A connection's id carries its worker's index in one byte.
                if n > 256 {
                    return Err("must be at most 256".into());
                }
                *f(cfg) = to_usize(n)?;
            }
            Field::Flag(f) => {
                let text = match &input {
                    Input::Text(t) => t.trim().to_ascii_lowercase(),
                    Input::Other(t) => t.trim().to_string(), // a TOML boolean
                    _ => return Err(wrong()),
                };
                *f(cfg) = match text.as_str() {
                    "true" | "yes" | "1" => true,
                    "false" | "no" | "0" => false,
                    _ => return Err(wrong()),
                };
            }
            Field::Compression(f) => {
                use crate::config::CompressionMode;
                *f(cfg) = match input {
                    Input::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                        "off" => CompressionMode::Off,
                        "shared" => CompressionMode::Shared,
                        "dedicated" => CompressionMode::Dedicated,
                        _ => return Err(wrong()),
                    },
                    _ => return Err(wrong()),
                }
            }
            Field::Path(f) => match input {
                Input::Text(t) if t.trim().is_empty() => *f(cfg) = None,
                Input::Text(t) => *f(cfg) = Some(std::path::PathBuf::from(t)),
                _ => return Err(wrong()),
            },
            Field::Blocks(f) => {
                let items: Vec<String> = match input {
                    Input::Text(t) => vec![t.to_string()],
                    Input::Many(v) => v,
                    _ => return Err(wrong()),
                };
                // Each item may itself be a comma-separated list (`--trust-proxy a,b`).
                let blocks = items
                    .iter()
                    .flat_map(|i| i.split(','))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        Cidr::parse(s).map_err(|why| {
                            format!("expected {}, got {s:?} ({why})", self.expected())
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                *f(cfg) = blocks;
            }
            Field::Text(f) => match input {
                Input::Text(t) => *f(cfg) = t.to_string(),
                _ => return Err(wrong()),
            },
            Field::Redis(f) => match input {
                Input::Text(t) => *f(cfg) = value::parse_redis_url(t)?,
                _ => return Err(wrong()),
            },
        }
        Ok(())
    }

    /// The field's value in `cfg` as a TOML value, and a note for humans (e.g. `1 MiB`).
    pub fn show(&self, cfg: &mut Config) -> (String, Option<String>) {
        match self {
            Field::Addr(f) => (value::toml_string(&f(cfg).to_string()), None),
            Field::Count(f) => (f(cfg).to_string(), None),
            Field::Count32(f) => (f(cfg).to_string(), None),
            Field::Bytes(f) => {
                let n = *f(cfg) as u64;
                (n.to_string(), value::human_size(n))
            }
            Field::Bytes64(f) => {
                let n = *f(cfg);
                (n.to_string(), value::human_size(n))
            }
            Field::Duration(f) => (value::toml_string(&value::format_duration(*f(cfg))), None),
            Field::List(f) => {
                let items: Vec<String> = f(cfg).iter().map(|s| value::toml_string(s)).collect();
                (format!("[{}]", items.join(", ")), None)
            }
            Field::Workers(f) => match *f(cfg) {
                0 => (value::toml_string("auto"), None),
                n => (n.to_string(), None),
            },
            Field::Flag(f) => (f(cfg).to_string(), None),
            Field::Compression(f) => {
                use crate::config::CompressionMode;
                let name = match *f(cfg) {
                    CompressionMode::Off => "off",
                    CompressionMode::Shared => "shared",
                    CompressionMode::Dedicated => "dedicated",
                };
                (value::toml_string(name), None)
            }
            Field::Path(f) => match f(cfg) {
                Some(p) => (value::toml_string(&p.display().to_string()), None),
                None => (value::toml_string(""), Some("none".into())),
            },
            Field::Blocks(f) => {
                let items: Vec<String> = f(cfg)
                    .iter()
                    .map(|b| value::toml_string(&b.to_string()))
                    .collect();
                (format!("[{}]", items.join(", ")), None)
            }
            Field::Text(f) => (value::toml_string(f(cfg)), None),
            // The password never appears in printed configuration.
            Field::Redis(f) => match f(cfg) {
                Some(u) if u.password.is_some() => (
                    value::toml_string(&u.redacted()),
                    Some("password hidden".into()),
                ),
                Some(u) => (value::toml_string(&u.redacted()), None),
                None => (
                    value::toml_string(""),
                    Some("none: topics stay on this node".into()),
                ),
            },
        }
    }
}

fn to_usize(n: u64) -> Result<usize, String> {
    usize::try_from(n).map_err(|_| format!("{n} is too large"))
}

fn to_u32(n: u64) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("{n} is too large (at most {})", u32::MAX))
}

const SERVER: &str = "Server";
const WS: &str = "WebSocket limits";
const HTTP: &str = "HTTP limits";
const TIMEOUTS: &str = "Timeouts";
const PUBSUB: &str = "Pub/sub";
const SLOW: &str = "Slow consumers";
const PUSH: &str = "HTTP push (SSE, streaming, polling)";
const TLS: &str = "TLS";
const REDIS: &str = "Redis backplane";
const AUTH: &str = "Access tokens";

/// Every setting, in the order of `--help` and `--print-config`.
pub static SETTINGS: &[Setting] = &[
    Setting {
        name: "listen",
        group: SERVER,
        value_name: "ADDR",
        help: "Address to listen on (port 0 picks a free port; the chosen one is printed).",
        field: Field::Addr(|c| &mut c.listen),
    },
    Setting {
        name: "workers",
        group: SERVER,
        value_name: "N",
        help: "Reactors (threads), each with its own SO_REUSEPORT listener; \"auto\" is one \
               per core.",
        field: Field::Workers(|c| &mut c.workers),
    },
    Setting {
        name: "max_connections",
        group: SERVER,
        value_name: "N",
        help: "Most open connections over all workers; further ones get 503 and are closed. \
               The default is lowered to the open-file limit less a reserve.",
        field: Field::Count(|c| &mut c.max_connections),
    },
    Setting {
        name: "max_handshake_rate",
        group: SERVER,
        value_name: "N",
        help: "WebSocket handshakes each worker completes per second; past it new ones are \
               closed with 1013 and a retry-after-ms hint that spreads them out (0 = no limit).",
        field: Field::Count32(|c| &mut c.max_handshake_rate),
    },
    Setting {
        name: "shutdown_spread",
        group: SERVER,
        value_name: "DURATION",
        help: "On a graceful shutdown, the window the retry hints of the 1001 closes are \
               spread over, so clients do not all reconnect at once.",
        field: Field::Duration(|c| &mut c.shutdown_spread),
    },
    Setting {
        name: "max_connections_per_ip",
        group: SERVER,
        value_name: "N",
        help: "Most open connections from one client address over all workers; further ones \
               get 429 and are closed. Behind a proxy, set trust_proxy so clients are counted \
               by their own address. 0 = no cap.",
        field: Field::Count(|c| &mut c.max_connections_per_ip),
    },
    Setting {
        name: "trust_proxy",
        group: SERVER,
        value_name: "ADDR[,CIDR...]",
        help: "Reverse proxies (addresses or CIDR blocks) whose X-Forwarded-For (right-most \
               untrusted address) or X-Real-IP names the client for the per-address cap and \
               the logs; from other peers these headers are ignored.",
        field: Field::Blocks(|c| &mut c.trust_proxy),
    },
    Setting {
        name: "max_queued_bytes",
        group: SERVER,
        value_name: "BYTES",
        help: "Bytes queued for one connection beyond which the server stops reading from it.",
        field: Field::Bytes(|c| &mut c.max_queued_bytes),
    },
    Setting {
        name: "buffer_size",
        group: SERVER,
        value_name: "BYTES",
        help: "Size of each pooled rx/tx ring buffer (rounded up to a power of two, at least \
               4 KiB, at most 1 GiB).",
        field: Field::Bytes(|c| &mut c.buffer_size),
    },
    Setting {
        name: "pool_max_free",
        group: SERVER,
        value_name: "N",
        help: "Pooled ring buffers kept for reuse when connections go idle; the rest are freed.",
        field: Field::Count(|c| &mut c.pool_max_free),
    },
    Setting {
        name: "allowed_origin",
        group: SERVER,
        value_name: "ORIGIN",
        help: "Allow upgrades only from this Origin (repeat for several); none allows any origin.",
        field: Field::List(|c| &mut c.allowed_origins),
    },
    Setting {
        name: "subprotocol",
        group: SERVER,
        value_name: "NAME",
        help: "Subprotocol the echo app accepts, in order of preference (repeat for several).",
        field: Field::List(|c| &mut c.subprotocols),
    },
    Setting {
        name: "max_message_size",
        group: WS,
        value_name: "BYTES",
        help: "Largest WebSocket message (all fragments together); larger → close 1009.",
        field: Field::Bytes64(|c| &mut c.ws.max_message_size),
    },
    Setting {
        name: "max_frame_size",
        group: WS,
        value_name: "BYTES",
        help: "Largest WebSocket frame payload, checked before reading it (at most \
               max_message_size); larger → close 1009.",
        field: Field::Bytes64(|c| &mut c.ws.max_frame_size),
    },
    Setting {
        name: "max_fragments",
        group: WS,
        value_name: "N",
        help: "Most frames in one message, empty ones included; more → close 1008.",
        field: Field::Count32(|c| &mut c.ws.max_fragments),
    },
    Setting {
        name: "max_header_bytes",
        group: HTTP,
        value_name: "BYTES",
        help: "Longest HTTP request head (request line + headers); longer → 431.",
        field: Field::Bytes(|c| &mut c.http.max_header_bytes),
    },
    Setting {
        name: "max_headers",
        group: HTTP,
        value_name: "N",
        help: "Most HTTP header fields; more → 431.",
        field: Field::Count(|c| &mut c.http.max_headers),
    },
    Setting {
        name: "max_request_line",
        group: HTTP,
        value_name: "BYTES",
        help: "Longest HTTP request line; longer → 414.",
        field: Field::Bytes(|c| &mut c.http.max_request_line),
    },
    Setting {
        name: "handshake_timeout",
        group: TIMEOUTS,
        value_name: "DURATION",
        help: "Time from accept to a complete request head; then 408.",
        field: Field::Duration(|c| &mut c.timeouts.handshake),
    },
    Setting {
        name: "idle_timeout",
        group: TIMEOUTS,
        value_name: "DURATION",
        help: "Silence after which a WebSocket is dropped (the app sees 1006).",
        field: Field::Duration(|c| &mut c.timeouts.idle),
    },
    Setting {
        name: "ping_margin",
        group: TIMEOUTS,
        value_name: "DURATION",
        help: "The heartbeat ping goes out after (idle_timeout - ping_margin) of silence; the \
               peer then has ping_margin to answer. Must be shorter than idle_timeout.",
        field: Field::Duration(|c| &mut c.timeouts.ping_margin),
    },
    Setting {
        name: "close_linger",
        group: TIMEOUTS,
        value_name: "DURATION",
        help: "After the server's close frame or FIN, how long the peer may take to finish.",
        field: Field::Duration(|c| &mut c.timeouts.close_linger),
    },
    Setting {
        name: "message_timeout",
        group: TIMEOUTS,
        value_name: "DURATION",
        help: "Longest time one message may take from its first frame to its last; then \
               close 1008.",
        field: Field::Duration(|c| &mut c.timeouts.message),
    },
    Setting {
        name: "drain_timeout",
        group: TIMEOUTS,
        value_name: "DURATION",
        help: "On SIGTERM/SIGINT, how long to wait for closing handshakes before exiting.",
        field: Field::Duration(|c| &mut c.timeouts.drain),
    },
    Setting {
        name: "history_len",
        group: PUBSUB,
        value_name: "N",
        help: "Messages each topic keeps for resumption by SSE and polling clients.",
        field: Field::Count(|c| &mut c.pubsub.history_len),
    },
    Setting {
        name: "max_topics_per_conn",
        group: PUBSUB,
        value_name: "N",
        help: "Most topics one connection may subscribe to.",
        field: Field::Count(|c| &mut c.pubsub.max_topics_per_conn),
    },
    Setting {
        name: "max_topics",
        group: PUBSUB,
        value_name: "N",
        help: "Most topics each worker holds; when full, the idle topic (no subscribers) \
               published to least recently is evicted, and with none idle new topics are \
               refused (close 1008, HTTP 503).",
        field: Field::Count(|c| &mut c.pubsub.max_topics),
    },
    Setting {
        name: "max_history_bytes",
        group: PUBSUB,
        value_name: "BYTES",
        help: "Most bytes of kept messages over all topic histories of a worker; past it the \
               oldest messages are dropped first.",
        field: Field::Bytes(|c| &mut c.pubsub.max_history_bytes),
    },
    Setting {
        name: "max_topic_len",
        group: PUBSUB,
        value_name: "BYTES",
        help: "Longest topic name in bytes.",
        field: Field::Bytes(|c| &mut c.pubsub.max_topic_len),
    },
    Setting {
        name: "slow_hard_limit",
        group: SLOW,
        value_name: "BYTES",
        help: "A subscriber with more queued bytes than this is closed at once (1008).",
        field: Field::Bytes(|c| &mut c.slow.hard_limit),
    },
    Setting {
        name: "slow_soft_limit",
        group: SLOW,
        value_name: "BYTES",
        help: "A subscriber over this many queued bytes for slow_soft_for is closed (1008).",
        field: Field::Bytes(|c| &mut c.slow.soft_limit),
    },
    Setting {
        name: "slow_soft_for",
        group: SLOW,
        value_name: "DURATION",
        help: "How long a subscriber may stay over slow_soft_limit.",
        field: Field::Duration(|c| &mut c.slow.soft_for),
    },
    Setting {
        name: "max_queued_total",
        group: SLOW,
        value_name: "BYTES",
        help: "Queued bytes over the whole process beyond which subscribers over the soft \
               limit are closed at once.",
        field: Field::Bytes(|c| &mut c.slow.process_limit),
    },
    Setting {
        name: "max_body",
        group: HTTP,
        value_name: "BYTES",
        help: "Largest HTTP request body (POST /publish); larger → 413 before it is read.",
        field: Field::Bytes(|c| &mut c.http.max_body),
    },
    Setting {
        name: "poll_hold",
        group: TIMEOUTS,
        value_name: "DURATION",
        help: "How long a long poll is held waiting for a message before 204.",
        field: Field::Duration(|c| &mut c.timeouts.poll_hold),
    },
    Setting {
        name: "stream_keepalive",
        group: TIMEOUTS,
        value_name: "DURATION",
        help: "Interval of keep-alive comments on SSE and streaming responses.",
        field: Field::Duration(|c| &mut c.timeouts.stream_keepalive),
    },
    Setting {
        name: "sse_retry",
        group: PUSH,
        value_name: "DURATION",
        help: "SSE `retry:` sent to EventSource clients (how long they wait to reconnect).",
        field: Field::Duration(|c| &mut c.sse_retry),
    },
    Setting {
        name: "cors_origin",
        group: PUSH,
        value_name: "ORIGIN",
        help: "Origin allowed to use the HTTP push endpoints from a browser (CORS); `*` for \
               any (repeat for several).",
        field: Field::List(|c| &mut c.cors_origins),
    },
    Setting {
        name: "topics_must_exist",
        group: PUSH,
        value_name: "BOOL",
        help: "Refuse SSE, streaming and polling for unknown topics (SSE gets 204).",
        field: Field::Flag(|c| &mut c.topics_must_exist),
    },
    Setting {
        name: "compression",
        group: WS,
        value_name: "MODE",
        help: "permessage-deflate (RFC 7692): off; shared (no context takeover, no state \
               kept between messages); dedicated (context takeover, ~400 KiB per connection).",
        field: Field::Compression(|c| &mut c.compression.mode),
    },
    Setting {
        name: "compression_threshold",
        group: WS,
        value_name: "BYTES",
        help: "Outgoing messages shorter than this are sent uncompressed.",
        field: Field::Bytes(|c| &mut c.compression.threshold),
    },
    Setting {
        name: "compression_max_dedicated",
        group: WS,
        value_name: "N",
        help: "With --compression dedicated: most connections holding their own compression \
               state; later ones get no context takeover (no state).",
        field: Field::Count(|c| &mut c.compression.max_dedicated),
    },
    Setting {
        name: "tls_cert",
        group: TLS,
        value_name: "FILE",
        help: "PEM certificate chain: serve wss:// and https:// (needs tls_key).",
        field: Field::Path(|c| &mut c.tls_cert),
    },
    Setting {
        name: "tls_key",
        group: TLS,
        value_name: "FILE",
        help: "PEM private key for tls_cert.",
        field: Field::Path(|c| &mut c.tls_key),
    },
    Setting {
        name: "token_secret_file",
        group: AUTH,
        value_name: "FILE",
        help: "HMAC secret (HS256/384/512) that signs access tokens (JWT): every topic then \
               needs a token granting it.",
        field: Field::Path(|c| &mut c.auth.secret_file),
    },
    Setting {
        name: "token_public_key_file",
        group: AUTH,
        value_name: "FILE",
        help: "PEM public key (RS256/384/512, ES256/384, EdDSA) that verifies access tokens.",
        field: Field::Path(|c| &mut c.auth.public_key_file),
    },
    Setting {
        name: "token_audience",
        group: AUTH,
        value_name: "AUD",
        help: "Accept only tokens whose aud claim names this audience.",
        field: Field::Text(|c| &mut c.auth.audience),
    },
    Setting {
        name: "token_issuer",
        group: AUTH,
        value_name: "ISS",
        help: "Accept only tokens whose iss claim is this issuer.",
        field: Field::Text(|c| &mut c.auth.issuer),
    },
    Setting {
        name: "token_cookie",
        group: AUTH,
        value_name: "NAME",
        help: "A cookie that may carry the token (besides Authorization: Bearer and ?token=).",
        field: Field::Text(|c| &mut c.auth.cookie),
    },
    Setting {
        name: "topic_rule",
        group: AUTH,
        value_name: "RULE",
        help: "Who may use the topics a pattern matches: `PATTERN [subscribe=anyone|token] \
               [publish=anyone|token|server]`; the first matching rule decides, and what a \
               rule does not say is the default (token with a key, else anyone). Repeatable.",
        field: Field::List(|c| &mut c.auth.topic_rules),
    },
    Setting {
        name: "api_key_file",
        group: AUTH,
        value_name: "FILE",
        help: "A key for backend publishers: POST /publish with `Authorization: ApiKey KEY` \
               may publish to any topic but a handler's own (publish=server ones included).",
        field: Field::Path(|c| &mut c.auth.api_key_file),
    },
    Setting {
        name: "token_cache",
        group: AUTH,
        value_name: "N",
        help: "Verified tokens each worker remembers by their SHA-256 until they expire, so a \
               reconnect storm does not check the same signatures again (0: none).",
        field: Field::Count(|c| &mut c.auth.cache_entries),
    },
    Setting {
        name: "redis",
        group: REDIS,
        value_name: "URL",
        help: "Share topics with every node on this Redis (pub/sub, RESP3: Redis 6 or later): \
               redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB] (rediss: TLS). Empty: topics stay on \
               this node.",
        field: Field::Redis(|c| &mut c.redis.url),
    },
    Setting {
        name: "redis_prefix",
        group: REDIS,
        value_name: "TEXT",
        help: "Prepended to a topic to name its Redis channel, so deployments can share a Redis.",
        field: Field::Text(|c| &mut c.redis.prefix),
    },
    Setting {
        name: "redis_timeout",
        group: REDIS,
        value_name: "DURATION",
        help: "Deadline to connect to Redis and get its HELLO answer; also how long a PING sent \
               after that much silence may go unanswered before the link is dropped.",
        field: Field::Duration(|c| &mut c.redis.timeout),
    },
    Setting {
        name: "redis_backoff_max",
        group: REDIS,
        value_name: "DURATION",
        help: "Longest wait between reconnection attempts (from 100 ms, doubling, jittered).",
        field: Field::Duration(|c| &mut c.redis.backoff_max),
    },
    Setting {
        name: "redis_linger",
        group: REDIS,
        value_name: "DURATION",
        help: "How long a Redis channel stays subscribed after its last local subscriber left.",
        field: Field::Duration(|c| &mut c.redis.linger),
    },
    Setting {
        name: "redis_max_queued",
        group: REDIS,
        value_name: "BYTES",
        help: "Bytes queued for Redis beyond which publishes are dropped (and counted).",
        field: Field::Bytes(|c| &mut c.redis.max_queued),
    },
    Setting {
        name: "redis_cluster",
        group: REDIS,
        value_name: "BOOL",
        help: "--redis names seed nodes of a Redis Cluster (redis://A:7000,B:7001; Redis 7): \
               one link per master, sharded pub/sub, MOVED/ASK followed.",
        field: Field::Flag(|c| &mut c.redis.cluster),
    },
    Setting {
        name: "redis_log_ttl",
        group: REDIS,
        value_name: "DURATION",
        help: "How long a topic's log and numbering stay in Redis after its last publish (0: \
               until trimmed); a topic published again later starts a new epoch.",
        field: Field::Duration(|c| &mut c.redis.log_ttl),
    },
    Setting {
        name: "redis_wait_replicas",
        group: REDIS,
        value_name: "N",
        help: "Replicas that must have a publish before it is acknowledged (WAIT after each \
               batch), so a failover cannot lose what a 202 promised (0: Redis's answer).",
        field: Field::Count32(|c| &mut c.redis.wait_replicas),
    },
    Setting {
        name: "redis_tls_ca",
        group: REDIS,
        value_name: "FILE",
        help: "CA certificates (PEM) a rediss:// Redis's certificate must chain to. Empty: the \
               system's (/etc/ssl/certs/ca-certificates.crt).",
        field: Field::Path(|c| &mut c.redis.ca),
    },
];

/// The setting called `name`.
pub fn find(name: &str) -> Option<(usize, &'static Setting)> {
    SETTINGS.iter().enumerate().find(|(_, s)| s.name == name)
}

/// The known name closest to an unknown one, to suggest for a typo: the same name with
/// `-` for `_` or other capitals, or one within two edits.
pub fn suggest<'a>(unknown: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let norm = unknown.to_ascii_lowercase().replace('-', "_");
    names
        .map(|n| (edit_distance(&norm, &n.to_ascii_lowercase()), n))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance over bytes (names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        for (i, s) in SETTINGS.iter().enumerate() {
            assert!(
                s.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                s.name
            );
            assert_eq!(find(s.name).map(|(j, _)| j), Some(i), "{} twice", s.name);
        }
    }

    #[test]
    fn typos_get_suggestions() {
        let names = || SETTINGS.iter().map(|s| s.name);
        assert_eq!(
            suggest("max-message-size", names()),
            Some("max_message_size")
        );
        assert_eq!(suggest("idle_timout", names()), Some("idle_timeout"));
        assert_eq!(suggest("MAX_HEADERS", names()), Some("max_headers"));
        assert_eq!(suggest("colour", names()), None);
    }
}
