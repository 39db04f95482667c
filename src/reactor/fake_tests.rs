//! The fault harness (docs/testing.md §4): the real `Reactor` — accept, read, process, flush,
//! timers, deferred close — driven one loop iteration at a time (`Reactor::turn`) over
//! `fake::FakeNet`, whose sockets fail exactly where each test says. Every test asserts what
//! reached the peer, what the application was told (a recording handler), what was freed
//! (`BufPool::lent`, the slab) and which system calls were made, so a loop that spins, stops
//! reading early, writes after an error or sends FIN too soon fails here deterministically.
//! Must not: open a socket, start a thread or wait on real time.

use std::cell::RefCell;
use std::rc::Rc;

use super::fake::{FakeNet, Peer, ReadStep, WriteStep};
use super::*;
use crate::app::{ConnId, Ctx, Handler, Upgrade};
use crate::client::frames::{close_frame, encode_masked};
use crate::client::handshake::{check_response, request};
use crate::ws::frame::{encode_header, FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::ws::Message;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// Bound on the iterations `settle` may take (the 1 MiB echo at a byte per write needs
/// about a million).
const MAX_TURNS: usize = 3_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Open(ConnId),
    Message(ConnId, Vec<u8>),
    Closed(ConnId, u16),
    /// What the watched peer had received when a message reached the application.
    Written(usize),
}

/// Records what the application is told (and, with a watched peer, how much it had been
/// sent by then), and echoes every message.
struct Recorder(Rc<RefCell<Vec<Seen>>>, Rc<RefCell<Option<Peer>>>);

impl Handler for Recorder {
    fn on_open(&mut self, ctx: &mut Ctx<'_, '_>, _up: &Upgrade<'_, '_>) {
        self.0.borrow_mut().push(Seen::Open(ctx.id().expect("id")));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, '_>, msg: Message<'_>) {
        let id = ctx.id().expect("id");
        if let Some(watched) = self.1.borrow().as_ref() {
            self.0
                .borrow_mut()
                .push(Seen::Written(watched.written_len()));
        }
        self.0
            .borrow_mut()
            .push(Seen::Message(id, msg.as_bytes().to_vec()));
        ctx.send(msg);
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, '_>, code: u16, _reason: &str) {
        self.0
            .borrow_mut()
            .push(Seen::Closed(ctx.id().expect("id"), code));
    }
}

pub(super) struct Harness {
    pub(super) r: Reactor<FakeNet>,
    ready: Vec<Ready>,
    seen: Rc<RefCell<Vec<Seen>>>,
    /// The peer whose received bytes `Seen::Written` reports.
    watch: Rc<RefCell<Option<Peer>>>,
}

impl Harness {
    pub(super) fn new() -> Harness {
        Harness::with(Config::default())
    }

    pub(super) fn with(cfg: Config) -> Harness {
        let shared = super::Shared::new(&cfg).expect("no TLS files to load");
        Harness::sharing(cfg, shared)
    }

    /// A worker of a process whose other workers hold `shared` too (the totals, the
    /// per-address counts).
    pub(super) fn sharing(cfg: Config, shared: Shared) -> Harness {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let watch = Rc::new(RefCell::new(None));
        let router = Router::new()
            .mount("/echo", Recorder(seen.clone(), watch.clone()))
            .mount("/topic/{name}", crate::app::TopicApp::default());
        let metrics = Arc::new(Metrics::new(1)).handle(0);
        let r = Reactor::from_parts(cfg, router, FakeNet::new(), None, shared, metrics);
        Harness {
            r,
            ready: Vec::new(),
            seen,
            watch,
        }
    }

    pub(super) fn net(&mut self) -> &mut FakeNet {
        &mut self.r.net
    }

    /// One loop iteration, then the interest invariant: WRITABLE is registered exactly
    /// while a connection has bytes it could not write (DESIGN §2 step 6).
    pub(super) fn turn(&mut self) {
        assert!(self.r.turn(&mut self.ready).expect("turn"), "loop ended");
        for (idx, e) in self.r.conns.iter() {
            assert_eq!(e.sock.registered(), Some(e.interest), "slot {idx}");
            let pending = e.conn.tx_len() > 0;
            assert_eq!(e.interest.is_writable(), pending, "slot {idx}: WRITABLE");
        }
    }

    /// Iterate until an iteration has nothing to do: the poller reports nothing and no
    /// read waits to resume (the loop would sleep). Returns the iterations taken.
    pub(super) fn settle(&mut self) -> usize {
        for n in 1..=MAX_TURNS {
            let resuming = !self.r.resume.is_empty();
            self.turn();
            if self.ready.is_empty() && !resuming {
                return n;
            }
        }
        panic!("the loop did not settle in {MAX_TURNS} iterations");
    }

