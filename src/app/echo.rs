//! Owns `Echo`: the echo application — every message goes back to its sender unchanged, as
//! the Autobahn|Testsuite expects of a server under test.
//! Must not: change, buffer or reorder a message.

use super::{Ctx, Decision, Handler, Upgrade};
use crate::http::upgrade::select_protocol;
use crate::ws::Message;

/// Echoes every message. Accepts the first subprotocol of `subprotocols` that the client
/// offered, if any.
#[derive(Debug, Default, Clone)]
pub struct Echo {
    pub subprotocols: Vec<String>,
}

impl Handler for Echo {
    fn on_upgrade(&mut self, up: &Upgrade<'_, '_>) -> Decision {
        let protocol = select_protocol(&up.ws.protocols, &self.subprotocols).map(str::to_string);
        Decision::Accept { protocol }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, '_>, msg: Message<'_>) {
        ctx.send(msg);
    }
}
