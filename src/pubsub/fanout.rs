//! Owns the fan-out plan: which bytes of one publish each subscriber takes, by how it takes
//! messages (`conn::Takes`) — the shared WebSocket frame, the frame compressed once per window
//! size for every permessage-deflate subscriber without server context (RFC 7692 §7.2.1), the
//! connection's own compressor when it keeps context, the SSE event or the stream chunk
//! (each encoded once, on first use), or the release of a held long poll. The reactor queues
//! what the plan says; this decides, for every subscriber alike. A `Run` is the same plan for
//! several publishes of one topic in a row, joined once per form.
//! Must not: touch a connection or a socket, or encode anything once per subscriber that can
//! be encoded once per publish.

use super::Published;
use crate::conn::{BroadcastForm, SharedFrame, Takes};
use crate::ws::deflate::Compressors;
use std::rc::Rc;

/// What one subscriber gets of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fanout {
    /// These bytes, shared with every subscriber that takes the same form (no copy).
    Shared(SharedFrame),
    /// The message through the connection's own compressor (`conn::Push::Own`): its
    /// permessage-deflate keeps context, so no frame compressed by anyone else fits.
    OwnCompressor,
    /// The connection is a long poll: if it is held, answer it with the batch and let it go
    /// back to reading requests; if not, it no longer listens.
    ReleasePoll,
}

/// The plan for one subscriber. `compress_min` is `--compression-threshold`.
pub fn plan(
    published: &Published,
    takes: Takes,
    compressors: &mut Compressors,
    compress_min: usize,
) -> Fanout {
    match takes {
        Takes::Frame(BroadcastForm::Plain) => Fanout::Shared(published.frame.clone()),
        // Compressed once per window size for all of them; sent plain when it does not shrink.
        Takes::Frame(BroadcastForm::Fresh { bits }) => Fanout::Shared(
            published
                .deflated(compressors, bits, compress_min)
                .unwrap_or_else(|| published.frame.clone()),
        ),
        Takes::Frame(BroadcastForm::OwnContext) => Fanout::OwnCompressor,
        Takes::SseEvent => Fanout::Shared(published.sse_event()),
        Takes::StreamChunk => Fanout::Shared(published.stream_chunk()),
        Takes::HeldPoll => Fanout::ReleasePoll,
        Takes::Positioned => Fanout::Shared(published.positioned()),
    }
}

/// A run of one topic's publishes in a row, delivered together: each subscriber gets the
/// whole run in its form as one shared segment — one queue entry, one slow-consumer check,
/// one contiguous write — instead of one of each per message. Each form is joined once, on
/// first use, for every subscriber that takes it; a run of one is that message's own bytes.
#[derive(Debug, Default)]
pub struct Run {
    topic: String,
    msgs: Vec<Rc<Published>>,
    /// The frames' bytes: what a subscriber's queue grows by (about; SSE events are longer).
    bytes: usize,
    joined: Vec<(Takes, SharedFrame)>,
}

impl Run {
    /// A run stops growing here: past it, joining copies more than the per-message segments
    /// it saves cost, and one subscriber's queue should not grow by more in one push.
    pub const MAX_BYTES: usize = 64 * 1024;

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The publishes, in order.
    pub fn msgs(&self) -> &[Rc<Published>] {
        &self.msgs
    }

    /// May `published` on `topic` join the run (it is empty, or the same topic with room)?
    pub fn fits(&self, topic: &str, published: &Published) -> bool {
        self.msgs.is_empty()
            || (self.topic == topic && self.bytes + published.frame.len() <= Run::MAX_BYTES)
    }

    /// Add the next publish (the caller checked `fits`).
    pub fn push(&mut self, topic: &str, published: Rc<Published>) {
        if self.msgs.is_empty() {
            self.topic.clear();
            self.topic.push_str(topic);
        }
        self.bytes += published.frame.len();
        self.msgs.push(published);
    }

    /// Empty it, keeping its allocations for the next run.
    pub fn clear(&mut self) {
        self.msgs.clear();
        self.joined.clear();
        self.bytes = 0;
    }

    /// The plan for one subscriber: as `plan`, with the shared forms joined over the run.
    #[inline]
    pub fn plan(&mut self, takes: Takes, compressors: &mut Compressors, min: usize) -> Fanout {
        if let [one] = self.msgs.as_slice() {
            return plan(one, takes, compressors, min);
        }
        self.joined_plan(takes, compressors, min)
    }

