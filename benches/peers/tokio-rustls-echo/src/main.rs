//! tokio-rustls echo server: the wss:// comparison peer for wsloop benchmarks (single-threaded tokio runtime).
//!
//! Usage: `tokio-rustls-echo --port PORT --cert PEM --key PEM`
//!
//! Listens on 127.0.0.1:PORT (PORT 0 picks a free port), runs a TLS 1.3 handshake with
//! tokio-rustls (rustls' ring provider, as wsloop; ALPN `http/1.1`; rustls' default session
//! cache and TLS 1.3 tickets, as wsloop), then accepts a WebSocket upgrade on any path with
//! tokio-tungstenite over the TLS stream and echoes every text/binary message back with the
//! same opcode. Pings and the closing handshake are left to tungstenite. Outgoing messages are
//! buffered and flushed once no further inbound message is immediately available, so pipelined
//! traffic is encrypted and written in batches rather than one record and syscall per message.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::task::Poll;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Largest message and frame accepted (tungstenite defaults are 64 MiB / 16 MiB).
const MAX_SIZE: usize = 64 << 20;

struct Args {
    port: u16,
    cert: PathBuf,
    key: PathBuf,
}

fn parse_args() -> Args {
    let usage = || -> ! {
        eprintln!("usage: tokio-rustls-echo --port PORT --cert PEM --key PEM");
        std::process::exit(2);
    };
    let mut args = std::env::args().skip(1);
    let (mut port, mut cert, mut key) = (None, None, None);
    while let Some(arg) = args.next() {
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => (arg.clone(), args.next().unwrap_or_else(|| usage())),
        };
        match name.as_str() {
            "--port" => port = Some(value.parse::<u16>().unwrap_or_else(|_| usage())),
            "--cert" => cert = Some(PathBuf::from(value)),
            "--key" => key = Some(PathBuf::from(value)),
            _ => usage(),
        }
    }
    match (port, cert, key) {
        (Some(port), Some(cert), Some(key)) => Args { port, cert, key },
        _ => usage(),
    }
}

/// The server configuration: what wsloop's `tls::load` builds (ring provider, no client
/// auth, one certificate chain, ALPN http/1.1, rustls' defaults for resumption), TLS 1.3 only.
fn tls_config(cert: &PathBuf, key: &PathBuf) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

async fn serve(stream: TcpStream, acceptor: TlsAcceptor, config: WebSocketConfig) {
    let _ = stream.set_nodelay(true);
    let tls = match acceptor.accept(stream).await {
        Ok(tls) => tls,
        Err(_) => return,
    };
    let mut ws = match tokio_tungstenite::accept_async_with_config(tls, Some(config)).await {
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
                // echoes still buffered) and completes the handshake. Dropping the stream
                // closes TCP without a close_notify, as the plain peer drops its socket.
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
    let args = parse_args();
    let tls = tls_config(&args.cert, &args.key).unwrap_or_else(|e| {
        eprintln!("tokio-rustls-echo: {e}");
        std::process::exit(1);
    });
    let acceptor = TlsAcceptor::from(tls);
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await?;
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
                tokio::spawn(serve(stream, acceptor.clone(), config));
            }
            // e.g. EMFILE under a connection storm: keep serving existing connections.
            Err(e) => {
                eprintln!("accept error: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
