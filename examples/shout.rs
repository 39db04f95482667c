//! A user's own wsloop application: `/shout/{room}` upper-cases every text message and
//! broadcasts it to the room, greets each newcomer privately, and refuses clients that do not
//! offer the `shout.v1` subprotocol. Run it with
//!
//! ```sh
//! cargo run --release --example shout -- 127.0.0.1:9000
//! ```
//!
//! and connect with any WebSocket client, e.g. in a browser console:
//! `new WebSocket("ws://127.0.0.1:9000/shout/lobby", "shout.v1")`.

use std::collections::HashMap;

use wsloop::app::{ConnId, Ctx, Decision, Handler, Router, Upgrade};
use wsloop::config::Config;
use wsloop::reactor::workers;
use wsloop::ws::Message;

#[derive(Default)]
struct Shout {
    rooms: HashMap<ConnId, String>,
}

impl Handler for Shout {
    fn on_upgrade(&mut self, up: &Upgrade<'_, '_>) -> Decision {
        if up.ws.protocols.contains(&"shout.v1") {
            Decision::Accept {
                protocol: Some("shout.v1".into()),
            }
        } else {
            Decision::Reject {
                status: 400,
                reason: "offer the shout.v1 subprotocol",
            }
        }
    }

    fn on_open(&mut self, ctx: &mut Ctx<'_, '_>, up: &Upgrade<'_, '_>) {
        let (Some(id), Some(room)) = (ctx.id(), up.params.get("room")) else {
            return;
        };
        ctx.send_text(&format!("welcome to {room}"));
        ctx.subscribe(&format!("shout.{room}"));
        self.rooms.insert(id, room.to_string());
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, '_>, msg: Message<'_>) {
        let Some(room) = ctx.id().and_then(|id| self.rooms.get(&id)).cloned() else {
            return;
        };
        match msg {
            Message::Text(t) => {
                ctx.publish(&format!("shout.{room}"), Message::Text(&t.to_uppercase()))
            }
            Message::Binary(_) => ctx.close(1003, "text only"),
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, '_>, _code: u16, _reason: &str) {
        if let Some(id) = ctx.id() {
            self.rooms.remove(&id);
        }
    }
}

fn main() -> std::io::Result<()> {
    env_logger::init();
    let mut cfg = Config::default();
    if let Some(addr) = std::env::args().nth(1) {
        cfg.listen = addr.parse().map_err(std::io::Error::other)?;
    }
    workers::run(
        cfg,
        1,
        || Router::new().mount("/shout/{room}", Shout::default()),
        |addr| {
            println!("shouting on ws://{addr}/shout/{{room}}");
        },
    )
}
