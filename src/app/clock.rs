//! Owns `Clock`: `/clock` pushes the time every second. One timer publishes to one topic,
//! `clock`, however many clients listen — not one timer per client.
//! Must not: start a timer per client or read a clock: the reactor's tick hands it the time.

use std::time::Duration;

use super::{Access, Ctx, Handler, Upgrade};
use crate::text::Civil;
use crate::ws::Message;

/// The topic the clock publishes to.
pub const CLOCK_TOPIC: &str = "clock";

#[derive(Debug, Default)]
pub struct Clock;

impl Handler for Clock {
    fn on_open(&mut self, ctx: &mut Ctx<'_, '_>, _up: &Upgrade<'_, '_>) {
        ctx.subscribe(CLOCK_TOPIC);
    }

    fn access(&self, _up: &Upgrade<'_, '_>) -> Access {
        Access {
            reads: Some(CLOCK_TOPIC.into()),
            writes: None,
        }
    }

    fn owned_topics(&self) -> &[&str] {
        &[CLOCK_TOPIC]
    }

    /// Clients have nothing to say to a clock; their messages are ignored.
    fn on_message(&mut self, _ctx: &mut Ctx<'_, '_>, _msg: Message<'_>) {}

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, '_>) {
        let Some(unix_ms) = ctx.unix_ms() else { return };
        let tick = format!(
            r#"{{"type":"tick","time":"{}","unix_ms":{unix_ms}}}"#,
            iso8601(unix_ms)
        );
        ctx.publish(CLOCK_TOPIC, Message::Text(&tick));
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDThh:mm:ssZ` (UTC).
pub fn iso8601(unix_ms: u64) -> String {
    Civil::from_unix_ms(unix_ms).iso8601()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(iso8601(4_107_542_399_000), "2100-02-28T23:59:59Z");
    }
}