    /// The plan for a run of several: each shared form joined on first use.
    fn joined_plan(&mut self, takes: Takes, compressors: &mut Compressors, min: usize) -> Fanout {
        if let Some((_, bytes)) = self.joined.iter().find(|(t, _)| *t == takes) {
            return Fanout::Shared(bytes.clone());
        }
        let mut all = Vec::new();
        for p in &self.msgs {
            match plan(p, takes, compressors, min) {
                Fanout::Shared(bytes) => all.extend_from_slice(&bytes),
                other => return other, // the same for every message of the run
            }
        }
        let bytes: SharedFrame = all.into();
        self.joined.push((takes, bytes.clone()));
        Fanout::Shared(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_gets_its_encoding_shared_by_every_subscriber_of_that_form() {
        let msg = "x".repeat(1000);
        let p = Published::encode(7, true, msg.as_bytes());
        let mut c = Compressors::new();
        let plain = plan(&p, Takes::Frame(BroadcastForm::Plain), &mut c, 256);
        assert_eq!(plain, Fanout::Shared(p.frame.clone()));
        let fresh = Takes::Frame(BroadcastForm::Fresh { bits: 15 });
        let (Fanout::Shared(a), Fanout::Shared(b)) =
            (plan(&p, fresh, &mut c, 256), plan(&p, fresh, &mut c, 256))
        else {
            panic!("a compressed frame");
        };
        assert!(
            Rc::ptr_eq(&a, &b),
            "compressed once for every such subscriber"
        );
        assert_eq!(a[0] & 0x40, 0x40, "RSV1 set (RFC 7692 §6)");
        assert!(a.len() < p.frame.len());
        // Below the threshold the plain frame goes out.
        let short = Published::encode(8, true, b"short");
        assert_eq!(
            plan(&short, fresh, &mut c, 256),
            Fanout::Shared(short.frame.clone())
        );
        let own = Takes::Frame(BroadcastForm::OwnContext);
        assert_eq!(plan(&p, own, &mut c, 256), Fanout::OwnCompressor);
        let (Fanout::Shared(e1), Fanout::Shared(e2)) = (
            plan(&p, Takes::SseEvent, &mut c, 256),
            plan(&p, Takes::SseEvent, &mut c, 256),
        ) else {
            panic!("an SSE event");
        };
        assert!(Rc::ptr_eq(&e1, &e2), "the SSE event is encoded once");
        assert!(
            e1.starts_with(b"id: 7\n"),
            "{:?}",
            String::from_utf8_lossy(&e1)
        );
        assert_eq!(
            plan(&p, Takes::StreamChunk, &mut c, 256),
            Fanout::Shared(p.stream_chunk())
        );
        assert_eq!(plan(&p, Takes::HeldPoll, &mut c, 256), Fanout::ReleasePoll);
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;

    fn run(msgs: &[&str]) -> Run {
        let mut r = Run::default();
        for (i, m) in msgs.iter().enumerate() {
            let p = Rc::new(Published::encode(i as u64 + 1, true, m.as_bytes()));
            assert!(r.fits("t", &p));
            r.push("t", p);
        }
        r
    }

    #[test]
    fn a_run_is_every_message_in_order_in_each_form_joined_once() {
        let mut c = Compressors::new();
        let mut r = run(&["one", "two", "three"]);
        let plain = Takes::Frame(BroadcastForm::Plain);
        let Fanout::Shared(a) = r.plan(plain, &mut c, 256) else {
            panic!("shared");
        };
        let want: Vec<u8> = r.msgs().iter().flat_map(|p| p.frame.to_vec()).collect();
        assert_eq!(&a[..], &want[..]);
        let Fanout::Shared(b) = r.plan(plain, &mut c, 256) else {
            panic!("shared");
        };
        assert!(Rc::ptr_eq(&a, &b), "joined once for every subscriber");
        let Fanout::Shared(sse) = r.plan(Takes::SseEvent, &mut c, 256) else {
            panic!("shared");
        };
        let text = String::from_utf8(sse.to_vec()).unwrap();
        let ids: Vec<&str> = text.lines().filter(|l| l.starts_with("id: ")).collect();
        assert_eq!(ids, ["id: 1", "id: 2", "id: 3"], "{text:?}");
        let own = Takes::Frame(BroadcastForm::OwnContext);
        assert_eq!(r.plan(own, &mut c, 256), Fanout::OwnCompressor);
        assert_eq!(r.plan(Takes::HeldPoll, &mut c, 256), Fanout::ReleasePoll);
        r.clear();
        assert!(r.is_empty());
        let mut r = run(&["alone"]);
        let p = r.msgs()[0].clone();
        assert_eq!(r.plan(plain, &mut c, 256), Fanout::Shared(p.frame.clone()));
    }

    #[test]
    fn a_run_holds_one_topic_and_stops_at_its_size() {
        let mut r = run(&["a"]);
        let other = Published::encode(2, true, b"b");
        assert!(!r.fits("u", &other), "another topic starts another run");
        assert!(r.fits("t", &other));
        let big = Rc::new(Published::encode(3, false, &vec![0; Run::MAX_BYTES]));
        assert!(!r.fits("t", &big), "past MAX_BYTES a run ends");
        r.clear();
        assert!(r.fits("u", &big), "an empty run takes any message");
        r.push("u", big);
        assert_eq!(r.topic(), "u");
    }
}
