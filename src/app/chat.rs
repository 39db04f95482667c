//! Owns `Chat`: chat rooms at `/chat/{room}`. Every text message a member sends goes to
//! everyone in the room (the sender included), and joins and leaves are announced. A room is
//! the topic `chat.{room}`, so SSE and polling clients can follow it too. Wire format: one
//! JSON object per text message, documented in docs/protocol.md; a member admitted with an
//! access token is named by its `sub`.
//! Must not: deliver messages itself or hold per-member buffers: it records publishes and the
//! reactor fans them out.

use std::collections::HashMap;

use super::{Access, ConnId, Ctx, Decision, Handler, Upgrade};
pub use crate::text::json_string;
use crate::ws::Message;

#[derive(Debug, Default)]
pub struct Chat {
    /// The room of each member.
    rooms: HashMap<ConnId, Member>,
}

/// Where a member is and who it says it is.
#[derive(Debug)]
struct Member {
    room: String,
    /// `,"name":"…"` — the `sub` of the access token it was admitted with, as a JSON field
    /// ready to append; empty without a token.
    name: String,
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
        let name = match up.identity {
            Some(who) => format!(r#","name":{}"#, json_string(&who.sub)),
            None => String::new(),
        };
        let notice = format!(
            r#"{{"type":"join","id":{}{name},"room":{}}}"#,
            id.0,
            json_string(room)
        );
        ctx.publish(&topic, Message::Text(&notice));
        let room = room.to_string();
        self.rooms.insert(id, Member { room, name });
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, '_>, msg: Message<'_>) {
        let Some(id) = ctx.id() else { return };
        let Some(m) = self.rooms.get(&id) else {
            return;
        };
        match msg {
            Message::Text(text) => {
                let line = format!(
                    r#"{{"type":"message","from":{}{},"text":{}}}"#,
                    id.0,
                    m.name,
                    json_string(text)
                );
                ctx.publish(&room_topic(&m.room), Message::Text(&line));
            }
            // RFC 6455 §7.4.1: 1003 for a data type the endpoint cannot accept.
            Message::Binary(_) => ctx.close(1003, "chat messages are text"),
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, '_>, _code: u16, _reason: &str) {
        let Some(id) = ctx.id() else { return };
        if let Some(m) = self.rooms.remove(&id) {
            let notice = format!(
                r#"{{"type":"leave","id":{}{},"room":{}}}"#,
                id.0,
                m.name,
                json_string(&m.room)
            );
            ctx.publish(&room_topic(&m.room), Message::Text(&notice));
        }
    }
}