    /// The loop would sleep now, not spin.
    pub(super) fn assert_asleep(&mut self) {
        let before = self.net().polls;
        self.turn();
        assert!(self.ready.is_empty(), "events while idle: {:?}", self.ready);
        assert_ne!(self.net().last_timeout, Some(Duration::ZERO), "busy loop");
        assert_eq!(self.net().polls, before + 1);
    }

    /// A WebSocket on `/echo`, upgraded, with the 101 taken from what was written.
    fn open(&mut self) -> Peer {
        self.open_at("/echo")
    }

    /// A WebSocket on `path`, upgraded, with the 101 taken from what was written.
    pub(super) fn open_at(&mut self, path: &str) -> Peer {
        let peer = self.net().connect();
        peer.send(&request("x", path, KEY));
        self.settle();
        let out = peer.take_written();
        let head = check_response(&out, 0, KEY).expect("a valid 101");
        assert_eq!(head, Some(out.len()), "only the 101 was written");
        peer
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.borrow().clone()
    }

    fn closes(&self) -> Vec<u16> {
        let seen = self.seen.borrow();
        let codes = seen.iter().filter_map(|s| match s {
            Seen::Closed(_, code) => Some(*code),
            _ => None,
        });
        codes.collect()
    }

    /// Nothing left: no slot, no ring lent out.
    fn assert_all_freed(&self) {
        assert_eq!(self.r.conns.len(), 0, "slots");
        assert_eq!(self.r.res.pool.lent(), 0, "rings lent");
    }
}

pub(super) fn client(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_masked(opcode, payload, [0x37, 0xfa, 0x21, 0x3d], &mut out);
    out
}

/// An unmasked server frame, as the reactor must write it.
pub(super) fn server(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&header, &mut head);
    [&head[..n], payload].concat()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn id_of(peer: &Peer) -> ConnId {
    ConnId(peer.token().0 as u64)
}

#[test]
fn an_upgrade_and_a_frame_arriving_one_byte_per_read_are_served() {
    // Under the default limits: a head is bounded by bytes and by the handshake deadline,
    // not by the number of reads it takes (an honest client on a slow link).
    for gaps in [false, true] {
        let mut h = Harness::new();
        let peer = h.net().connect();
        let mut bytes = request("x", "/echo", KEY);
        bytes.extend(client(OpCode::Text, b"hello"));
        // With gaps, every byte is followed by a WouldBlock: EAGAIN at every point.
        peer.send_bytewise(&bytes, gaps);
        let turns = h.settle();
        let out = peer.written();
        let head = check_response(&out, 0, KEY)
            .expect("101")
            .expect("complete");
        assert_eq!(out[head..], server(OpCode::Text, b"hello"), "gaps {gaps}");
        let id = id_of(&peer);
        let want = [Seen::Open(id), Seen::Message(id, b"hello".to_vec())];
        assert_eq!(h.seen(), want);
        // One read per byte (and one per WouldBlock): a short read ends reading, and the
        // next byte's edge brings the loop back.
        let per_byte = if gaps { 2 } else { 1 };
        assert_eq!(peer.calls().reads, bytes.len() * per_byte);
        assert!(turns >= bytes.len(), "{turns} iterations");
        // Idle between messages: the rx ring went back to the pool.
        assert_eq!(h.r.res.pool.lent(), 0);
        h.assert_asleep();
    }
    // A dribbled head that never ends is cut by time: 408 at the handshake deadline.
    let mut h = Harness::new();
    let peer = h.net().connect();
    let head = request("x", "/echo", KEY);
    peer.send_bytewise(&head[..head.len() - 2], false);
    h.settle();
    assert_eq!(
        peer.written_len(),
        0,
        "no answer before the head ends or time runs out"
    );
    h.net()
        .advance(Config::default().timeouts.handshake.as_millis() as Tick + 1);
    h.settle();
    assert!(peer.written().starts_with(b"HTTP/1.1 408 "));
}

#[test]
fn a_1_mib_echo_leaves_one_byte_per_write_with_writable_only_while_bytes_remain() {
    let mut h = Harness::new();
    let peer = h.open();
    peer.set_write_cap(1);
    let payload = pattern(1 << 20);
    peer.send(&client(OpCode::Binary, &payload));
    h.settle(); // `turn` checks WRITABLE against the queue after every iteration
    let want = server(OpCode::Binary, &payload);
    assert!(peer.written() == want, "the echo arrived intact");
    // Every write took its one byte: none was wasted on a full socket.
    assert_eq!(peer.calls().writes, 1 + want.len());
    // READABLE at accept; WRITABLE added at the first short write and dropped once drained,
    // with no re-registration in between.
    let (r, rw) = (Interest::READABLE, Interest::READABLE | Interest::WRITABLE);
    assert_eq!(peer.interests(), [r, rw, r]);
    assert_eq!(h.r.res.pool.lent(), 0);
    h.assert_asleep();
}

