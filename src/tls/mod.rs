//! Owns TLS for `wss://` and `https://` (rustls with the ring provider), inside the reactor:
//! loading the certificate chain and key (PEM), and the server sessions (`Session`, rustls'
//! unbuffered API: no buffers while idle); and the client side of `rediss://`
//! (`client_config`, `ClientStream`, rustls' buffered API through the helpers here). Layer L4: it touches sockets;
//! it never blocks, and a TLS error (a bad handshake, garbage instead of a ClientHello, an
//! alert) fails that one connection only.
//! Must not: block, or let one connection's TLS error touch another.

use std::io::{self, ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ConnectionCommon, ServerConfig};

mod session;
pub use session::{Session, SCRATCH};

/// Most plaintext a `rediss://` client session may hold encrypted but unsent; beyond it the
/// link's own queue holds the rest.
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

/// Read plaintext into `a` then `b`. `Ok(0)` is the end (close_notify or the peer's FIN);
/// `WouldBlock` means no plaintext yet and nothing more on the socket. Handshake records the
/// session produces on the way are sent at once.
pub fn read<S: Read + Write, D>(
    sock: &mut S,
    tls: &mut ConnectionCommon<D>,
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
pub fn write<S: Read + Write, D>(
    sock: &mut S,
    tls: &mut ConnectionCommon<D>,
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
pub fn flush<S: Read + Write, D>(sock: &mut S, tls: &mut ConnectionCommon<D>) -> io::Result<bool> {
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
pub fn shutdown<S: Read + Write, D>(sock: &mut S, tls: &mut ConnectionCommon<D>) {
    tls.send_close_notify();
    let _ = flush(sock, tls);
}

/// The client configuration for `rediss://`: the CAs of `ca` (PEM; the system's bundle when
/// not given) are trusted; errors name the file. Read before any loop runs (it blocks).
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let path = ca.unwrap_or(Path::new(SYSTEM_CAS));
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{}: no CA certificate found", path.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Where Debian (and most Linux distributions) keep the CAs the system trusts.
pub const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A non-blocking client stream: a socket with or without a TLS session on it. `Read` and
/// `Write` take and give plaintext and stop at `WouldBlock` like the socket; `flush` sends
/// the records the session still holds, as far as the socket takes them.
#[derive(Debug)]
pub struct ClientStream<S> {
    pub sock: S,
    tls: Option<Box<ClientConnection>>,
}

impl<S: Read + Write> ClientStream<S> {
    pub fn plain(sock: S) -> ClientStream<S> {
        ClientStream { sock, tls: None }
    }

    /// A TLS session to `name` over `sock` (the handshake runs as bytes move).
    pub fn tls(sock: S, cfg: &Arc<ClientConfig>, name: ServerName<'static>) -> io::Result<Self> {
        let mut c = ClientConnection::new(cfg.clone(), name).map_err(io::Error::other)?;
        c.set_buffer_limit(Some(TLS_BUFFER));
        Ok(ClientStream {
            sock,
            tls: Some(Box::new(c)),
        })
    }
}

impl<S: Read + Write> Read for ClientStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_mut() {
            None => self.sock.read(buf),
            Some(tls) => read(&mut self.sock, tls, buf, &mut []),
        }
    }
}

impl<S: Read + Write> Write for ClientStream<S> {
    /// Plaintext taken; with TLS, `WouldBlock` while the session's buffer is full.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.tls.as_mut() {
            None => self.sock.write(buf),
            Some(tls) => match write(&mut self.sock, tls, &[IoSlice::new(buf)])? {
                0 if !buf.is_empty() => Err(ErrorKind::WouldBlock.into()),
                n => Ok(n),
            },
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.tls.as_mut() {
            None => Ok(()),
            Some(tls) => flush(&mut self.sock, tls).map(|_| ()),
        }
    }
}
