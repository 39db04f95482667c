//! Heap bytes an idle TLS connection keeps, counted exactly by a counting global allocator:
//! 1,000 server sessions driven in-process (no sockets) through a TLS 1.3 handshake with a
//! rustls client and one exchange each way the size of a WebSocket upgrade, then left idle;
//! the client sides are dropped and what the server sessions still hold is counted, the
//! marginal cost measured over the second half (the first connections also fill the shared
//! session cache). rustls' buffered `ServerConnection` (what the reactor used before) against
//! `wsloop::tls::Session` (the unbuffered API, buffers lent by the caller only while bytes
//! move). Prints the table in docs/benchmarks.md ("TLS memory per idle connection"):
//! `cargo test --release --test tls_memory -- --nocapture`; holds the budget.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};

/// Live heap bytes of the whole process.
static LIVE: AtomicUsize = AtomicUsize::new(0);

static TRACK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static LIVE_SET: std::sync::Mutex<std::collections::BTreeMap<usize, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());
thread_local! { static IN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) }; }
fn track(add: Option<(usize, usize)>, remove: Option<usize>) {
    if !TRACK.load(Relaxed) || IN.with(|i| i.get()) {
        return;
    }
    IN.with(|i| i.set(true));
    if let Ok(mut m) = LIVE_SET.try_lock() {
        if let Some(p) = remove {
            m.remove(&p);
        }
        if let Some((p, n)) = add {
            m.insert(p, n);
        }
    }
    IN.with(|i| i.set(false));
}

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Relaxed);
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        track(Some((p as usize, layout.size())), None);
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        track(None, Some(ptr as usize));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Relaxed);
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        track(Some((p as usize, new_size)), Some(ptr as usize));
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONNECTIONS: usize = 1000;

/// What the client sends after the handshake (a browser's upgrade request is about this).
const REQUEST: &[u8] = &[b'q'; 420];
/// What the server answers (a 101 with one extension is about this).
const RESPONSE: &[u8] = &[b'r'; 160];

/// Server and client configurations around a fresh self-signed certificate.
fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let dir = std::env::temp_dir().join(format!("wsloop-tls-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let server = wsloop::tls::load(&cert, &key).unwrap();
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let _ = std::fs::remove_dir_all(&dir);
    (server, Arc::new(client))
}

fn client(cfg: &Arc<ClientConfig>) -> ClientConnection {
    ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap()
}

/// Move the client's pending records into `to`.
fn from_client(c: &mut ClientConnection, to: &mut Vec<u8>) {
    while c.wants_write() {
        c.write_tls(to).unwrap();
    }
}

/// Feed `bytes` to the client; return the plaintext it yields.
fn to_client(c: &mut ClientConnection, mut bytes: &[u8]) -> Vec<u8> {
    while !bytes.is_empty() {
        c.read_tls(&mut bytes).unwrap();
        c.process_new_packets().unwrap();
    }
    let mut out = Vec::new();
    let _ = c.reader().read_to_end(&mut out);
    out
}

/// One server session of the buffered API through handshake, request and response.
fn buffered(
    server: &Arc<ServerConfig>,
    client_cfg: &Arc<ClientConfig>,
) -> Box<rustls::ServerConnection> {
    // As the reactor held them before: boxed, plaintext buffered up to 64 KiB.
    let mut s = Box::new(rustls::ServerConnection::new(server.clone()).unwrap());
    s.set_buffer_limit(Some(64 * 1024));
    let mut c = client(client_cfg);
    c.writer().write_all(REQUEST).unwrap();
    let mut got = Vec::new();
    for _ in 0..10 {
        let mut wire = Vec::new();
        from_client(&mut c, &mut wire);
        let mut rd = &wire[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().unwrap();
        }
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.reader().read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if got.len() == REQUEST.len() && !s.is_handshaking() {
            break;
        }
        let mut back = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut back).unwrap();
        }
        to_client(&mut c, &back);
    }
    assert_eq!(got, REQUEST, "the server read the request");
    s.writer().write_all(RESPONSE).unwrap();
    let mut back = Vec::new();
    while s.wants_write() {
        s.write_tls(&mut back).unwrap();
    }
    let answer = to_client(&mut c, &back);
    assert_eq!(answer, RESPONSE, "the client read the response");
    s
}

