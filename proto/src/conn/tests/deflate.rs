//! `Conn` with permessage-deflate (RFC 7692): the response in the 101, RSV1 rules, inflating
//! incoming messages within the limits, compressing outgoing ones, and where the state lives.
//! Must not: open a socket or read a clock.

use super::*;
use crate::config::CompressionMode;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

fn upgrade_offering(extensions: &str) -> Vec<u8> {
    let head = std::str::from_utf8(UPGRADE).unwrap();
    let head = head.strip_suffix("\r\n").unwrap();
    format!("{head}Sec-WebSocket-Extensions: {extensions}\r\n\r\n").into_bytes()
}

fn config(mode: CompressionMode) -> Config {
    let mut cfg = Config::default();
    cfg.compression.mode = mode;
    cfg
}

/// A connection past a handshake that offered `extensions`, and the 101's extension header.
fn open_offering(cfg: Config, extensions: &str) -> (Harness, Option<String>) {
    let mut h = Harness::new(cfg);
    h.feed(&upgrade_offering(extensions));
    let head = String::from_utf8(h.output()).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let ext = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .map(str::to_string);
    (h, ext)
}

fn open_deflate(mode: CompressionMode) -> Harness {
    let (h, ext) = open_offering(config(mode), "permessage-deflate");
    assert!(ext.is_some());
    h
}

