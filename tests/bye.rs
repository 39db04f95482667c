//! tests/bye.rs: the `/bye` endpoint over loopback — the first message is answered with a
//! normal close (1000 "goodbye") chosen by the server, and the closing handshake completes.

// Tests are clients of the server: they use sockets and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use client::Client;
use server::Server;

#[test]
fn first_message_is_answered_with_close_1000_goodbye() {
    let mut srv = Server::start(&[]);
    let mut c = Client::open_path(srv.addr(), "/bye");
    c.send_frame(0x81, b"hello");
    let (op, payload) = c.read_frame().expect("a close frame");
    assert_eq!(op, 0x88, "a final close frame, nothing before it");
    assert_eq!(&payload[..2], &1000u16.to_be_bytes(), "normal closure");
    assert_eq!(&payload[2..], b"goodbye");
    c.send_frame(0x88, &payload[..2]); // complete the closing handshake
    assert_eq!(c.read_frame(), None, "then FIN");
    srv.assert_running();
}

#[test]
fn bye_stays_open_until_the_first_message() {
    let mut srv = Server::start(&[]);
    let mut c = Client::open_path(srv.addr(), "/bye");
    c.send_frame(0x89, b"ping"); // a control frame is not a message
    assert_eq!(c.read_frame(), Some((0x8A, b"ping".to_vec())));
    c.send_frame(0x82, &[1, 2, 3]);
    let (op, payload) = c.read_frame().expect("a close frame");
    assert_eq!((op, &payload[..2]), (0x88, &1000u16.to_be_bytes()[..]));
    srv.assert_running();
}