#[test]
fn a_reply_is_written_before_the_next_ready_connection_is_read() {
    // The reply to a read leaves right after it, small or large, rather than at the end of
    // the iteration: one write per connection either way, its bytes still in cache, and its
    // peer not idle while the loop reads the others (`Reactor::read`).
    let mut h = Harness::new();
    let (a, b) = (h.open(), h.open());
    *h.watch.borrow_mut() = Some(a.clone());
    let (ida, idb) = (id_of(&a), id_of(&b));
    let mut sent = 0;
    for len in [100, 100 * 1024] {
        let payload = pattern(len);
        h.seen.borrow_mut().clear();
        let writes = a.calls().writes;
        a.send(&client(OpCode::Binary, &payload));
        b.send(&client(OpCode::Binary, &payload));
        h.turn(); // one batch: a's edge, then b's
        let echo = server(OpCode::Binary, &payload);
        assert_eq!(
            h.seen(),
            [
                Seen::Written(sent),
                Seen::Message(ida, payload.clone()),
                Seen::Written(sent + echo.len()),
                Seen::Message(idb, payload.clone()),
            ],
            "{len} B: a's echo left before b was read"
        );
        assert_eq!(a.calls().writes - writes, 1, "{len} B: one write");
        sent += echo.len();
        assert_eq!(b.written_len(), sent);
    }
}

#[test]
fn broadcasts_queued_for_a_subscriber_in_one_iteration_leave_in_one_write() {
    // Frames that publishes queue for *other* connections wait for the end of the
    // iteration, so a subscriber gets every broadcast of one iteration in one write.
    let mut h = Harness::new();
    let sub = h.open_at("/topic/t");
    let (p1, p2) = (h.open_at("/topic/t"), h.open_at("/topic/t"));
    let writes = |peers: [&Peer; 3]| peers.map(|p| p.calls().writes);
    let before = writes([&sub, &p1, &p2]);
    p1.send(&client(OpCode::Text, b"one"));
    p2.send(&client(OpCode::Text, b"two"));
    h.turn(); // one batch: p1's edge, then p2's
    let want = [server(OpCode::Text, b"one"), server(OpCode::Text, b"two")].concat();
    for p in [&sub, &p1, &p2] {
        assert_eq!(p.written(), want);
    }
    let after = writes([&sub, &p1, &p2]);
    // The subscriber: both frames in one write. A publisher's own copy leaves with its
    // read, so p1 (read before p2's frame existed) took two writes and p2 one.
    assert_eq!(after, [before[0] + 1, before[1] + 2, before[2] + 1]);
    h.assert_asleep();
}

#[test]
fn publishes_of_one_read_reach_a_subscriber_as_one_segment_in_one_plain_write() {
    // A run (`fanout::Run`): the three publishes of one read are joined once and queued on
    // each other subscriber as one segment, so it leaves with send(2), not writev(2) over
    // three slices — and the run ends before the publisher's next read.
    let mut h = Harness::new();
    let (sub, publisher) = (h.open_at("/topic/t"), h.open_at("/topic/t"));
    let before = sub.calls();
    let frames = ["one", "two", "three"].map(|m| client(OpCode::Text, m.as_bytes()));
    publisher.send(&frames.concat());
    h.turn();
    let want = ["one", "two", "three"].map(|m| server(OpCode::Text, m.as_bytes()));
    assert_eq!(sub.written(), want.concat());
    assert_eq!(publisher.written(), want.concat());
    let after = sub.calls();
    assert_eq!(after.writes - before.writes, 1);
    assert_eq!(
        after.vectored, before.vectored,
        "one contiguous segment: no writev"
    );
    publisher.send(&client(OpCode::Text, b"four"));
    h.turn();
    assert!(sub.written().ends_with(&server(OpCode::Text, b"four")));
    h.assert_asleep();
}

#[test]
fn a_publisher_closing_in_the_same_read_gets_its_own_publishes_before_the_close() {
    // The connection whose input publishes takes each message at once, in order with what
    // else its input makes it send (here the close reply); the others take the run after.
    let mut h = Harness::new();
    let (sub, publisher) = (h.open_at("/topic/t"), h.open_at("/topic/t"));
    let mut input = [client(OpCode::Text, b"a"), client(OpCode::Text, b"b")].concat();
    input.extend(close_frame(1000, [1, 2, 3, 4]));
    publisher.send(&input);
    h.settle();
    let frames = [server(OpCode::Text, b"a"), server(OpCode::Text, b"b")].concat();
    assert_eq!(sub.written(), frames);
    let mine = publisher.written();
    assert!(mine.starts_with(&frames), "{mine:?}");
    assert_eq!(mine[frames.len()] & 0x0f, 0x8, "then the close reply");
}

#[test]
fn a_small_echo_is_one_plain_read_and_one_plain_write() {
    // recv(2)/send(2) rather than readv(2)/writev(2) when one buffer will do: cheaper in the
    // kernel, which is most of the cost of a small message (docs/perf-history.md,
    // "recv/send instead of readv/writev").
    let mut h = Harness::new();
    let peer = h.open();
    let before = peer.calls();
    peer.send(&client(OpCode::Binary, b"hello"));
    h.turn();
    assert!(peer.written().ends_with(&server(OpCode::Binary, b"hello")));
    let after = peer.calls();
    assert_eq!(
        (after.reads - before.reads, after.writes - before.writes),
        (1, 1)
    );
    assert_eq!(after.vectored, before.vectored, "no readv/writev");
}