/// A client's compressed message payload (§7.2.1: sync flush, tail removed).
fn client_deflate(c: &mut Compress, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() * 2 + 64);
    c.compress_vec(msg, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn deflated(msg: &[u8]) -> Vec<u8> {
    client_deflate(&mut Compress::new(Compression::default(), false), msg)
}

/// The server's frames as (first byte, payload), RSV bits included.
fn frames_with_rsv(h: &mut Harness) -> Vec<(u8, Vec<u8>)> {
    let bytes = h.output();
    let mut rest = &bytes[..];
    let mut v = Vec::new();
    while !rest.is_empty() {
        let (hd, n) = crate::ws::frame::parse_header(rest).unwrap().unwrap();
        let end = n + hd.payload_len as usize;
        v.push((rest[0], rest[n..end].to_vec()));
        rest = &rest[end..];
    }
    v
}

/// Inflate a server message with the client's decompressor (§7.2.2).
fn client_inflate(d: &mut Decompress, payload: &[u8]) -> Vec<u8> {
    let input = [payload, &[0, 0, 0xff, 0xff]].concat();
    let mut out = Vec::with_capacity(1 << 21);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

fn json(len: usize) -> Vec<u8> {
    let mut s = Vec::new();
    let mut i = 0u32;
    while s.len() < len {
        s.extend_from_slice(format!("{{\"seq\":{i},\"topic\":\"prices\",\"ok\":true}}").as_bytes());
        i += 1;
    }
    s.truncate(len);
    s
}

#[test]
fn the_101_answers_the_offer_per_mode() {
    let offer = "permessage-deflate; client_max_window_bits";
    let cases = [
        (
            CompressionMode::Shared,
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        (CompressionMode::Dedicated, Some("permessage-deflate")),
        (CompressionMode::Off, None),
    ];
    for (mode, want) in cases {
        let (_, got) = open_offering(config(mode), offer);
        assert_eq!(got.as_deref(), want, "{mode:?}");
    }
    // No offer, or only unacceptable ones: a 101 without the extension (§5 "decline").
    let (_, got) = open_offering(Config::default(), "permessage-deflate; foo=bar, x-other");
    assert_eq!(got, None);
    let mut h = Harness::new(Config::default());
    h.feed(UPGRADE);
    assert!(!String::from_utf8(h.output())
        .unwrap()
        .contains("Extensions"));
}

#[test]
fn a_compressed_message_is_inflated_and_the_reply_compressed() {
    for mode in [CompressionMode::Shared, CompressionMode::Dedicated] {
        let mut h = open_deflate(mode);
        let msg = json(5000);
        // RSV1 + FIN + text (§6).
        h.feed(&raw(0xC1, &deflated(&msg)));
        assert_eq!(h.seen, vec![Seen::Message(true, msg.clone())], "{mode:?}");
        let frames = frames_with_rsv(&mut h);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            frames[0].0, 0xC1,
            "{mode:?}: the reply is compressed, RSV1 set"
        );
        assert!(frames[0].1.len() < msg.len() / 4);
        assert_eq!(
            client_inflate(&mut Decompress::new(false), &frames[0].1),
            msg
        );
    }
}

#[test]
fn short_and_uncompressed_messages() {
    let mut h = open_deflate(CompressionMode::Shared);
    // An uncompressed message is still fine (§6: RSV1 is per message).
    h.feed(&text(true, &json(1000)));
    // A compressed one whose reply is under the threshold goes back uncompressed.
    h.feed(&raw(0xC2, &deflated(b"tiny")));
    let frames = frames_with_rsv(&mut h);
    assert_eq!(frames[0].0, 0xC1);
    assert_eq!(frames[1], (0x82, b"tiny".to_vec()));
    assert_eq!(h.seen[1], Seen::Message(false, b"tiny".to_vec()));
}

#[test]
fn a_fragmented_compressed_message_at_every_split() {
    let msg = json(3000);
    let z = deflated(&msg);
    for split in [0, 1, z.len() / 2, z.len() - 1, z.len()] {
        let mut h = open_deflate(CompressionMode::Shared);
        // RSV1 on the first frame only; continuation frames never carry it (RFC 7692 §6).
        let bytes = [raw(0x41, &z[..split]), cont(true, &z[split..])].concat();
        for chunk in bytes.chunks(7) {
            h.feed(chunk);
        }
        assert_eq!(
            h.seen,
            vec![Seen::Message(true, msg.clone())],
            "split {split}"
        );
    }
}

#[test]
fn rsv1_rules() {
    let z = deflated(b"hello");
    // (name, connection negotiated deflate, bytes, expected close code)
    let cases: Vec<(&str, bool, Vec<u8>, u16)> = vec![
        ("RSV1 without the extension", false, raw(0xC1, &z), 1002),
        (
            "RSV1 on a continuation frame",
            true,
            [raw(0x41, &z), raw(0xC0, b"")].concat(),
            1002,
        ),
        (
            "RSV1 on a continuation of an uncompressed message",
            true,
            [text(false, b"a"), raw(0xC0, b"b")].concat(),
            1002,
        ),
        ("RSV1 on a ping", true, raw(0xC9, b"x"), 1002),
        ("RSV1 on a close", true, raw(0xC8, &[3, 232]), 1002),
        ("RSV2 with the extension", true, raw(0xA1, b"x"), 1002),
        ("RSV3 with the extension", true, raw(0x91, b"x"), 1002),
        (
            "corrupt compressed data",
            true,
            raw(0xC2, &[0xff; 20]),
            1007,
        ),
        (
            "inflated text not UTF-8",
            true,
            raw(0xC1, &deflated(&[b'a', 0xff, b'b'])),
            1007,
        ),
        (
            "inflated text ends inside a code point",
            true,
            raw(0xC1, &deflated(&[b'a', 0xE2, 0x82])),
            1007,
        ),
    ];
    for (name, negotiated, bytes, code) in cases {
        let mut h = if negotiated {
            open_deflate(CompressionMode::Shared)
        } else {
            Harness::open()
        };
        h.feed(&bytes);
        assert_eq!(h.close_code(), Some(code), "{name}");
        assert!(h.conn.wants_shutdown(), "{name}: the connection is failed");
    }
}

#[test]
fn inflated_size_is_held_to_the_message_limit_exactly() {
    let mut cfg = config(CompressionMode::Shared);
    cfg.ws.max_message_size = 10_000;
    cfg.ws.max_frame_size = 10_000;
    for (len, ok) in [(10_000, true), (10_001, false)] {
        let (mut h, _) = open_offering(cfg.clone(), "permessage-deflate");
        h.feed(&raw(0xC2, &deflated(&vec![b'x'; len])));
        if ok {
            assert_eq!(h.seen, vec![Seen::Message(false, vec![b'x'; len])]);
        } else {
            assert_eq!(h.close_code(), Some(1009), "len {len}");
        }
    }
}

#[test]
fn a_bomb_is_refused_with_1009() {
    // ~100 KiB on the wire, 100 MiB inflated: refused once 1 MiB + 1 byte is out.
    let bomb = client_deflate(
        &mut Compress::new(Compression::best(), false),
        &vec![0u8; 100 << 20],
    );
    let mut h = open_deflate(CompressionMode::Shared);
    h.feed(&raw(0xC2, &bomb));
    assert_eq!(h.close_code(), Some(1009));
    assert_eq!(h.seen, vec![Seen::Closed(1009, "message too large".into())]);
}

#[test]
fn context_takeover_when_dedicated() {
    let (mut h, ext) = open_offering(
        config(CompressionMode::Dedicated),
        "permessage-deflate; client_max_window_bits",
    );
    assert_eq!(ext.as_deref(), Some("permessage-deflate"));
    assert!(h.conn.tx.streams().is_some());
    let mut client_tx = Compress::new(Compression::default(), false);
    let mut client_rx = Decompress::new(false);
    let msg = json(2000);
    let mut sizes = Vec::new();
    for round in 0..3 {
        // Later messages refer to earlier ones (§7.2.3.2 sharing the LZ77 window).
        h.feed(&raw(0xC1, &client_deflate(&mut client_tx, &msg)));
        let frames = frames_with_rsv(&mut h);
        assert_eq!(frames[0].0, 0xC1, "round {round}");
        assert_eq!(client_inflate(&mut client_rx, &frames[0].1), msg);
        sizes.push(frames[0].1.len());
    }
    assert!(sizes[2] * 5 < sizes[0], "the window is kept: {sizes:?}");
    assert_eq!(h.seen.len(), 3);
}

#[test]
fn state_lives_only_where_context_is_kept() {
    // Shared: nothing per connection, and nothing held once idle.
    let mut h = open_deflate(CompressionMode::Shared);
    h.feed(&raw(0xC1, &deflated(&json(4000))));
    h.output();
    assert!(h.conn.tx.streams().is_none());
    assert_eq!(
        format!("{:?}", h.conn.rx.asm),
        "Assembler { partial: None }"
    );
    assert_eq!(h.res.pool.lent(), 0);
    // Dedicated, but the client asked for no context takeover both ways: still nothing.
    let (h, _) = open_offering(
        config(CompressionMode::Dedicated),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    );
    assert!(h.conn.tx.streams().is_none());
    // Dedicated with context takeover: the streams exist, filled on first use.
    let mut h = open_deflate(CompressionMode::Dedicated);
    assert_eq!(
        format!("{:?}", h.conn.tx.streams()),
        "Some(Streams { tx: false, rx: false })"
    );
    h.feed(&raw(0xC1, &deflated(&json(4000))));
    assert_eq!(
        format!("{:?}", h.conn.tx.streams()),
        "Some(Streams { tx: true, rx: true })"
    );
}

#[test]
fn dedicated_streams_are_counted_by_the_reactors_compressors_and_capped() {
    // --compression-max-dedicated: connections past the cap are answered with
    // no_context_takeover and own nothing; the count comes from the reactor's `Resources`,
    // with the rest of the process's as the reactor last learnt it.
    let mut cfg = config(CompressionMode::Dedicated);
    cfg.compression.max_dedicated = 2;
    let mut res = Resources::new(BufPool::new(cfg.buffer_size, 8));
    res.compressors.set_dedicated_elsewhere(1);
    let mut conns = Vec::new();
    let mut exts = Vec::new();
    for _ in 0..2 {
        let mut h = Harness::new(cfg.clone());
        std::mem::swap(&mut h.res, &mut res);
        h.feed(&upgrade_offering("permessage-deflate"));
        let head = String::from_utf8(h.output()).unwrap();
        exts.push(head.contains("server_no_context_takeover"));
        std::mem::swap(&mut h.res, &mut res);
        conns.push(h);
    }
    assert_eq!(
        exts,
        [false, true],
        "one under the cap (1 elsewhere + 1), then shared"
    );
    assert_eq!(res.compressors.dedicated(), 1);
    for mut h in conns {
        h.conn.release(&mut res);
    }
    assert_eq!(res.compressors.dedicated(), 0, "freed with the connection");
}
