//! Owns the command line: every flag, its help text and its default, turned into a
//! `Config`. It parses; it does not run anything.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::config::{CompressionMode, Config};

/// wsloop — a WebSocket server on a hand-written, single-threaded epoll event loop.
///
/// Serves a WebSocket echo at ws://ADDR/echo (and ws://ADDR/). Logging goes to stderr and is
/// controlled by RUST_LOG (e.g. RUST_LOG=debug).
#[derive(Debug, Parser)]
#[command(name = "wsloop", version, about, long_about)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Most open connections; further ones get 503 and are closed.
    #[arg(long, default_value_t = 100_000)]
    pub max_connections: usize,

    /// Largest WebSocket message in bytes (all fragments together); larger → close 1009.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_message_size: u64,

    /// Largest WebSocket frame payload in bytes, checked before reading it; larger → close 1009.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_frame_size: u64,

    /// Most frames in one message, empty ones included; more → close 1008.
    #[arg(long, default_value_t = 1024)]
    pub max_fragments: u32,

    /// Bytes queued for one connection beyond which the server stops reading from it.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_queued_bytes: usize,

    /// Size of each pooled rx/tx ring buffer (rounded up to a power of two, at least 4096).
    #[arg(long, default_value_t = 16 * 1024)]
    pub buffer_size: usize,

    /// Longest HTTP request head (request line + headers); longer → 431.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Most HTTP header fields; more → 431.
    #[arg(long, default_value_t = 100)]
    pub max_headers: usize,

    /// Longest HTTP request line; longer → 414.
    #[arg(long, default_value_t = 8 * 1024)]
    pub max_request_line: usize,

    /// Most reads a request head may arrive in; more → 400.
    #[arg(long, default_value_t = 64)]
    pub max_head_reads: u32,

    /// Time from accept to a complete request head; then 408 (e.g. 10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Silence after which a WebSocket is dropped (the app sees 1006).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// The heartbeat ping goes out after (idle-timeout - ping-margin) of silence; the peer
    /// then has ping-margin to answer. The default pings after 45 s, under nginx's 60 s.
    #[arg(long, default_value = "75s", value_parser = parse_duration)]
    pub ping_margin: Duration,

    /// After the server's close frame or FIN, how long the peer may take to finish.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub close_linger: Duration,

    /// Longest time one message may take from its first frame to its last; then close 1008.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub message_timeout: Duration,

    /// On SIGTERM/SIGINT, how long to wait for closing handshakes before exiting.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Allow upgrades only from this Origin (repeat for several). Default: any origin.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,

    /// Subprotocol the echo app accepts, in order of preference (repeat for several).
    #[arg(long = "subprotocol", value_name = "NAME")]
    pub subprotocols: Vec<String>,

    /// permessage-deflate (RFC 7692): `off` never negotiates it; `shared` negotiates it
    /// without context takeover, so no compression state outlives a message (one compressor
    /// and decompressor per reactor serve every connection); `dedicated` also allows context
    /// takeover (better ratio, ~418 KiB of compressor and decompressor per such connection).
    #[arg(long, value_enum, default_value_t = Compression::Shared)]
    pub compression: Compression,

    /// Outgoing messages shorter than this are sent uncompressed.
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    pub compression_threshold: usize,
}

/// `--compression` values (see `config::CompressionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Off,
    Shared,
    Dedicated,
}

impl Cli {
    /// The configuration these flags describe, or a message naming the bad flag.
    pub fn into_config(self) -> Result<Config, String> {
        let mut cfg = Config {
            listen: self.listen,
            max_connections: self.max_connections,
            buffer_size: self.buffer_size.max(4096).next_power_of_two(),
            max_queued_bytes: self.max_queued_bytes,
            allowed_origins: self.allowed_origins,
            subprotocols: self.subprotocols,
            ..Config::default()
        };
        cfg.ws.max_message_size = self.max_message_size;
        cfg.ws.max_frame_size = self.max_frame_size.min(self.max_message_size);
        cfg.ws.max_fragments = self.max_fragments;
        cfg.http.max_header_bytes = self.max_header_bytes;
        cfg.http.max_headers = self.max_headers;
        cfg.http.max_request_line = self.max_request_line;
        cfg.http.max_head_reads = self.max_head_reads;
        cfg.timeouts.handshake = self.handshake_timeout;
        cfg.timeouts.idle = self.idle_timeout;
        cfg.timeouts.ping_margin = self.ping_margin;
        cfg.timeouts.close_linger = self.close_linger;
        cfg.timeouts.message = self.message_timeout;
        cfg.timeouts.drain = self.drain_timeout;
        cfg.compression.mode = match self.compression {
            Compression::Off => CompressionMode::Off,
            Compression::Shared => CompressionMode::Shared,
            Compression::Dedicated => CompressionMode::Dedicated,
        };
        cfg.compression.threshold = self.compression_threshold;
        if self.ping_margin >= self.idle_timeout {
            return Err("--ping-margin: must be shorter than --idle-timeout".into());
        }
        if cfg.buffer_size > 1 << 30 {
            return Err("--buffer-size: at most 1 GiB".into());
        }
        if self.max_fragments == 0 {
            return Err("--max-fragments: must be at least 1".into());
        }
        Ok(cfg)
    }
}

/// Parse a duration: a number with a unit of `ms`, `s`, `m` or `h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}': expected e.g. 500ms, 10s, 2m"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => return Err(format!("'{text}': unknown unit '{unit}' (ms, s, m, h)")),
    };
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn compression_flags() {
        let cfg = Cli::try_parse_from(["wsloop"])
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(cfg.compression, crate::config::CompressionConfig::default());
        let cfg = Cli::try_parse_from([
            "wsloop",
            "--compression",
            "dedicated",
            "--compression-threshold",
            "0",
        ])
        .unwrap()
        .into_config()
        .unwrap();
        assert_eq!(cfg.compression.mode, CompressionMode::Dedicated);
        assert_eq!(cfg.compression.threshold, 0);
        let off = Cli::try_parse_from(["wsloop", "--compression", "off"]).unwrap();
        assert_eq!(
            off.into_config().unwrap().compression.mode,
            CompressionMode::Off
        );
        assert!(Cli::try_parse_from(["wsloop", "--compression", "zstd"]).is_err());
    }

    #[test]
    fn bad_values_are_named() {
        let cli = Cli::try_parse_from(["wsloop", "--idle-timeout", "10s", "--ping-margin", "20s"]);
        let err = cli.unwrap().into_config().unwrap_err();
        assert!(err.contains("--ping-margin"), "{err}");
        let err = Cli::try_parse_from(["wsloop", "--idle-timeout", "ten"]).unwrap_err();
        assert!(err.to_string().contains("--idle-timeout"), "{err}");
    }
}