#[test]
fn an_echo_the_socket_takes_in_part_frees_the_read_ring_for_the_next_connection() {
    // An echo is written from the large read ring it arrived in. When a's socket takes only
    // part of it, the rest is copied out and the ring goes back, so b's message (read into
    // that same ring in the same batch) neither waits for a nor overwrites a's echo.
    let mut h = Harness::new();
    let (a, b) = (h.open(), h.open());
    let (big_a, big_b) = (pattern(300 * 1024), vec![0x5A; 200 * 1024]);
    a.push_write(WriteStep::Accept(1000));
    a.push_write(WriteStep::WouldBlock);
    a.send(&client(OpCode::Binary, &big_a));
    b.send(&client(OpCode::Binary, &big_b));
    let reads = b.calls().reads;
    h.turn();
    assert_eq!(a.written_len(), 1000);
    let echo_b = server(OpCode::Binary, &big_b);
    assert!(b.written() == echo_b, "b's echo left in the same batch");
    assert_eq!(
        b.calls().reads - reads,
        1,
        "b read its message into the large ring at once"
    );
    h.settle();
    assert!(
        a.written() == server(OpCode::Binary, &big_a),
        "a's echo intact"
    );
    assert_eq!(h.r.res.pool.lent(), 0);
    h.assert_asleep();
}

#[test]
fn would_block_on_every_other_write_loses_nothing() {
    let mut h = Harness::new();
    let peer = h.net().connect();
    for _ in 0..200 {
        peer.push_write(WriteStep::WouldBlock);
        peer.push_write(WriteStep::Accept(700));
    }
    peer.send(&request("x", "/echo", KEY));
    let payload = pattern(64 * 1024);
    peer.send(&client(OpCode::Binary, &payload));
    h.settle();
    let out = peer.written();
    let head = check_response(&out, 0, KEY)
        .expect("101")
        .expect("complete");
    assert!(out[head..] == server(OpCode::Binary, &payload));
    // Each WouldBlock cost one write and one WRITABLE edge, never a retry loop.
    let accepted = out.len().div_ceil(700);
    assert!(
        peer.calls().writes <= 2 * accepted + 1,
        "{:?}",
        peer.calls()
    );
    h.assert_asleep();
}

#[test]
fn eintr_on_poll_accept_read_and_write_is_retried_at_once() {
    let mut h = Harness::new();
    h.net().fail_poll(libc::EINTR);
    h.net().fail_accept(libc::EINTR);
    h.net().fail_accept(libc::ECONNABORTED); // concerns that connection only
    let peer = h.net().connect();
    peer.push_read(ReadStep::Err(libc::EINTR));
    peer.send(&request("x", "/echo", KEY));
    peer.push_write(WriteStep::Err(libc::EINTR));
    h.turn();
    // The interrupted poll was retried within the iteration, and the interrupted and
    // aborted accepts did not stop the accept loop.
    assert_eq!(h.net().polls, 2);
    assert_eq!(h.r.conns.len(), 1);
    h.turn();
    // No edge follows an EINTR: had either been taken for WouldBlock, nothing would move.
    assert_eq!(peer.calls().reads, 2);
    assert_eq!(peer.calls().writes, 2);
    let out = peer.written();
    assert_eq!(check_response(&out, 0, KEY), Ok(Some(out.len())));
    assert_eq!(h.seen(), [Seen::Open(id_of(&peer))]);
}

#[test]
fn a_reset_mid_frame_reports_1006_once_frees_everything_and_writes_nothing_more() {
    let mut h = Harness::new();
    let peer = h.open();
    // A reply is stuck in tx (the peer stopped reading) when the reset arrives.
    peer.set_room(0);
    let mut bytes = client(OpCode::Text, b"queued reply");
    let big = client(OpCode::Binary, &pattern(100_000));
    bytes.extend_from_slice(&big[..50_000]);
    peer.send(&bytes);
    h.settle();
    assert!(h.r.conns.iter().all(|(_, e)| e.conn.tx_len() > 0));
    let writes = peer.calls().writes;
    peer.push_read(ReadStep::Err(libc::ECONNRESET));
    h.settle();
    assert_eq!(h.closes(), [1006]);
    h.assert_all_freed();
    assert!(peer.closed());
    assert_eq!(peer.calls().deregisters, 1);
    assert_eq!(peer.calls().writes, writes, "a write after the reset");
    assert_eq!(peer.calls().writes_after_error, 0);
    h.assert_asleep();
    assert_eq!(h.closes(), [1006], "told once");
}

