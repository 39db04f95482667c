//! Owns what a reconnecting subscriber decides and checks, apart from the loop that moves its
//! bytes (`storm`): when to try again (the wait a close reason's `retry-after-ms=` asks for,
//! full-jitter exponential backoff, or the naive baseline that ignores both), what a
//! `wsloop.positions` message says (a position or a gap notice), and whether a client's
//! positions hold — strictly increasing, and every acknowledged one received.
//! Must not: touch a socket or the clock, or panic on anything a server or a file says.

use serde::Deserialize;

const MS: u64 = 1_000_000;
#[cfg(test)]
const SEC: u64 = 1_000_000_000;
/// The subprotocol under which every message carries its position (docs/protocol.md).
pub const SUBPROTOCOL: &str = "wsloop.positions";
/// How a close reason carries the server's wait: `…; retry-after-ms=N`.
pub const HINT: &str = "retry-after-ms=";

/// When a client reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Obey `retry-after-ms=` (held to `max_ns`); without one, full jitter over
    /// [0, min(max, initial · 2^attempt)) — the browser client's rule (clients/js).
    Hints { initial_ns: u64, max_ns: u64 },
    /// Ignore hints: at once after a connection that worked was closed, `retry_ns` after
    /// anything else (refused, reset, timed out, closed before a message arrived).
    Naive { retry_ns: u64 },
}

/// How a connection, or an attempt at one, ended, as far as the next attempt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The server sent a close frame; `worked`: a message had arrived on the connection.
    Closed { hint_ms: Option<u64>, worked: bool },
    /// No close frame: refused, reset, dropped, timed out, refused with an HTTP status.
    Failed { worked: bool },
}

impl Ended {
    pub fn worked(self) -> bool {
        match self {
            Ended::Closed { worked, .. } | Ended::Failed { worked } => worked,
        }
    }
}

impl Policy {
    /// Nanoseconds to wait before the next attempt. `attempt`: attempts since the last
    /// connection that worked (0 for the first); `random`: 64 random bits.
    pub fn delay_ns(self, ended: Ended, attempt: u32, random: u64) -> u64 {
        match (self, ended) {
            (Policy::Naive { .. }, Ended::Closed { worked: true, .. }) => 0,
            (Policy::Naive { retry_ns }, _) => retry_ns,
            (
                Policy::Hints { max_ns, .. },
                Ended::Closed {
                    hint_ms: Some(ms), ..
                },
            ) => ms.saturating_mul(MS).min(max_ns),
            (Policy::Hints { initial_ns, max_ns }, _) => {
                let cap = initial_ns
                    .saturating_mul(1u64 << attempt.min(30))
                    .min(max_ns);
                if cap == 0 {
                    0
                } else {
                    random % cap
                }
            }
        }
    }
}

/// The wait a close reason asks for (`…retry-after-ms=N…`), if it carries a valid one.
pub fn hint_ms(reason: &str) -> Option<u64> {
    let at = reason.find(HINT)? + HINT.len();
    let digits = &reason[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The positions one client received, as ascending runs of consecutive numbers, and what
/// broke the order. A resumed stream without loss stays one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Received {
    runs: Vec<(u64, u64)>,
    /// Positions accepted.
    pub count: u64,
    /// Positions not above the last one (a repeat, or out of order): dropped and counted.
    pub repeats: u64,
    /// Numbers jumped over between two positions received.
    pub skipped: u64,
}

impl Received {
    pub fn last(&self) -> Option<u64> {
        self.runs.last().map(|r| r.1)
    }

    /// Record position `p`; false (counted as a repeat) when it is not above the last one.
    pub fn push(&mut self, p: u64) -> bool {
        match self.runs.last_mut() {
            Some(r) if p <= r.1 => {
                self.repeats += 1;
                return false;
            }
            Some(r) if p == r.1 + 1 => r.1 = p,
            Some(r) => {
                self.skipped += p - r.1 - 1;
                self.runs.push((p, p));
            }
            None => self.runs.push((p, p)),
        }
        self.count += 1;
        true
    }

    /// Of `acked` (ascending), the positions this client never received: calls `lack(i)`
    /// with the index of each and returns how many.
    pub fn missing(&self, acked: &[u64], mut lack: impl FnMut(usize)) -> u64 {
        let (mut n, mut r) = (0, 0);
        for (i, &p) in acked.iter().enumerate() {
            while r < self.runs.len() && self.runs[r].1 < p {
                r += 1;
            }
            if !(r < self.runs.len() && self.runs[r].0 <= p) {
                n += 1;
                lack(i);
            }
        }
        n
    }
}

/// The positions a publisher had acknowledged: one decimal number per line, any order.
pub fn parse_acked(text: &str) -> Result<Vec<u64>, String> {
    let mut v = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        v.push(line.parse::<u64>().map_err(|_| {
            format!(
                "line {}: {line:?} is not a position (decimal digits)",
                i + 1
            )
        })?);
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// A message under `wsloop.positions`: a position, or a gap notice.
#[derive(Debug, Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    position: Option<&'a str>,
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
}

/// What a complete message from the server is.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Position(u64),
    Gap,
}