/// One server session of the unbuffered API (`wsloop::tls::Session`) the same way.
fn unbuffered(
    server: &Arc<ServerConfig>,
    client_cfg: &Arc<ClientConfig>,
    scratch: &mut [u8],
) -> wsloop::tls::Session {
    let mut s = wsloop::tls::Session::new(server).unwrap();
    let mut c = client(client_cfg);
    c.writer().write_all(REQUEST).unwrap();
    let mut got = Vec::new();
    for _ in 0..10 {
        let mut wire = Vec::new();
        from_client(&mut c, &mut wire);
        let mut back = Vec::new();
        let mut rd = &wire[..];
        let mut plain = [0u8; 4096];
        loop {
            let mut pipe = Pipe {
                rd: &mut rd,
                wr: &mut back,
            };
            match s.read(&mut pipe, scratch, &mut plain, &mut []) {
                Ok(0) => panic!("the session ended"),
                Ok(n) => got.extend_from_slice(&plain[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        to_client(&mut c, &back);
        if got.len() == REQUEST.len() {
            break;
        }
    }
    assert_eq!(got, REQUEST, "the server read the request");
    let mut back = Vec::new();
    let mut none: &[u8] = &[];
    let mut pipe = Pipe {
        rd: &mut none,
        wr: &mut back,
    };
    let n = s
        .write(&mut pipe, scratch, &[std::io::IoSlice::new(RESPONSE)])
        .unwrap();
    assert_eq!(n, RESPONSE.len());
    assert!(s.flush(&mut pipe).unwrap(), "all sent");
    let answer = to_client(&mut c, &back);
    assert_eq!(answer, RESPONSE, "the client read the response");
    s
}

/// A socket made of two byte strings: reads from `rd` (then WouldBlock), writes to `wr`.
struct Pipe<'a, 'b> {
    rd: &'a mut &'b [u8],
    wr: &'a mut Vec<u8>,
}

impl Read for Pipe<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.rd.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        self.rd.read(buf)
    }
}

impl Write for Pipe<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.wr.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Open `CONNECTIONS` sessions with `open`, keeping them; bytes held per session over the
/// second half.
fn per_session<T>(mut open: impl FnMut() -> T) -> (usize, Vec<T>) {
    let mut kept = Vec::with_capacity(CONNECTIONS);
    let mut mid = 0;
    for i in 0..CONNECTIONS {
        if i == CONNECTIONS / 2 {
            mid = LIVE.load(Relaxed);
        }
        kept.push(open());
    }
    let end = LIVE.load(Relaxed);
    (
        end.saturating_sub(mid) / (CONNECTIONS - CONNECTIONS / 2),
        kept,
    )
}

#[test]
fn an_idle_tls_session_holds_no_buffers() {
    let (server, client_cfg) = configs();
    let (old, kept) = per_session(|| buffered(&server, &client_cfg));
    drop(kept);
    let mut scratch = vec![0u8; wsloop::tls::SCRATCH];
    // Boxed, as the reactor keeps them (`Reactor::sessions`).
    let (new, kept) = per_session(|| Box::new(unbuffered(&server, &client_cfg, &mut scratch)));
    drop(kept);
    println!(
        "| API | heap per idle TLS session (marginal, {} sessions) |",
        CONNECTIONS / 2
    );
    println!("|---|--:|");
    println!("| rustls `ServerConnection` (buffered) | {old} B |");
    println!("| `wsloop::tls::Session` (unbuffered) | {new} B |");
    // What is left is rustls' own state: the connection struct, the traffic keys of both
    // directions and the secrets to update them (docs/benchmarks.md breaks it down).
    assert!(
        new * 2 < old,
        "under half of the buffered session's: {new} B against {old} B"
    );
    assert!(
        new <= 4096,
        "an idle unbuffered session holds no buffers: {new} B"
    );
}

/// Diagnostic: the sizes of the allocations one more session keeps (with those of the shared
/// session cache it fills) and the size of the struct itself.
#[test]
#[ignore]
fn what_an_idle_session_holds() {
    let (server, client_cfg) = configs();
    let mut scratch = vec![0u8; wsloop::tls::SCRATCH];
    let mut kept = Vec::new();
    for _ in 0..300 {
        kept.push(unbuffered(&server, &client_cfg, &mut scratch));
    }
    TRACK.store(true, Relaxed);
    let s = Box::new(unbuffered(&server, &client_cfg, &mut scratch));
    TRACK.store(false, Relaxed);
    println!(
        "size_of Session = {}",
        std::mem::size_of::<wsloop::tls::Session>()
    );
    let live = LIVE_SET.lock().unwrap();
    let mut sizes: Vec<usize> = live.values().copied().collect();
    sizes.sort();
    println!(
        "live allocations made for it: {sizes:?} sum {}",
        sizes.iter().sum::<usize>()
    );
    drop(s);
}

/// Diagnostic: heap per idle session for each suite
/// (`cargo test --release --test tls_memory -- --ignored --nocapture`).
#[test]
#[ignore]
fn suites_compared() {
    let (server, client_cfg) = configs();
    // TLS 1.3 suites and the TLS 1.2 ones for the certificate's key (ECDSA).
    let usable = rustls::crypto::ring::DEFAULT_CIPHER_SUITES
        .iter()
        .filter(|s| !format!("{:?}", s.suite()).contains("RSA"));
    for suite in usable {
        let mut cfg = (*server).clone();
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = vec![*suite];
        let _ = &mut provider;
        // A config of only this suite (TLS 1.3 suites only make a TLS 1.3 session).
        let certs = cfg.cert_resolver.clone();
        let mut only = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(certs);
        only.alpn_protocols = cfg.alpn_protocols.clone();
        cfg = only;
        let cfg = Arc::new(cfg);
        let mut scratch = vec![0u8; wsloop::tls::SCRATCH];
        let (new, kept) = per_session(|| Box::new(unbuffered(&cfg, &client_cfg, &mut scratch)));
        drop(kept);
        println!("{:?}: {new} B", suite.suite());
    }
}
