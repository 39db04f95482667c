//! Owns the fan-out plan: which bytes of one publish each subscriber takes, by how it takes
//! messages (`conn::Takes`) — the shared WebSocket frame, the frame compressed once per window
//! size for every permessage-deflate subscriber without server context (RFC 7692 §7.2.1), the
//! connection's own compressor when it keeps context, the SSE event or the stream chunk
//! (each encoded once, on first use), or the release of a held long poll. The reactor queues
//! what the plan says; this decides, for every subscriber alike.
//! Must not: touch a connection or a socket, or encode anything once per subscriber that can
//! be encoded once per publish.

use super::Published;
use crate::conn::{BroadcastForm, SharedFrame, Takes};
use crate::ws::deflate::Compressors;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

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
