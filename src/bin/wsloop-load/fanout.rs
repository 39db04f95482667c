//! Owns the `fanout` mode's bookkeeping, apart from the event loop that moves its bytes
//! (`engine`): which message the publisher sends next (at a fixed rate, or as fast as a window
//! of incomplete messages allows), what each message carries (its sequence number and send
//! time in its first 16 bytes), and what every delivery proves — each subscriber must get
//! every message exactly once and in order; a message is complete when the last subscriber
//! has it, and that time is its latency; with `--raw` (no framing), where one message ends
//! in a subscriber's byte stream (`Records`).
//! Must not: touch a socket, or count a message complete before its last subscriber has it.

use crate::report::FanoutReport;

/// Bytes at the front of every message: sequence number and send time (ns), little-endian.
pub const HEADER: usize = 16;

/// What one run of `fanout` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    /// Messages to publish.
    pub messages: u64,
    /// The first `warmup` messages are published and checked but not measured.
    pub warmup: u64,
    /// Messages per second; `None`: as fast as `window` allows.
    pub rate: Option<f64>,
    /// Most messages published and not yet received by every subscriber (no rate).
    pub window: u64,
    /// How long deliveries may stall before the run gives up on the rest.
    pub drain_ns: u64,
}

/// The state of a fan-out run.
#[derive(Debug)]
pub struct Fanout {
    pub spec: Spec,
    /// Subscriber connections that were up when publishing began (each must get everything).
    subscribers: u32,
    /// Next sequence number to publish.
    next: u64,
    /// Publish time of each message (intended time with a rate: no coordinated omission).
    sent_at: Vec<u64>,
    /// Subscribers that received each message.
    got: Vec<u32>,
    /// Per connection: the sequence number it should receive next.
    expect: Vec<u64>,
    /// Messages published and not yet received by every subscriber.
    pub outstanding: u64,
    /// Deliveries of measured messages, and of all.
    pub deliveries: u64,
    pub all_deliveries: u64,
    /// Sequence numbers a subscriber skipped (never delivered before a later one), counted per
    /// subscriber; messages delivered twice or out of order; messages some subscriber lacks
    /// at the end.
    pub missing: u64,
    pub duplicates: u64,
    /// When the first measured message was published, and the last measured delivery.
    pub t_first: Option<u64>,
    pub t_last: u64,
    /// Last time anything was published or delivered (stall detection).
    pub last_progress: u64,
}

impl Fanout {
    /// `connections` includes the publisher.
    pub fn new(spec: Spec, connections: usize) -> Fanout {
        let m = spec.messages as usize;
        Fanout {
            spec,
            subscribers: 0,
            next: 0,
            sent_at: vec![0; m],
            got: vec![0; m],
            expect: vec![0; connections],
            outstanding: 0,
            deliveries: 0,
            all_deliveries: 0,
            missing: 0,
            duplicates: 0,
            t_first: None,
            t_last: 0,
            last_progress: 0,
        }
    }

    /// Publishing begins at `now` with this many subscribers up.
    pub fn start(&mut self, subscribers: usize, now: u64) {
        self.subscribers = subscribers as u32;
        self.last_progress = now;
    }

    pub fn published(&self) -> u64 {
        self.next
    }

    pub fn all_sent(&self) -> bool {
        self.next >= self.spec.messages
    }

    /// Every message published has reached every subscriber.
    pub fn done(&self) -> bool {
        self.all_sent() && self.outstanding == 0
    }

    /// When the next message is due (rate mode), counting from `t0`.
    pub fn next_due(&self, t0: u64) -> Option<u64> {
        let rate = self.spec.rate?;
        (!self.all_sent()).then(|| t0 + (self.next as f64 * 1e9 / rate) as u64)
    }

    /// The next message to publish now, if any: its sequence number and send time.
    pub fn take_due(&mut self, t0: u64, now: u64) -> Option<(u64, u64)> {
        if self.all_sent() {
            return None;
        }
        let at = match self.next_due(t0) {
            Some(due) if due > now => return None,
            Some(due) => due,
            None if self.outstanding >= self.spec.window => return None,
            None => now,
        };
        let seq = self.next;
        self.next += 1;
        self.sent_at[seq as usize] = at;
        self.outstanding += 1;
        self.last_progress = now;
        if seq == self.spec.warmup {
            self.t_first = Some(at);
        }
        Some((seq, at))
    }

    /// The payload of message `seq`: its header, then filler up to `size` bytes.
    pub fn payload(seq: u64, at: u64, size: usize) -> Vec<u8> {
        let mut p = Vec::with_capacity(size.max(HEADER));
        p.extend_from_slice(&seq.to_le_bytes());
        p.extend_from_slice(&at.to_le_bytes());
        p.extend((HEADER..size).map(|i| (i * 31 + 7) as u8));
        p
    }

