//! Unit tests of the hub: delivery lists, limits, history and gaps, and the memory bounds
//! (eviction of idle topics, refusal when every topic is in use, history bytes, numbering
//! that never goes backwards).
//! Must not: open a socket or read a clock.

use super::*;
use crate::ws::deflate::Compressors;

fn hub() -> Hub {
    Hub::new(PubSubLimits {
        max_topics_per_conn: 2,
        max_topic_len: 8,
        history_len: 3,
        ..PubSubLimits::default()
    })
}

#[test]
fn a_message_is_deflated_once_per_window_size() {
    let text = "{\"price\":42,\"ok\":true}".repeat(40);
    let p = Published::encode(7, true, text.as_bytes());
    let a = p
        .deflated(&mut Compressors::new(), 15, 256)
        .expect("compressible");
    assert!(
        Rc::ptr_eq(&a, &p.deflated(&mut Compressors::new(), 15, 256).unwrap()),
        "cached"
    );
    assert_eq!(a[0], 0xC1, "FIN + RSV1 (RFC 7692 §6) + text");
    assert!(a.len() < p.frame.len() / 4);
    let b = p
        .deflated(&mut Compressors::new(), 9, 256)
        .expect("compressible");
    assert!(!Rc::ptr_eq(&a, &b));
    // Below the threshold, and with the unusable 8-bit window, the plain frame is sent.
    let short = Published::encode(8, true, b"{\"price\":42}");
    assert_eq!(short.deflated(&mut Compressors::new(), 15, 256), None);
    assert_eq!(p.deflated(&mut Compressors::new(), 8, 256), None);
}

#[test]
fn publish_reaches_exactly_the_subscribers() {
    let mut h = hub();
    for i in 0..5 {
        h.subscribe(ConnId(i), "news").unwrap();
    }
    h.subscribe(ConnId(9), "other").unwrap();
    h.unsubscribe(ConnId(2), "news");
    h.unsubscribe_all(ConnId(4));
    let (p, subs) = h.publish("news", true, b"hello").unwrap();
    let mut got: Vec<u64> = subs.iter().map(|c| c.0).collect();
    got.sort();
    assert_eq!(got, vec![0, 1, 3]);
    assert_eq!(p.payload(), b"hello");
    assert_eq!(&p.frame[..2], &[0x81, 5], "encoded once as a text frame");
}

#[test]
fn limits_on_names_and_topics_per_connection() {
    let mut h = hub();
    assert_eq!(h.subscribe(ConnId(1), ""), Err(TopicError::EmptyName));
    assert_eq!(
        h.subscribe(ConnId(1), "123456789"),
        Err(TopicError::NameTooLong { len: 9, max: 8 })
    );
    h.subscribe(ConnId(1), "a").unwrap();
    h.subscribe(ConnId(1), "b").unwrap();
    h.subscribe(ConnId(1), "a").unwrap(); // again: no change
    assert_eq!(
        h.subscribe(ConnId(1), "c"),
        Err(TopicError::TooManyTopics { max: 2 })
    );
}

