//! fastwebsockets echo server: a comparison peer for wsloop benchmarks (hyper 1.x upgrade, single-threaded tokio runtime).
//!
//! Usage: `fastwebsockets-echo --port PORT`
//!
//! Listens on 127.0.0.1:PORT (PORT 0 picks a free port) and serves HTTP/1.1 with hyper.
//! A WebSocket upgrade is accepted on any path; anything else gets 400. Each upgraded
//! connection reassembles fragmented messages (`FragmentCollector`, which also validates
//! UTF-8 of text messages) and echoes every text/binary message back with the same opcode.
//! fastwebsockets answers pings (`auto_pong`) and the closing handshake (`auto_close`).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// Largest message accepted (fastwebsockets rejects payloads >= this size).
const MAX_SIZE: usize = 64 << 20;

fn parse_port() -> u16 {
    let usage = || -> ! {
        eprintln!("usage: fastwebsockets-echo --port PORT");
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

/// Echo loop for one upgraded connection.
async fn echo(pending: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = pending.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_max_message_size(MAX_SIZE);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            // auto_close has already sent the close reply; dropping the stream closes TCP.
            OpCode::Close => return Ok(()),
            _ => {}
        }
    }
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut resp = Response::new(Empty::new());
    *resp.status_mut() = code;
    resp
}

/// hyper service: upgrade WebSocket requests on any path, reject everything else.
async fn handle(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, hyper::Error> {
    if !upgrade::is_upgrade_request(&req) {
        return Ok(status(StatusCode::BAD_REQUEST));
    }
    match upgrade::upgrade(&mut req) {
        Ok((response, pending)) => {
            // The upgrade future resolves only after hyper has written `response`,
            // so the echo loop runs as its own task.
            tokio::spawn(async move {
                let _ = echo(pending).await;
            });
            Ok(response)
        }
        Err(_) => Ok(status(StatusCode::BAD_REQUEST)),
    }
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let conn = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service_fn(handle))
        .with_upgrades();
    let _ = conn.await;
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

    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream));
            }
            // e.g. EMFILE under a connection storm: keep serving existing connections.
            Err(e) => {
                eprintln!("accept error: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