    /// (sequence number, send time) from the first bytes of a message.
    pub fn parse(head: &[u8]) -> Option<(u64, u64)> {
        let seq = u64::from_le_bytes(head.get(..8)?.try_into().ok()?);
        let at = u64::from_le_bytes(head.get(8..HEADER)?.try_into().ok()?);
        Some((seq, at))
    }

    /// Connection `conn` received message `seq` at `now`. Returns the message's latency to
    /// its last subscriber when this delivery completes a measured message; an error for a
    /// message that was never published (or is not this run's).
    pub fn delivered(
        &mut self,
        conn: usize,
        seq: u64,
        at: u64,
        now: u64,
    ) -> Result<Option<u64>, String> {
        if seq >= self.next || self.sent_at[seq as usize] != at {
            return Err(format!(
                "received message {seq} (sent at {at} ns), which this run did not publish"
            ));
        }
        self.all_deliveries += 1;
        self.last_progress = now;
        let want = &mut self.expect[conn];
        if seq < *want {
            // Delivered before, or arriving after a later one: either breaks the contract.
            self.duplicates += 1;
            return Ok(None);
        }
        self.missing += seq - *want;
        *want = seq + 1;
        let i = seq as usize;
        self.got[i] += 1;
        let measured = seq >= self.spec.warmup;
        if measured {
            self.deliveries += 1;
            self.t_last = now;
        }
        if self.got[i] < self.subscribers {
            return Ok(None);
        }
        self.outstanding -= 1;
        Ok(measured.then(|| now.saturating_sub(self.sent_at[i])))
    }

    /// At the end: (sequence numbers some subscriber skipped or never received, messages
    /// not received by every subscriber). `subscriber(conn)` says which connections are
    /// subscribers.
    pub fn tally(&self, subscriber: impl Fn(usize) -> bool) -> (u64, u64) {
        let never: u64 = (self.expect.iter().enumerate())
            .filter(|&(conn, _)| subscriber(conn))
            .map(|(_, &want)| self.next - want)
            .sum();
        let incomplete = self.got[..self.next as usize]
            .iter()
            .filter(|&&g| g < self.subscribers)
            .count() as u64;
        (self.missing + never, incomplete)
    }

    /// Why a run that made no progress for `drain_ns` gave up (`publisher`: its connection).
    pub fn stalled(&self, publisher: usize) -> String {
        let (_, incomplete) = self.tally(|c| c < publisher);
        format!(
            "deliveries stalled: {incomplete} message(s) not received by every subscriber \
             {:.1} s after the last progress",
            self.spec.drain_ns as f64 / 1e9
        )
    }

    /// The fan-out part of the report; connections below `publisher` are the subscribers.
    pub fn summary(&self, publisher: usize) -> FanoutReport {
        let (missing, incomplete) = self.tally(|c| c < publisher);
        FanoutReport {
            subscribers: publisher,
            published: self.published(),
            warmup: self.spec.warmup,
            window: self.spec.rate.is_none().then_some(self.spec.window),
            missing,
            duplicates: self.duplicates,
            incomplete,
        }
    }

    /// The measured window: first measured publish to last measured delivery (ns).
    pub fn window_ns(&self) -> u64 {
        self.t_first.map_or(0, |t| self.t_last.saturating_sub(t))
    }
}

/// `fanout --raw`: cuts a subscriber's byte stream (no framing) into fixed `size`-byte
/// records, whatever the read boundaries, and hands over each record's first `HEADER` bytes.
#[derive(Debug)]
pub struct Records {
    size: usize,
    /// Bytes of the current record received so far.
    pos: usize,
    head: [u8; HEADER],
}

impl Records {
    /// `size` is at least `HEADER`.
    pub fn new(size: usize) -> Records {
        assert!(size >= HEADER);
        Records {
            size,
            pos: 0,
            head: [0; HEADER],
        }
    }