#[test]
fn epipe_mid_reply_reports_1006_once_frees_everything_and_writes_nothing_more() {
    let mut h = Harness::new();
    let peer = h.open();
    let writes = peer.calls().writes;
    peer.push_write(WriteStep::Accept(1000));
    peer.push_write(WriteStep::Err(libc::EPIPE));
    peer.send(&client(OpCode::Binary, &pattern(100_000)));
    h.settle();
    assert_eq!(peer.written_len(), 1000);
    assert_eq!(h.closes(), [1006]);
    h.assert_all_freed();
    assert!(peer.closed());
    assert_eq!(peer.calls().writes, writes + 2);
    assert_eq!(peer.calls().writes_after_error, 0);
    h.assert_asleep();
    assert_eq!(h.closes(), [1006], "told once");
}

#[test]
fn hup_and_err_are_handled_once_without_spinning() {
    // RDHUP with the FIN: read returns 0 once; the WebSocket never sent a close frame.
    let mut h = Harness::new();
    let peer = h.open();
    let reads = peer.calls().reads;
    peer.push_read(ReadStep::Eof);
    h.turn();
    assert!(h.ready[0].is_read_closed());
    assert_eq!(peer.calls().reads, reads + 1);
    assert_eq!(h.closes(), [1006]);
    h.assert_all_freed();
    h.assert_asleep();

    // ERR: the read reports the error once.
    let mut h = Harness::new();
    let peer = h.open();
    let reads = peer.calls().reads;
    peer.push_read(ReadStep::Err(libc::ETIMEDOUT));
    h.turn();
    assert!(h.ready[0].is_error());
    assert_eq!(peer.calls().reads, reads + 1);
    assert_eq!(h.closes(), [1006]);
    h.assert_all_freed();
    h.assert_asleep();

    // A HUP reported with nothing behind it yet: one read meets WouldBlock and the loop
    // sleeps; the FIN that follows raises its own edge and ends the connection.
    let mut h = Harness::new();
    let peer = h.open();
    let reads = peer.calls().reads;
    h.net().inject(Ready {
        token: peer.token(),
        readable: false,
        writable: false,
        read_closed: true,
        error: false,
    });
    h.turn();
    assert_eq!(peer.calls().reads, reads + 1);
    h.assert_asleep();
    h.assert_asleep();
    assert_eq!(peer.calls().reads, reads + 1, "no read without an edge");
    assert!(h.closes().is_empty());
    peer.push_read(ReadStep::Eof);
    h.settle();
    assert_eq!(h.closes(), [1006]);
    h.assert_all_freed();
}

#[test]
fn reading_stops_over_max_queued_bytes_and_resumes_once_the_peer_drains_without_a_new_edge() {
    let mut h = Harness::with(Config {
        max_queued_bytes: 64 * 1024,
        ..Config::default()
    });
    let peer = h.open();
    peer.set_room(0); // the peer does not read its replies
                      // 40 messages arriving one after another: whatever the read buffer, reading must stop
                      // once the unread echoes pass the limit.
    let msgs: Vec<Vec<u8>> = (0..40).map(|i| pattern(8 * 1024 + i)).collect();
    for m in &msgs {
        peer.send(&client(OpCode::Binary, m));
    }
    h.settle();
    // Reading stopped with bytes left in the socket, and the loop sleeps (no read per
    // iteration while the peer does not drain).
    assert!(peer.unread() > 0, "the socket still holds bytes");
    let reads = peer.calls().reads;
    h.assert_asleep();
    h.assert_asleep();
    assert_eq!(peer.calls().reads, reads);
    let queued =
        h.r.conns
            .iter()
            .map(|(_, e)| e.conn.tx_len())
            .sum::<usize>();
    assert!(queued > 64 * 1024, "{queued}");
    // The peer reads everything: WRITABLE fires, tx drains, and reading resumes by itself
    // (no bytes arrive, so no readable edge will ever come).
    peer.drain(usize::MAX);
    h.settle();
    assert_eq!(peer.unread(), 0);
    let want: Vec<u8> = msgs
        .iter()
        .flat_map(|m| server(OpCode::Binary, m))
        .collect();
    assert!(peer.written() == want, "every echo, in order");
    assert_eq!(h.seen().len(), 1 + msgs.len());
    h.assert_asleep();
}

