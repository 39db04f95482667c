//! Owns the command line: every flag, its help text and its default, turned into a
//! `Config`. It parses; it does not run anything.

use std::net::SocketAddr;

use clap::Parser;

use crate::config::Config;

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

    /// Allow upgrades only from this Origin (repeat for several). Default: any origin.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,

    /// Subprotocol the echo app accepts, in order of preference (repeat for several).
    #[arg(long = "subprotocol", value_name = "NAME")]
    pub subprotocols: Vec<String>,
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
        if cfg.buffer_size > 1 << 30 {
            return Err("--buffer-size: at most 1 GiB".into());
        }
        if self.max_fragments == 0 {
            return Err("--max-fragments: must be at least 1".into());
        }
        Ok(cfg)
    }
}
