//! Owns finding the client behind a trusted reverse proxy: reading `X-Forwarded-For` and
//! `X-Real-IP` from a request head and deciding which address, if any, is the client's
//! (`--trust-proxy`). Sans-IO: a parsed `Request` and the trusted blocks in, an address out.
//! Callers consult it only for requests whose socket peer is itself trusted; from anyone else
//! these headers are the client's own claims and are never read.
//! Must not: read these headers from a peer that is not trusted, or touch a socket.

use std::net::IpAddr;

use super::request::Request;
use super::upgrade::trim_ows;
use crate::cidr::{any_contains, canonical, Cidr};

/// Longest list item taken for an address: `[` + 45-character IPv6 + `]:65535`, with room to
/// spare; anything longer is not an address and is not handed to the address parser.
const MAX_NODE_LEN: usize = 64;

/// The client's address, as the trusted proxies in front of us saw it, or `None` when the
/// headers name no untrusted address (no header, only trusted hops, or nothing usable).
///
/// `X-Forwarded-For` is a list every proxy appends its peer's address to (nginx's
/// `$proxy_add_x_forwarded_for`). Only its right end is trustworthy: the last item was written
/// by our peer, a trusted proxy; the one before it by the hop our peer trusted, and so on —
/// but whatever the client itself sent arrives at the left end, unchanged. So the items are
/// read from the right, skipping trusted proxies, and the first address that is not trusted
/// is the client: everything left of it may be forged (the left-most item, which naive code
/// takes, is exactly the one a client controls). When every item is trusted the request came
/// from inside the trusted network and there is no untrusted client to name.
///
/// Several `X-Forwarded-For` field lines form one list in order (RFC 9110 §5.3). An item that
/// is not an address (`unknown`, an obfuscated name, garbage) met before the answer makes the
/// list unusable — the hop that wrote it is trusted, yet what stands left of it cannot be
/// attributed — and `X-Real-IP` (a single address the nearest proxy sets, nginx's
/// `$remote_addr`) is used instead; it is ignored unless it is one field line holding one
/// address.
pub fn client_ip(req: &Request<'_>, trusted: &[Cidr]) -> Option<IpAddr> {
    match from_forwarded_for(req, trusted) {
        Walk::Client(ip) => Some(ip),
        Walk::AllTrusted => None,
        Walk::Unusable => from_real_ip(req, trusted),
    }
}

/// What reading `X-Forwarded-For` from the right found.
#[derive(Debug, PartialEq, Eq)]
enum Walk {
    /// The right-most untrusted address.
    Client(IpAddr),
    /// Addresses, every one of them trusted.
    AllTrusted,
    /// No header, no items, or an item that is not an address before an untrusted one.
    Unusable,
}

fn from_forwarded_for(req: &Request<'_>, trusted: &[Cidr]) -> Walk {
    // Field lines are few (at most `max_headers`): gather them to read the list backwards.
    let lines: Vec<&[u8]> = req.headers_named("x-forwarded-for").collect();
    let mut seen = false;
    for line in lines.iter().rev() {
        for item in line.rsplit(|&b| b == b',') {
            let item = trim_ows(item);
            if item.is_empty() {
                continue; // an empty list element (RFC 9110 §5.6.1)
            }
            let Some(ip) = parse_node(item) else {
                return Walk::Unusable;
            };
            if !any_contains(trusted, ip) {
                return Walk::Client(ip);
            }
            seen = true;
        }
    }
    if seen {
        Walk::AllTrusted
    } else {
        Walk::Unusable
    }
}

fn from_real_ip(req: &Request<'_>, trusted: &[Cidr]) -> Option<IpAddr> {
    let mut lines = req.headers_named("x-real-ip");
    let (Some(value), None) = (lines.next(), lines.next()) else {
        return None;
    };
    parse_node(trim_ows(value)).filter(|ip| !any_contains(trusted, *ip))
}

/// One address as proxies write it: `192.0.2.1`, `192.0.2.1:5678`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:5678` (the port, which some proxies add, is dropped).
/// IPv4-mapped IPv6 comes back as IPv4 (`cidr::canonical`).
pub fn parse_node(item: &[u8]) -> Option<IpAddr> {
    if item.len() > MAX_NODE_LEN {
        return None;
    }
    let text = std::str::from_utf8(item).ok()?;
    let host = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        let ip: IpAddr = inside.parse().ok()?;
        return ip.is_ipv6().then(|| canonical(ip));
    } else if text.bytes().filter(|&b| b == b':').count() == 1 {
        // One colon: IPv4 with a port (a bare IPv6 address has at least two).
        let (host, port) = text.split_once(':')?;
        if !is_port(port) {
            return None;
        }
        let ip: IpAddr = host.parse().ok()?;
        return ip.is_ipv4().then_some(ip);
    } else {
        text
    };
    host.parse().ok().map(canonical)
}