    /// Take `bytes` in; `each` gets the header of every record they complete, in order.
    pub fn feed(&mut self, mut bytes: &[u8], mut each: impl FnMut(&[u8; HEADER])) {
        while !bytes.is_empty() {
            let take = (self.size - self.pos).min(bytes.len());
            if self.pos < HEADER {
                let h = (HEADER - self.pos).min(take);
                self.head[self.pos..self.pos + h].copy_from_slice(&bytes[..h]);
            }
            self.pos += take;
            bytes = &bytes[take..];
            if self.pos == self.size {
                self.pos = 0;
                each(&self.head);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_records_are_cut_at_their_size_whatever_the_reads() {
        let stream: Vec<u8> = (0..5u64)
            .flat_map(|seq| Fanout::payload(seq, 1000 + seq, 40))
            .collect();
        for chunk in [1, 3, 16, 17, 40, 41, 200] {
            let mut r = Records::new(40);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                r.feed(piece, |h| got.push(Fanout::parse(h).unwrap()));
            }
            let want: Vec<_> = (0..5u64).map(|s| (s, 1000 + s)).collect();
            assert_eq!(got, want, "reads of {chunk} bytes");
        }
        // Exactly the header: every 16 bytes is a record.
        let mut r = Records::new(HEADER);
        let mut n = 0;
        r.feed(&Fanout::payload(3, 4, HEADER).repeat(3), |h| {
            assert_eq!(Fanout::parse(h), Some((3, 4)));
            n += 1;
        });
        assert_eq!(n, 3);
    }

    fn spec(messages: u64, window: u64) -> Spec {
        Spec {
            messages,
            warmup: 1,
            rate: None,
            window,
            drain_ns: 1,
        }
    }

    #[test]
    fn the_header_round_trips() {
        let p = Fanout::payload(7, 123_456_789, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(Fanout::parse(&p[..HEADER]), Some((7, 123_456_789)));
        assert_eq!(Fanout::parse(&p[..10]), None);
    }

    #[test]
    fn a_window_bounds_what_is_incomplete_and_the_last_subscriber_sets_the_latency() {
        // Connections 0 and 1 subscribe; 2 publishes.
        let mut f = Fanout::new(spec(3, 2), 3);
        f.start(2, 0);
        assert_eq!(f.take_due(0, 10), Some((0, 10)));
        assert_eq!(f.take_due(0, 11), Some((1, 11)));
        assert_eq!(f.take_due(0, 12), None, "window of 2 full");
        assert_eq!(f.delivered(0, 0, 10, 20), Ok(None));
        assert_eq!(f.delivered(1, 0, 10, 25), Ok(None), "warm-up: not measured");
        assert_eq!(f.take_due(0, 26), Some((2, 26)));
        assert_eq!(f.delivered(0, 1, 11, 30), Ok(None));
        assert_eq!(f.delivered(1, 1, 11, 41), Ok(Some(30)), "41 - 11");
        assert_eq!(f.delivered(1, 2, 26, 50), Ok(None));
        assert_eq!(f.delivered(0, 2, 26, 56), Ok(Some(30)));
        assert!(f.done());
        assert_eq!((f.deliveries, f.all_deliveries), (4, 6));
        assert_eq!(f.window_ns(), 56 - 11);
        assert_eq!(f.tally(|c| c < 2), (0, 0));
        assert_eq!(f.duplicates, 0);
    }

    #[test]
    fn a_stalled_run_reports_what_its_subscribers_lack() {
        // Connections 0 and 1 subscribe; 2 publishes two messages, 1 gets only the first.
        let mut f = Fanout::new(spec(2, 2), 3);
        f.start(2, 0);
        assert_eq!(f.take_due(0, 10), Some((0, 10)));
        assert_eq!(f.take_due(0, 11), Some((1, 11)));
        for (conn, seq) in [(0, 0), (0, 1), (1, 0)] {
            assert!(f.delivered(conn, seq, 10 + seq, 20).is_ok());
        }
        assert!(!f.done());
        let r = f.summary(2);
        assert_eq!((r.subscribers, r.published, r.window), (2, 2, Some(2)));
        assert_eq!((r.missing, r.duplicates, r.incomplete), (1, 0, 1));
        let why = f.stalled(2);
        assert!(
            why.starts_with("deliveries stalled: 1 message(s) not received"),
            "{why}"
        );
    }

    #[test]
    fn gaps_duplicates_and_strangers_are_counted() {
        let mut f = Fanout::new(spec(4, 10), 3);
        f.start(2, 0);
        while f.take_due(0, 5).is_some() {}
        assert_eq!(f.delivered(0, 0, 5, 6), Ok(None));
        assert_eq!(f.delivered(0, 2, 5, 6), Ok(None)); // 1 skipped
        assert_eq!(f.delivered(0, 2, 5, 6), Ok(None)); // twice
        assert_eq!(f.delivered(0, 1, 5, 6), Ok(None)); // late
        assert!(f.delivered(0, 9, 5, 6).is_err(), "never published");
        assert!(f.delivered(0, 3, 4, 6).is_err(), "not this run's send time");
        for seq in 0..4 {
            f.delivered(1, seq, 5, 7).unwrap();
        }
        assert_eq!((f.missing, f.duplicates), (1, 2));
        // Connection 0 never got 3 (nor, counted above, 1): two messages lack a subscriber.
        assert_eq!(f.tally(|c| c < 2), (2, 2));
        assert!(!f.done());
    }

    #[test]
    fn a_rate_schedules_from_the_start_time() {
        let mut f = Fanout::new(
            Spec {
                rate: Some(1000.0),
                ..spec(3, 1)
            },
            2,
        );
        f.start(1, 0);
        assert_eq!(f.take_due(100, 100), Some((0, 100)));
        assert_eq!(f.take_due(100, 200), None);
        assert_eq!(f.next_due(100), Some(1_000_100));
        assert_eq!(f.take_due(100, 3_000_000), Some((1, 1_000_100)));
        assert_eq!(
            f.take_due(100, 3_000_000),
            Some((2, 2_000_100)),
            "catches up"
        );
        assert_eq!(f.next_due(100), None);
    }
}
