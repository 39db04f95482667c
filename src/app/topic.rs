//! Owns `TopicApp`: generic topics at `/topic/{name}`. A client subscribes to `name` on open
//! and everything it sends is published to `name`, to every subscriber on every transport. A
//! client that offers `wsloop.positions` receives each message with its position, and may
//! resume with `?since=POSITION` (docs/protocol.md).
//! Must not: publish to any topic but the one in the path, or keep a copy of what it publishes.

use std::collections::HashMap;

use super::{Access, ConnId, Ctx, Decision, Handler, Upgrade};
use crate::conn::POSITIONS_PROTOCOL;
use crate::ws::Message;

#[derive(Debug, Default)]
pub struct TopicApp {
    topics: HashMap<ConnId, String>,
}

impl Handler for TopicApp {
    fn on_upgrade(&mut self, up: &Upgrade<'_, '_>) -> Decision {
        match up.params.get("name") {
            // A client that asks for positions gets every message with its own (JSON).
            Some(name) if name.len() <= 255 => Decision::Accept {
                protocol: up
                    .ws
                    .protocols
                    .contains(&POSITIONS_PROTOCOL)
                    .then(|| POSITIONS_PROTOCOL.to_string()),
            },
            _ => Decision::Reject {
                status: 400,
                reason: "topic name of 1 to 255 bytes",
            },
        }
    }

    fn access(&self, up: &Upgrade<'_, '_>) -> Access {
        let topic = up.params.get("name").map(|n| n.to_string());
        Access {
            reads: topic.clone(),
            writes: topic,
        }
    }

    fn on_open(&mut self, ctx: &mut Ctx<'_, '_>, up: &Upgrade<'_, '_>) {
        let (Some(id), Some(name)) = (ctx.id(), up.params.get("name")) else {
            return;
        };
        ctx.subscribe(name);
        self.topics.insert(id, name.to_string());
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, '_>, msg: Message<'_>) {
        if let Some(topic) = ctx.id().and_then(|id| self.topics.get(&id)) {
            ctx.publish(topic, msg);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, '_>, _code: u16, _reason: &str) {
        if let Some(id) = ctx.id() {
            self.topics.remove(&id);
        }
    }
}