pub fn parse_message(payload: &[u8]) -> Result<Message, String> {
    let w: Wire = serde_json::from_slice(payload).map_err(|e| {
        let text = String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned();
        format!("not a {SUBPROTOCOL} message ({e}): {text:?}")
    })?;
    match (w.position, w.kind) {
        (Some(p), _) => p
            .parse()
            .map(Message::Position)
            .map_err(|_| format!("position {p:?} is not a decimal number")),
        (None, Some("gap")) => Ok(Message::Gap),
        (None, k) => Err(format!("a message without a position (type {k:?})")),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_read_from_close_reasons() {
        assert_eq!(
            hint_ms("server shutting down; retry-after-ms=1234"),
            Some(1234)
        );
        assert_eq!(
            hint_ms("over the handshake budget; retry-after-ms=0"),
            Some(0)
        );
        assert_eq!(hint_ms("retry-after-ms=15; more"), Some(15));
        assert_eq!(hint_ms("server shutting down"), None);
        assert_eq!(hint_ms("retry-after-ms="), None);
        assert_eq!(hint_ms("retry-after-ms=-5"), None);
        assert_eq!(hint_ms("retry-after-ms=99999999999999999999999"), None);
    }

    #[test]
    fn the_policies_wait_as_documented() {
        let hints = Policy::Hints {
            initial_ns: 500 * MS,
            max_ns: 30 * SEC,
        };
        let closed = |hint_ms, worked| Ended::Closed { hint_ms, worked };
        assert_eq!(hints.delay_ns(closed(Some(1234), true), 0, 7), 1234 * MS);
        assert_eq!(hints.delay_ns(closed(Some(99_000), true), 0, 7), 30 * SEC);
        // Full jitter: below initial · 2^attempt, capped.
        for r in [0, 1, 499_999_999, u64::MAX] {
            assert!(hints.delay_ns(closed(None, true), 0, r) < 500 * MS);
            assert!(hints.delay_ns(Ended::Failed { worked: false }, 2, r) < 2 * SEC);
            assert!(hints.delay_ns(Ended::Failed { worked: false }, 40, r) < 30 * SEC);
        }
        let naive = Policy::Naive { retry_ns: 100 * MS };
        assert_eq!(naive.delay_ns(closed(Some(5000), true), 3, 7), 0);
        assert_eq!(naive.delay_ns(closed(Some(5000), false), 0, 7), 100 * MS);
        assert_eq!(
            naive.delay_ns(Ended::Failed { worked: true }, 0, 7),
            100 * MS
        );
    }

    #[test]
    fn positions_must_increase_and_acked_ones_be_there() {
        let mut r = Received::default();
        for p in [10, 11, 12, 15, 16] {
            assert!(r.push(p));
        }
        assert!(!r.push(16), "a repeat");
        assert!(!r.push(3), "out of order");
        assert_eq!(
            (r.count, r.repeats, r.skipped, r.last()),
            (5, 2, 2, Some(16))
        );
        let mut lacked = Vec::new();
        let acked = [9, 10, 12, 13, 14, 16, 17];
        assert_eq!(r.missing(&acked, |i| lacked.push(acked[i])), 4);
        assert_eq!(lacked, [9, 13, 14, 17]);
        assert_eq!(Received::default().missing(&acked, |_| {}), 7);
        assert_eq!(r.missing(&[], |_| {}), 0);
    }

    #[test]
    fn messages_and_acked_files_are_parsed_without_panicking() {
        assert_eq!(
            parse_message(br#"{"position":"1765093934123457","text":"m1"}"#),
            Ok(Message::Position(1_765_093_934_123_457))
        );
        assert_eq!(
            parse_message(br#"{"type":"gap","topic":"t","after":"3","resumed_at":"9"}"#),
            Ok(Message::Gap)
        );
        assert!(parse_message(b"m1").is_err());
        assert!(parse_message(br#"{"position":"x1"}"#).is_err());
        assert!(parse_message(br#"{"text":"m1"}"#).is_err());
        assert!(parse_message(&[0xff, 0x00]).is_err());
        assert_eq!(parse_acked("30\n10\n\n20\n10\n"), Ok(vec![10, 20, 30]));
        assert!(parse_acked("10\nten\n").unwrap_err().contains("line 2"));
    }
}
