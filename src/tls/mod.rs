//! Owns TLS for `wss://` and `https://` (rustls with the ring provider), inside the reactor:
//! loading the certificate chain and key (PEM), and moving bytes between a non-blocking
//! socket, the TLS session and the connection's plaintext rings. Layer L4: it touches sockets;
//! it never blocks, and a TLS error (a bad handshake, garbage instead of a ClientHello, an
//! alert) fails that one connection only.
//! Must not: block, or let one connection's TLS error touch another.

use std::io::{self, ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

/// Most plaintext rustls may hold encrypted but unsent per connection; beyond it `write`
/// takes nothing and the connection's own queue (and its slow-consumer limits) holds the rest.
const TLS_BUFFER: usize = 64 * 1024;

/// Build the server configuration from PEM files; errors name the file.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    // ALPN: WebSocket over TLS and the HTTP transports speak HTTP/1.1 (RFC 7301).
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A new server-side session.
pub fn session(cfg: &Arc<ServerConfig>) -> io::Result<Box<ServerConnection>> {
    let mut s = ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
    s.set_buffer_limit(Some(TLS_BUFFER));
    Ok(Box::new(s))
}

/// Read plaintext into `a` then `b`. `Ok(0)` is the end (close_notify or the peer's FIN);
/// `WouldBlock` means no plaintext yet and nothing more on the socket. Handshake records the
/// session produces on the way are sent at once.
pub fn read<S: Read + Write>(
    sock: &mut S,
    tls: &mut ServerConnection,
    a: &mut [u8],
    b: &mut [u8],
) -> io::Result<usize> {
    loop {
        match tls
            .reader()
            .read_vectored(&mut [IoSliceMut::new(a), IoSliceMut::new(b)])
        {
            Ok(n) => return Ok(n), // 0: the peer sent close_notify
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        match tls.read_tls(sock) {
            Ok(0) => return Ok(0),
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    // Tell the peer why (an alert) before the connection is dropped.
                    let _ = flush(sock, tls);
                    return Err(io::Error::new(ErrorKind::InvalidData, e));
                }
                flush(sock, tls)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Encrypt plaintext from `iov` and send what the socket takes. Returns the plaintext bytes
/// taken (0 when the session's buffer is full: wait for WRITABLE).
pub fn write<S: Read + Write>(
    sock: &mut S,
    tls: &mut ServerConnection,
    iov: &[IoSlice<'_>],
) -> io::Result<usize> {
    if !flush(sock, tls)? {
        return Err(ErrorKind::WouldBlock.into());
    }
    let n = tls.writer().write_vectored(iov)?;
    flush(sock, tls)?;
    Ok(n)
}

/// Send pending TLS records. `Ok(true)` when none remain.
pub fn flush<S: Read + Write>(sock: &mut S, tls: &mut ServerConnection) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// End our side: close_notify (RFC 8446 §6.1), sent as far as the socket takes it. The
/// caller sends FIN after it (`Net::shutdown_write`).
pub fn shutdown<S: Read + Write>(sock: &mut S, tls: &mut ServerConnection) {
    tls.send_close_notify();
    let _ = flush(sock, tls);
}
