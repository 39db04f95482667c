//! Owns `Chat`: chat rooms at `/chat/{room}`. Every text message a member sends goes to
//! everyone in the room (the sender included), and joins and leaves are announced. A room is
//! the topic `chat.{room}`, so SSE and polling clients can follow it too. Wire format: one
//! JSON object per text message, documented in docs/protocol.md.
//! Must not: deliver messages itself or hold per-member buffers: it records publishes and the
//! reactor fans them out.

use std::collections::HashMap;

use super::{Access, ConnId, Ctx, Decision, Handler, Upgrade};
pub use crate::text::json_string;
use crate::ws::Message;

#[derive(Debug, Default)]
pub struct Chat {
    /// The room of each member.
    rooms: HashMap<ConnId, String>,
}

/// The topic of a room.
pub fn room_topic(room: &str) -> String {
    format!("chat.{room}")
}

impl Handler for Chat {
    fn on_upgrade(&mut self, up: &Upgrade<'_, '_>) -> Decision {
        match up.params.get("room") {
            Some(room) if room.len() <= 64 => Decision::Accept { protocol: None },
            _ => Decision::Reject {
                status: 400,
                reason: "room name of 1 to 64 bytes",
            },
        }
    }

    fn access(&self, up: &Upgrade<'_, '_>) -> Access {
        let topic = up.params.get("room").map(room_topic);
        Access {
            reads: topic.clone(),
            writes: topic,
        }
    }

    fn on_open(&mut self, ctx: &mut Ctx<'_, '_>, up: &Upgrade<'_, '_>) {
        let (Some(id), Some(room)) = (ctx.id(), up.params.get("room")) else {
            return;
        };
        let topic = room_topic(room);
        ctx.subscribe(&topic);
        let notice = format!(
            r#"{{"type":"join","id":{},"room":{}}}"#,
            id.0,
            json_string(room)
        );
        ctx.publish(&topic, Message::Text(&notice));
        self.rooms.insert(id, room.to_string());
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, '_>, msg: Message<'_>) {
        let Some(id) = ctx.id() else { return };
        let Some(room) = self.rooms.get(&id) else {
            return;
        };
        match msg {
            Message::Text(text) => {
                let line = format!(
                    r#"{{"type":"message","from":{},"text":{}}}"#,
                    id.0,
                    json_string(text)
                );
                ctx.publish(&room_topic(room), Message::Text(&line));
            }
            // RFC 6455 §7.4.1: 1003 for a data type the endpoint cannot accept.
            Message::Binary(_) => ctx.close(1003, "chat messages are text"),
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, '_>, _code: u16, _reason: &str) {
        let Some(id) = ctx.id() else { return };
        if let Some(room) = self.rooms.remove(&id) {
            let notice = format!(
                r#"{{"type":"leave","id":{},"room":{}}}"#,
                id.0,
                json_string(&room)
            );
            ctx.publish(&room_topic(&room), Message::Text(&notice));
        }
    }
}