fn is_port(p: &str) -> bool {
    (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Header;

    fn req<'a>(headers: &[(&'a str, &'a str)]) -> Request<'a> {
        Request {
            method: "GET",
            target: "/",
            path: "/",
            query: None,
            version: 1,
            headers: headers
                .iter()
                .map(|(name, value)| Header {
                    name,
                    value: value.as_bytes(),
                })
                .collect(),
        }
    }

    fn trusted() -> Vec<Cidr> {
        ["127.0.0.1", "::1", "10.0.0.0/8"]
            .iter()
            .map(|t| Cidr::parse(t).unwrap())
            .collect()
    }

    fn client(headers: &[(&str, &str)]) -> Option<String> {
        client_ip(&req(headers), &trusted()).map(|ip| ip.to_string())
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        assert_eq!(
            client(&[("X-Forwarded-For", "203.0.113.7")]).as_deref(),
            Some("203.0.113.7")
        );
        // A client that sends its own header cannot choose: nginx appends the real peer.
        assert_eq!(
            client(&[("X-Forwarded-For", "1.1.1.1, 203.0.113.7")]).as_deref(),
            Some("203.0.113.7")
        );
        // Trusted hops on the right are skipped, however many.
        assert_eq!(
            client(&[(
                "x-forwarded-for",
                "1.1.1.1,203.0.113.7 ,10.1.1.1,\t10.2.2.2"
            )])
            .as_deref(),
            Some("203.0.113.7")
        );
    }

    #[test]
    fn several_field_lines_are_one_list_in_order() {
        let headers = [
            ("X-Forwarded-For", "6.6.6.6, 198.51.100.1"),
            ("Host", "t"),
            ("X-Forwarded-For", "203.0.113.7, 10.0.0.1"),
        ];
        assert_eq!(client(&headers).as_deref(), Some("203.0.113.7"));
        let headers = [
            ("X-Forwarded-For", "198.51.100.1"),
            ("X-Forwarded-For", "10.0.0.1"),
        ];
        assert_eq!(client(&headers).as_deref(), Some("198.51.100.1"));
    }

    #[test]
    fn ipv6_and_ports_are_understood() {
        for (value, want) in [
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("203.0.113.7:5678", "203.0.113.7"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
            ("2001:db8::1, ::1", "2001:db8::1"),
            ("[::ffff:10.0.0.1]:80, 2001:db8::2", "2001:db8::2"),
        ] {
            assert_eq!(
                client(&[("X-Forwarded-For", value)]).as_deref(),
                Some(want),
                "{value}"
            );
        }
    }

    #[test]
    fn only_trusted_hops_name_no_client() {
        assert_eq!(client(&[("X-Forwarded-For", "10.0.0.1, 127.0.0.1")]), None);
        assert_eq!(client(&[("X-Forwarded-For", "::ffff:127.0.0.1")]), None);
        assert_eq!(client(&[("X-Real-IP", "10.0.0.9")]), None);
    }

    #[test]
    fn garbage_is_ignored_and_x_real_ip_stands_in() {
        for bad in [
            "unknown",
            "203.0.113.7:99999",
            "203.0.113.7:",
            "2001:db8::1:80:1:2:3:4:5",
            "[2001:db8::1",
            "[203.0.113.7]",
            "[2001:db8::1]x",
            "fe80::1%eth0",
            "203.0.113.07",
            "1.2.3.4.5",
            "\u{e9}",
        ] {
            let value = format!("6.6.6.6, {bad}, 10.0.0.1");
            assert_eq!(client(&[("X-Forwarded-For", &value)]), None, "{bad:?}");
            assert_eq!(
                client(&[("X-Forwarded-For", &value), ("X-Real-IP", " 198.51.100.4 ")]).as_deref(),
                Some("198.51.100.4"),
                "{bad:?}"
            );
        }
        // Empty list elements are no items at all (RFC 9110 §5.6.1).
        assert_eq!(
            client(&[("X-Forwarded-For", "6.6.6.6, , 203.0.113.7 ,, 10.0.0.1,")]).as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(client(&[("X-Forwarded-For", " , ,")]), None);
        let long = format!("{}1", "0".repeat(100));
        assert_eq!(client(&[("X-Forwarded-For", &long)]), None);
        // Garbage left of the answer does not matter.
        assert_eq!(
            client(&[("X-Forwarded-For", "unknown, 203.0.113.7, 10.0.0.1")]).as_deref(),
            Some("203.0.113.7")
        );
    }

    #[test]
    fn x_real_ip_counts_only_as_one_address_on_one_line() {
        assert_eq!(
            client(&[("X-Real-IP", "198.51.100.4")]).as_deref(),
            Some("198.51.100.4")
        );
        assert_eq!(client(&[("X-Real-IP", "198.51.100.4, 1.1.1.1")]), None);
        assert_eq!(
            client(&[("X-Real-IP", "198.51.100.4"), ("X-Real-IP", "1.1.1.1")]),
            None
        );
        assert_eq!(client(&[("X-Real-IP", "nobody")]), None);
        assert_eq!(client(&[]), None);
        // X-Forwarded-For wins when it names a client.
        assert_eq!(
            client(&[
                ("X-Real-IP", "198.51.100.4"),
                ("X-Forwarded-For", "203.0.113.7")
            ])
            .as_deref(),
            Some("203.0.113.7")
        );
    }

    #[test]
    fn nothing_is_trusted_without_a_trust_list() {
        // With no trusted blocks the right-most item is the answer (the caller only asks for
        // requests whose peer it trusts, so this is the peer's own report).
        let r = req(&[("X-Forwarded-For", "1.1.1.1, 203.0.113.7")]);
        assert_eq!(client_ip(&r, &[]), Some("203.0.113.7".parse().unwrap()));
    }
}
