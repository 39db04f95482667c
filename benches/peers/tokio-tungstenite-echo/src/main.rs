//! tokio-tungstenite echo server: a comparison peer for wsloop benchmarks (single-threaded tokio runtime).
//!
//! Usage: `tokio-tungstenite-echo --port PORT`
//!
//! Listens on 127.0.0.1:PORT (PORT 0 picks a free port), accepts a WebSocket upgrade on
//! any path, echoes every text/binary message back with the same opcode, and lets
//! tungstenite answer pings and the closing handshake. Outgoing messages are buffered
//! and flushed once no further inbound message is immediately available, so pipelined
//! traffic is written in batches rather than one syscall per message.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::task::Poll;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Largest message and frame accepted (tungstenite defaults are 64 MiB / 16 MiB).
const MAX_SIZE: usize = 64 << 20;

fn parse_port() -> u16 {
    let usage = || -> ! {
        eprintln!("usage: tokio-tungstenite-echo --port PORT");
        std::process::exit(2);
    };
    let mut args = std::env::args().skip(1);
    let mut port = None;
    while let Some(arg) = args.next() {
        let value = if arg == "--port" {
            args.next().unwrap_or_else(|| usage())
        } else if let Some(v) = arg.strip_prefix("--port=") {
            v.to_owned()
        } else {
            usage()
        };
        port = Some(value.parse::<u16>().unwrap_or_else(|_| usage()));
    }
    port.unwrap_or_else(|| usage())
}

async fn serve(stream: TcpStream, config: WebSocketConfig) {
    let _ = stream.set_nodelay(true);
    let mut ws = match tokio_tungstenite::accept_async_with_config(stream, Some(config)).await {
        Ok(ws) => ws,
        Err(_) => return,
    };
    loop {
        // Take the next message if one is ready; otherwise flush what has been queued
        // before waiting, so replies never sit in the write buffer while we sleep.
        let next = match futures_util::poll!(ws.next()) {
            Poll::Ready(item) => item,
            Poll::Pending => {
                if ws.flush().await.is_err() {
                    return;
                }
                ws.next().await
            }
        };
        match next {
            Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                if ws.feed(msg).await.is_err() {
                    return;
                }
            }
            Some(Ok(Message::Close(_))) => {
                // tungstenite has queued the close reply; flushing writes it (after any
                // echoes still buffered) and completes the handshake. Dropping closes TCP.
                let _ = ws.flush().await;
                return;
            }
            // Pings are answered automatically on the next read/flush; pongs are ignored.
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port = parse_port();
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let local = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {local}")?;
        out.flush()?;
    }

    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_SIZE))
        .max_frame_size(Some(MAX_SIZE));

    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, config));
            }
            // e.g. EMFILE under a connection storm: keep serving existing connections.
            Err(e) => {
                eprintln!("accept error: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