#[test]
fn history_is_bounded_and_reports_gaps() {
    let mut h = hub();
    for i in 1..=5u8 {
        h.publish("t", false, &[i]).unwrap();
    }
    let (msgs, gap) = h.history_after("t", 3);
    assert_eq!(msgs.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![4, 5]);
    assert!(!gap);
    let (msgs, gap) = h.history_after("t", 0);
    assert_eq!(
        msgs.iter().map(|p| p.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(gap, "1 and 2 fell out of the history");
    let (msgs, gap) = h.history_after("t", 5);
    assert!(msgs.is_empty() && !gap);
    assert_eq!(h.last_seq("t"), 5);
}

#[test]
fn interest_changes_are_recorded_once_tracked() {
    let mut h = hub();
    h.subscribe(ConnId(1), "a").unwrap();
    assert!(h.take_interest().is_empty(), "not tracked yet");
    h.track_interest();
    h.subscribe(ConnId(2), "a").unwrap(); // not the first: no change
    h.subscribe(ConnId(2), "b").unwrap();
    h.unsubscribe(ConnId(1), "a");
    h.wait(ConnId(3), "c", 0);
    h.subscribe(ConnId(3), "c").unwrap();
    h.take_waiting(ConnId(3));
    h.unsubscribe_all(ConnId(2));
    let got: Vec<(String, bool)> = h
        .take_interest()
        .into_iter()
        .map(|(t, on)| (t.into(), on))
        .collect();
    let want = [
        ("b", true),
        ("c", true),
        ("c", false),
        ("a", false),
        ("b", false),
    ];
    assert_eq!(got, want.map(|(t, on)| (t.to_string(), on)));
    assert!(h.take_interest().is_empty());
}

#[test]
fn topics_without_subscribers_or_history_are_dropped() {
    let mut h = Hub::new(PubSubLimits {
        history_len: 0,
        ..PubSubLimits::default()
    });
    h.subscribe(ConnId(1), "x").unwrap();
    h.subscribe(ConnId(1), "x").unwrap();
    h.subscribe(ConnId(2), "x").unwrap();
    h.subscribe(ConnId(2), "y").unwrap();
    assert_eq!((h.topic_count(), h.subscription_count()), (2, 3));
    h.unsubscribe(ConnId(2), "y");
    h.unsubscribe(ConnId(2), "nope");
    assert_eq!((h.topic_count(), h.subscription_count()), (1, 2));
    h.unsubscribe_all(ConnId(1));
    h.unsubscribe_all(ConnId(2));
    assert_eq!((h.topic_count(), h.subscription_count()), (0, 0));
}

#[test]
fn a_dropped_topic_continues_its_numbering() {
    let mut h = Hub::new(PubSubLimits {
        history_len: 0,
        ..PubSubLimits::default()
    });
    // Nobody listens and nothing is kept: the topic is dropped at once, its number kept.
    assert_eq!(h.publish("a", true, b"1").unwrap().0.seq, 1);
    assert_eq!((h.topic_count(), h.last_seq("a")), (0, 1));
    h.subscribe(ConnId(1), "a").unwrap();
    assert_eq!(h.publish("a", true, b"2").unwrap().0.seq, 2);
    h.unsubscribe(ConnId(1), "a");
    assert_eq!((h.topic_count(), h.last_seq("a")), (0, 2));
    assert_eq!(
        h.publish("a", true, b"3").unwrap().0.seq,
        3,
        "never 1 again"
    );
    let p = Rc::new(Published::encode(7, true, b"from another worker"));
    assert_eq!(h.publish_numbered("a", p).0.seq, 7);
    assert_eq!(h.publish("a", true, b"8").unwrap().0.seq, 8);
    assert_eq!(h.last_seq("never-used"), 0);
}

/// A hub with room for `max_topics` topics of `history_len` messages each.
fn capped(max_topics: usize, history_len: usize, max_history_bytes: usize) -> Hub {
    Hub::new(PubSubLimits {
        max_topics,
        history_len,
        max_history_bytes,
        ..PubSubLimits::default()
    })
}

fn seqs(h: &Hub, topic: &str) -> Vec<u64> {
    h.history_after(topic, 0).0.iter().map(|p| p.seq).collect()
}

#[test]
fn idle_topics_are_evicted_least_recently_published_first() {
    let mut h = capped(3, 2, usize::MAX);
    for t in ["a", "b", "c"] {
        h.publish(t, true, b"x").unwrap(); // nobody listens: idle, kept for the history
    }
    h.publish("a", true, b"y").unwrap(); // "a" is now the most recently published
    assert_eq!((h.topic_count(), h.take_evictions()), (3, 0));
    h.subscribe(ConnId(1), "d").unwrap();
    assert!(!h.exists("b"), "b was published to least recently");
    assert!(h.exists("a") && h.exists("c") && h.exists("d"));
    assert_eq!((h.topic_count(), h.take_evictions()), (3, 1));
    assert_eq!(h.take_evictions(), 0, "counted once");
    // The evicted topic's number survives; its history does not.
    assert_eq!(h.last_seq("b"), 1);
    let (msgs, gap) = h.history_after("b", 0);
    assert!(
        msgs.is_empty() && gap,
        "message 1 of b is gone, and b says so"
    );
    assert_eq!(h.publish("b", true, b"z").unwrap().0.seq, 2);
    assert!(!h.exists("c"), "then c");
    assert_eq!(seqs(&h, "a"), vec![1, 2]);
}

#[test]
fn a_hub_full_of_topics_in_use_refuses_new_ones() {
    let mut h = capped(2, 2, usize::MAX);
    h.subscribe(ConnId(1), "x").unwrap();
    h.subscribe(ConnId(2), "y").unwrap();
    let full = Err(TopicError::HubFull { max: 2 });
    assert_eq!(h.subscribe(ConnId(3), "z"), full);
    assert_eq!(h.publish("z", true, b"m").map(|_| ()), full);
    assert_eq!(h.check_room("z", 1), full);
    assert_eq!(TopicError::HubFull { max: 2 }.status(), 503);
    assert!(
        !h.exists("z") && h.last_seq("z") == 0,
        "a refused publish uses no number"
    );
    // Topics that exist still take subscribers and publishes.
    h.subscribe(ConnId(3), "x").unwrap();
    assert_eq!(h.publish("x", true, b"m").unwrap().1.len(), 2);
    // A topic whose last subscriber left keeps its history and becomes evictable.
    h.publish("y", true, b"kept").unwrap();
    h.unsubscribe_all(ConnId(2));
    assert!(h.exists("y"));
    assert_eq!(h.check_room("z", 1), Ok(()));
    h.subscribe(ConnId(3), "z").unwrap();
    assert!(!h.exists("y"));
    assert_eq!(h.take_evictions(), 1);
}

#[test]
fn without_history_a_publish_needs_no_room() {
    let mut h = capped(1, 0, usize::MAX);
    h.subscribe(ConnId(1), "busy").unwrap();
    // Nothing would be kept for "quiet": no slot needed, the number still counts.
    let (p, subs) = h.publish("quiet", true, b"m").unwrap();
    assert!(subs.is_empty());
    assert_eq!(p.seq, 1);
    assert_eq!(h.publish("quiet", true, b"m").unwrap().0.seq, 2);
    assert_eq!(h.check_room("quiet", 1000), Ok(()));
    assert_eq!(h.topic_count(), 1);
}

#[test]
fn history_bytes_over_the_cap_drop_the_oldest_messages_across_topics() {
    let cost = Published::cost_for(1);
    let mut h = capped(100, 10, 3 * cost);
    h.subscribe(ConnId(1), "a").unwrap();
    h.publish("a", true, b"1").unwrap();
    h.publish("b", true, b"1").unwrap();
    h.publish("a", true, b"2").unwrap();
    assert_eq!(h.history_bytes(), 3 * cost);
    h.publish("b", true, b"2").unwrap(); // a's first message is the oldest of all
    assert_eq!((seqs(&h, "a"), seqs(&h, "b")), (vec![2], vec![1, 2]));
    assert_eq!(h.history_bytes(), 3 * cost);
    let (msgs, gap) = h.history_after("a", 0);
    assert!(
        gap && msgs.len() == 1,
        "the trimmed message is reported as a gap"
    );
    h.publish("a", true, b"3").unwrap(); // drops b1
    h.publish("a", true, b"4").unwrap(); // drops a2
    assert_eq!((seqs(&h, "a"), seqs(&h, "b")), (vec![3, 4], vec![2]));
    h.publish("a", true, b"5").unwrap(); // drops b2
                                         // b (no subscribers) lost all its history: dropped, its number kept.
    assert_eq!(seqs(&h, "a"), vec![3, 4, 5]);
    assert!(!h.exists("b"));
    assert_eq!(h.last_seq("b"), 2);
    // A message larger than the whole cap is delivered but never kept; the history before
    // it goes too, so that a client resuming after 5 is told it missed 6.
    let big = vec![b'x'; 4 * cost];
    let (p, subs) = h.publish("a", false, &big).unwrap();
    assert_eq!((p.seq, subs.len()), (6, 1));
    assert_eq!((seqs(&h, "a"), h.history_bytes()), (vec![], 0));
    let (msgs, gap) = h.history_after("a", 5);
    assert!(msgs.is_empty() && gap);
    h.publish("a", true, b"7").unwrap();
    assert_eq!(seqs(&h, "a"), vec![7]);
    h.unsubscribe_all(ConnId(1));
    assert_eq!(h.history_bytes(), cost);
}

#[test]
fn numbers_never_go_backwards_when_evicted_topics_are_forgotten() {
    // One slot and one remembered number: the floor has to do the rest.
    let mut h = capped(1, 5, usize::MAX);
    for _ in 0..3 {
        h.publish("a", true, b"x").unwrap();
    }
    h.publish("b", true, b"x").unwrap(); // evicts a: its 3 is remembered
    assert_eq!(h.last_seq("a"), 3);
    h.publish("c", true, b"x").unwrap(); // evicts b (1); a's 3 falls into the floor
    assert_eq!(h.last_seq("a"), 3);
    assert_eq!(h.last_seq("never"), 3, "unknown names read as the floor");
    assert_eq!(h.publish("a", true, b"x").unwrap().0.seq, 4);
    let mut last = std::collections::HashMap::new();
    for i in 0..2000u64 {
        let t = format!("t{}", i % 37);
        let seq = h.publish(&t, true, b"x").unwrap().0.seq;
        let before = last.insert(t, seq).unwrap_or(0);
        assert!(seq > before, "{seq} after {before}");
        assert!(h.topic_count() <= 1);
    }
}

#[test]
fn a_numbered_publish_the_hub_has_no_room_for_keeps_only_its_number() {
    let mut h = capped(1, 5, usize::MAX);
    h.subscribe(ConnId(1), "x").unwrap();
    let p = Rc::new(Published::encode(7, true, b"from another worker"));
    let (p, subs) = h.publish_numbered("y", p);
    assert_eq!((p.seq, subs.len()), (7, 0));
    assert!(!h.exists("y"));
    assert_eq!(h.last_seq("y"), 7);
    let (msgs, gap) = h.history_after("y", 6);
    assert!(msgs.is_empty() && gap);
}