#[test]
fn reading_stops_while_rx_is_full_and_resumes_when_the_held_poll_ends_without_a_new_edge() {
    let mut h = Harness::with(Config {
        buffer_size: 1024,
        ..Config::default()
    });
    let peer = h.net().connect();
    // A long poll is held; 40 pipelined requests behind it fill rx and wait in the socket.
    let mut bytes = b"GET /poll/t?after=0 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    for _ in 0..40 {
        bytes.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    assert!(bytes.len() > 1024);
    peer.send(&bytes);
    h.settle();
    assert!(peer.written().is_empty(), "the poll is held");
    assert_eq!(peer.unread(), 1);
    let reads = peer.calls().reads;
    h.assert_asleep();
    assert_eq!(peer.calls().reads, reads, "no read while rx is full");
    // The hold ends (204): the pipelined requests are served and reading resumes.
    let hold = Config::default().timeouts.poll_hold.as_millis() as Tick;
    h.net().advance(hold + 1);
    h.settle();
    assert_eq!(peer.unread(), 0);
    let out = String::from_utf8(peer.written()).expect("text");
    assert!(out.starts_with("HTTP/1.1 204"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 40);
    h.assert_asleep();
}

#[test]
fn our_fin_follows_the_last_byte_and_the_socket_stays_open_until_the_peers_fin() {
    let mut h = Harness::new();
    let peer = h.open();
    peer.set_room(3); // the close echo (4 bytes) leaves in two writes
    peer.send(&close_frame(1000, [1, 2, 3, 4]));
    h.settle();
    assert_eq!(h.closes(), [1000]);
    assert_eq!(peer.written_len(), 3);
    assert_eq!(
        peer.shut_at(),
        None,
        "FIN before the close frame was written"
    );
    peer.drain(100);
    h.settle();
    assert_eq!(
        peer.written(),
        server(OpCode::Close, &1000u16.to_be_bytes())
    );
    assert_eq!(peer.shut_at(), Some(4), "FIN right after the last byte");
    // Closing now could turn unread bytes into an RST that destroys our close frame: keep
    // reading (and discarding) until the peer's FIN.
    assert!(!peer.closed());
    peer.send(b"late bytes the peer sent before it saw our close");
    h.settle();
    assert!(!peer.closed());
    assert_eq!(peer.written_len(), 4);
    peer.push_read(ReadStep::Eof);
    h.settle();
    assert!(peer.closed());
    assert_eq!(peer.calls().shutdowns, 1);
    assert_eq!(h.closes(), [1000], "told once");
    h.assert_all_freed();
}

#[test]
fn out_of_descriptors_one_pending_connection_is_shed_and_the_loop_sleeps() {
    let mut h = Harness::new();
    h.net().set_emfile(true);
    let peer = h.net().connect();
    h.turn();
    assert!(peer.closed(), "shed through the reserve descriptor");
    assert_eq!(h.net().shed, 1);
    assert_eq!(h.r.conns.len(), 0);
    // accept → EMFILE → shed, accept → EMFILE → nothing left to shed: stop.
    assert_eq!(h.net().accepts, 2);
    h.assert_asleep();
    h.assert_asleep();
    assert_eq!(
        h.net().accepts,
        2,
        "accept retried without a new connection"
    );
    // Descriptors are free again: the next connection is served.
    h.net().set_emfile(false);
    let peer = h.net().connect();
    peer.send(&request("x", "/echo", KEY));
    h.settle();
    let out = peer.written();
    assert_eq!(check_response(&out, 0, KEY), Ok(Some(out.len())));
}

#[test]
fn a_stale_event_for_a_freed_and_reused_slot_is_dropped() {
    let mut h = Harness::new();
    let old = h.open();
    let stale = old.token();
    old.push_read(ReadStep::Eof);
    h.settle();
    h.assert_all_freed();
    let new = h.open();
    let (slot, _) = token::decode(new.token());
    assert_eq!(slot, token::decode(stale).0, "the slot was reused");
    assert_ne!(new.token(), stale);
    let calls = new.calls();
    h.net().inject(Ready {
        token: stale,
        readable: true,
        writable: true,
        read_closed: true,
        error: true,
    });
    h.turn();
    assert_eq!(new.calls(), calls, "the new connection was touched");
    assert!(!new.closed());
    assert_eq!(h.closes(), [1006], "only the old connection was reported");
    // The new connection still works.
    new.send(&client(OpCode::Text, b"still here"));
    h.settle();
    assert_eq!(new.written(), server(OpCode::Text, b"still here"));
}

#[test]
fn a_signal_closes_every_websocket_with_1001_and_the_loop_ends_after_the_handshakes() {
    let mut h = Harness::new();
    let peer = h.open();
    h.net().signal();
    h.turn();
    // 1001, and when to come back: somewhere in --shutdown-spread (5 s).
    let out = peer.written();
    let head = server(OpCode::Close, &[&1001u16.to_be_bytes()[..], b"x"].concat());
    assert_eq!(out[0], head[0], "a close frame");
    let reason = String::from_utf8(out[4..].to_vec()).unwrap();
    let hint: u64 = reason
        .strip_prefix("server shutting down; retry-after-ms=")
        .unwrap_or_else(|| panic!("{reason}"))
        .parse()
        .unwrap();
    assert!(hint < 5_000, "{hint}");
    assert_eq!(&out[2..4], &1001u16.to_be_bytes());
    // No new connection is accepted while draining.
    let late = h.net().connect();
    h.turn();
    assert_eq!(late.calls().registers, 0);
    // The peer answers the close: FIN, its FIN, and the loop ends.
    peer.send(&close_frame(1001, [9, 9, 9, 9]));
    h.turn();
    assert_eq!(peer.shut_at(), Some(out.len()));
    assert!(
        !h.r.turn(&mut h.ready).expect("turn"),
        "the loop should end"
    );
}

#[test]
fn the_dedicated_compressor_cap_holds_across_workers() {
    // Two workers of one process (one `Shared`): a connection that took dedicated state on
    // one counts on the other (`reactor/totals.rs`), so a client that upgrades again through
    // the other worker is answered past the cap (no context takeover). The count is added
    // before the 101 leaves (`sync_dedicated` at the end of `process`) and learnt after every
    // poll (`learn_totals`); the harness cannot interleave two workers inside one iteration,
    // so this checks the sum, not that ordering.
    let mut cfg = Config::default();
    cfg.compression.mode = crate::config::CompressionMode::Dedicated;
    cfg.compression.max_dedicated = 1;
    let shared = super::Shared::new(&cfg).expect("no TLS files to load");
    let mut w0 = Harness::sharing(cfg.clone(), shared.clone());
    let mut w1 = Harness::sharing(cfg, shared);
    let offer = |h: &mut Harness| {
        let head = String::from_utf8(request("x", "/echo", KEY)).unwrap();
        let head = head.strip_suffix("\r\n").unwrap();
        let req = format!("{head}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
        let peer = h.net().connect();
        peer.send(req.as_bytes());
        // Accept, then read and answer.
        h.turn();
        h.turn();
        let head = String::from_utf8(peer.take_written()).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        (peer, head.contains("server_no_context_takeover"))
    };
    // Both workers idle in poll first, as they would be.
    w0.assert_asleep();
    w1.assert_asleep();
    let (_a, shared_a) = offer(&mut w0);
    assert!(!shared_a, "the first connection keeps its context");
    let (_b, shared_b) = offer(&mut w1);
    assert!(shared_b, "the second, on the other worker, is past the cap");
}

#[test]
fn past_the_handshake_budget_a_websocket_is_closed_1013_with_a_hint_and_no_handler_sees_it() {
    let cfg = Config {
        max_handshake_rate: 2,
        ..Config::default()
    };
    let mut h = Harness::with(cfg);
    let (a, b) = (h.open(), h.open());
    // The third within the second: the 101, then close 1013 with when to come back.
    let late = h.net().connect();
    late.send(&request("x", "/echo", KEY));
    h.settle();
    let out = late.take_written();
    let end = check_response(&out, 0, KEY)
        .expect("a valid 101")
        .expect("complete");
    let close = &out[end..];
    assert_eq!(close[0], 0x88, "a close frame");
    assert_eq!(&close[2..4], &1013u16.to_be_bytes());
    let reason = std::str::from_utf8(&close[4..]).unwrap();
    let hint: u64 = reason
        .strip_prefix("over the handshake budget; retry-after-ms=")
        .unwrap_or_else(|| panic!("{reason}"))
        .parse()
        .unwrap();
    // One turned away at 2/s queues half a second back, plus up to a second of jitter.
    assert!((500..1500).contains(&hint), "{hint}");
    let opens = h
        .seen()
        .iter()
        .filter(|s| matches!(s, Seen::Open(_)))
        .count();
    assert_eq!(opens, 2, "the handler never saw the third");
    assert_eq!(h.r.metrics.turned_away.get(), 1);
    // Its close answered, it is gone without the handler hearing of it.
    late.send(&close_frame(1013, [1, 2, 3, 4]));
    h.settle();
    assert!(!h.seen().iter().any(|s| matches!(s, Seen::Closed(_, 1013))));
    // A client that offered subprotocols gets one in the 101, or a browser would fail the
    // handshake (WHATWG: a 101 without one is an error) and never see the 1013 and its hint.
    let picky = h.net().connect();
    let req = String::from_utf8(request("x", "/topic/t", KEY))
        .unwrap()
        .replacen(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Protocol: wsloop.positions.auth, wsloop.positions\r\n\r\n",
            1,
        );
    picky.send(req.as_bytes());
    h.settle();
    let head = String::from_utf8_lossy(&picky.take_written()).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Protocol: wsloop.positions.auth\r\n"),
        "{head}"
    );
    // A second later the budget is back.
    h.net().advance(1000);
    let _c = h.open();
    drop((a, b));
}

/// What `peer` was sent while the clock moved on by `ms` and the loop settled.
fn written_after(h: &mut Harness, peer: &Peer, ms: Tick) -> Vec<u8> {
    h.net().advance(ms);
    h.settle();
    peer.take_written()
}

/// A server ping frame (FIN + opcode 0x9) starts `out`.
fn is_ping(out: &[u8]) -> bool {
    out.first() == Some(&0x89)
}

#[test]
fn an_answer_to_a_heartbeat_ping_brings_the_next_ping_forward_to_its_time() {
    // A flush re-arms a connection's timer only when its deadline may have moved earlier
    // (`Conn::deadline_if_moved`). Answering the ping is such a move: with the default
    // timeouts (ping after 45 s of silence, then 75 s to answer) the deadline goes from "drop
    // at 120 s" to "ping again 45 s after the answer" — earlier. Were the timer left at 120 s,
    // the second ping would come 29 s late.
    let t = Config::default().timeouts;
    let (ping_after, idle) = (
        t.ping_after().as_millis() as Tick,
        t.idle.as_millis() as Tick,
    );
    assert!(
        ping_after + 1000 + ping_after < idle,
        "the case this test is about"
    );
    let mut h = Harness::new();
    let peer = h.open();
    let out = written_after(&mut h, &peer, ping_after + 1);
    assert!(is_ping(&out), "the first ping: {out:?}");
    h.net().advance(1000);
    peer.send(&client(OpCode::Pong, &out[2..]));
    assert!(written_after(&mut h, &peer, 0).is_empty());
    // Just before the second ping is due nothing is sent; just after, it is.
    let early = written_after(&mut h, &peer, ping_after - 2);
    assert!(early.is_empty(), "no ping before its time");
    let out = written_after(&mut h, &peer, 3);
    assert!(is_ping(&out), "the second ping on time: {out:?}");
}

#[test]
fn a_heartbeat_timer_that_fires_early_is_armed_again_for_the_moved_deadline() {
    // Traffic moves the heartbeat later without touching the wheel; the timer armed for the
    // old deadline fires early and finds nothing due. It is gone from the wheel then, so the
    // flush after it must arm the new deadline even though nothing else changed — or the
    // connection would never be pinged, nor dropped, again.
    let ping_after = Config::default().timeouts.ping_after().as_millis() as Tick;
    let mut h = Harness::new();
    let peer = h.open();
    h.net().advance(10_000);
    peer.send(&client(OpCode::Text, b"still here"));
    let echo = written_after(&mut h, &peer, 0);
    assert_eq!(echo, server(OpCode::Text, b"still here"));
    // The first timer fires, 10 s early.
    let early = written_after(&mut h, &peer, ping_after - 10_000 + 1);
    assert!(early.is_empty(), "not due yet");
    let out = written_after(&mut h, &peer, 10_000);
    assert!(is_ping(&out), "pinged 45 s after the message: {out:?}");
}

/// A plain HTTP connection that sent `head` and was served as far as it goes.
fn http_request(h: &mut Harness, head: &[u8]) -> Peer {
    let peer = h.net().connect();
    peer.send(head);
    h.settle();
    peer
}

/// A new WebSocket on `/topic/t` that sends "one", "two" and "three" in one read (one run).
fn publish_three_in_one_read(h: &mut Harness) {
    let publisher = h.open_at("/topic/t");
    let frames = ["one", "two", "three"].map(|m| client(OpCode::Text, m.as_bytes()));
    publisher.send(&frames.concat());
    h.settle();
}

#[test]
fn a_held_long_poll_is_answered_once_with_every_publish_of_the_run() {
    // Three publishes in one read are one run: the held poll is released once, after the
    // read, with all three — not with the first alone (which would send the client straight
    // back for the other two).
    let mut h = Harness::new();
    let poll = http_request(&mut h, b"GET /poll/t?after=0 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(poll.written().is_empty(), "held");
    publish_three_in_one_read(&mut h);
    let out = String::from_utf8(poll.take_written()).expect("text");
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert_eq!(out.matches("HTTP/1.1").count(), 1, "one response: {out}");
    let body = out.split("\r\n\r\n").nth(1).expect("a body");
    assert!(
        body.contains(
            r#""messages":[{"seq":1,"text":"one"},{"seq":2,"text":"two"},{"seq":3,"text":"three"}]"#
        ),
        "{body}"
    );
}

#[test]
fn an_sse_subscriber_takes_a_run_as_its_events_in_order_in_one_write() {
    // The SSE form of a run is joined once: each message is its own event (`id:` is its
    // position), in order, and the subscriber gets them in one plain write.
    let mut h = Harness::new();
    let sse = http_request(&mut h, b"GET /sse/t HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = String::from_utf8(sse.take_written()).expect("text");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let before = sse.calls();
    publish_three_in_one_read(&mut h);
    let after = sse.calls();
    assert_eq!(after.writes - before.writes, 1, "one write for the run");
    assert_eq!(after.vectored, before.vectored, "one contiguous segment");
    let out = String::from_utf8(sse.take_written()).expect("text");
    let events: Vec<(&str, &str)> = out
        .split("\n\n")
        .filter(|e| e.contains("data:"))
        .map(|e| {
            let field = |name: &str| {
                e.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or("")
            };
            (field("id:"), field("data:"))
        })
        .collect();
    assert_eq!(
        events,
        [("1", "one"), ("2", "two"), ("3", "three")],
        "{out:?}"
    );
}
