//! Owns `Bye`: `/bye` closes the connection normally (1000, reason "goodbye") when the client
//! sends its first message, so a client — a browser test above all — can watch a close code
//! and reason chosen by the server arrive in its `onclose`.
//! Must not: keep state between connections or close for any reason other than the first
//! message.

use super::{Ctx, Handler};
use crate::ws::Message;

/// The close code and reason `/bye` answers the first message with.
pub const BYE_CODE: u16 = 1000;
pub const BYE_REASON: &str = "goodbye";

#[derive(Debug, Default)]
pub struct Bye;

impl Handler for Bye {
    /// The message itself does not matter; the closing handshake starts at once.
    fn on_message(&mut self, ctx: &mut Ctx<'_, '_>, _msg: Message<'_>) {
        ctx.close(BYE_CODE, BYE_REASON);
    }
}
