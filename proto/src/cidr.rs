//! Owns IP address blocks (CIDR notation, RFC 4632 §3.1 for IPv4, RFC 4291 §2.3 for IPv6):
//! parsing `10.0.0.0/8`, `::1` or `127.0.0.1`, and asking whether an address lies in one.
//! Plain values (layer L0): `--trust-proxy` stores them in `Config`, `http::forwarded` matches
//! against them. No sockets: `IpAddr` is only a number here.
//! Must not: touch a socket or resolve names.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// An address block: every address whose first `prefix` bits equal `addr`'s. A bare address
/// is the block of that one address (`/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// The form an IPv4 client takes when it reaches a dual-stack (`[::]`) listener is the
/// IPv4-mapped IPv6 address `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2); it is the same client as
/// `a.b.c.d`, so every comparison and every per-address count uses the IPv4 form.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// The address as a 128-bit number, IPv4 in the low 32 bits.
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// A mask of the first `prefix` of `width` bits.
fn mask(prefix: u8, width: u8) -> u128 {
    let full = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    if prefix == 0 {
        0
    } else {
        full & !((1u128 << (width - prefix)) - 1)
    }
}

impl Cidr {
    /// The block of one address.
    pub fn host(ip: IpAddr) -> Cidr {
        let addr = canonical(ip);
        Cidr {
            addr,
            prefix: max_prefix(addr),
        }
    }

    /// Parse `ADDR` or `ADDR/PREFIX`. Host bits set below the prefix (`10.0.0.1/8`) are an
    /// error, not silently cleared: the operator meant either the host or the network, and a
    /// trust list is no place to guess which.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| "not an IP address".to_string())?;
        // An IPv4-mapped block is written as IPv4, so one spelling matches both forms.
        let (addr, width, shift) = match (addr, canonical(addr)) {
            (IpAddr::V6(_), v4 @ IpAddr::V4(_)) => (v4, 32u8, 96u8),
            (a, _) => (a, max_prefix(a), 0),
        };
        let prefix = match prefix {
            None => width,
            Some(p) => {
                let n: u8 = p
                    .parse()
                    .ok()
                    .filter(|n| p.bytes().all(|b| b.is_ascii_digit()) && *n <= width + shift)
                    .ok_or_else(|| {
                        format!(
                            "prefix length {p:?} is not a number from 0 to {}",
                            width + shift
                        )
                    })?;
                if n < shift {
                    return Err(format!(
                        "an IPv4-mapped block needs a prefix of at least /{shift}, got /{n}"
                    ));
                }
                n - shift
            }
        };
        let cidr = Cidr { addr, prefix };
        if bits(addr) & !mask(prefix, width) != 0 {
            let net = cidr.network();
            return Err(format!(
                "host bits set below the /{prefix} prefix; the block is {net}/{prefix}"
            ));
        }
        Ok(cidr)
    }

    fn network(&self) -> IpAddr {
        let width = max_prefix(self.addr);
        let net = bits(self.addr) & mask(self.prefix, width);
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(net as u32)),
            IpAddr::V6(_) => IpAddr::V6(net.into()),
        }
    }

    /// Is `ip` in this block? IPv4-mapped IPv6 addresses match as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let m = mask(self.prefix, max_prefix(ip));
        bits(ip) & m == bits(self.addr) & m
    }
}

/// Is `ip` in any of the blocks?
pub fn any_contains(blocks: &[Cidr], ip: IpAddr) -> bool {
    blocks.iter().any(|b| b.contains(ip))
}

impl fmt::Display for Cidr {
    /// The form `parse` reads back: a bare address for a one-address block.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn a_bare_address_is_a_block_of_one() {
        let c = cidr("127.0.0.1");
        assert!(c.contains(ip("127.0.0.1")));
        assert!(!c.contains(ip("127.0.0.2")));
        let c = cidr("::1");
        assert!(c.contains(ip("::1")));
        assert!(!c.contains(ip("::2")));
        assert!(!c.contains(ip("127.0.0.1")));
    }

    #[test]
    fn prefixes_match_their_leading_bits() {
        let c = cidr("10.0.0.0/8");
        assert!(c.contains(ip("10.0.0.0")));
        assert!(c.contains(ip("10.255.255.255")));
        assert!(!c.contains(ip("11.0.0.0")));
        assert!(!c.contains(ip("9.255.255.255")));
        let c = cidr("192.168.1.128/25");
        assert!(c.contains(ip("192.168.1.200")));
        assert!(!c.contains(ip("192.168.1.127")));
        let c = cidr("fd00::/8");
        assert!(c.contains(ip("fdab:1234::1")));
        assert!(!c.contains(ip("fe80::1")));
        let c = cidr("2001:db8::/127");
        assert!(c.contains(ip("2001:db8::1")));
        assert!(!c.contains(ip("2001:db8::2")));
    }

    #[test]
    fn zero_and_full_prefixes() {
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert!(cidr("203.0.113.9/32").contains(ip("203.0.113.9")));
        assert!(!cidr("203.0.113.9/32").contains(ip("203.0.113.8")));
        assert!(cidr("2001:db8::1/128").contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        // A dual-stack listener sees an IPv4 client as ::ffff:a.b.c.d.
        assert!(cidr("127.0.0.0/8").contains(ip("::ffff:127.0.0.5")));
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("10.1.2.3")));
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
        assert_eq!(canonical(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(canonical(ip("::1")), ip("::1"));
    }

    #[test]
    fn bad_blocks_are_refused_with_the_reason() {
        for (text, why) in [
            ("", "not an IP address"),
            ("localhost", "not an IP address"),
            ("10.0.0/8", "not an IP address"),
            ("10.0.0.0/33", "prefix length \"33\""),
            ("10.0.0.0/", "prefix length \"\""),
            ("10.0.0.0/+8", "prefix length \"+8\""),
            ("::/129", "prefix length \"129\""),
            (
                "10.0.0.1/8",
                "host bits set below the /8 prefix; the block is 10.0.0.0/8",
            ),
            ("fe80::1%eth0", "not an IP address"),
            ("::ffff:10.0.0.0/80", "at least /96"),
        ] {
            let err = Cidr::parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "0.0.0.0/0"] {
            assert_eq!(cidr(text).to_string(), text);
            assert_eq!(cidr(&cidr(text).to_string()), cidr(text));
        }
        assert_eq!(Cidr::host(ip("::ffff:1.2.3.4")).to_string(), "1.2.3.4");
    }

    #[test]
    fn any_of_a_list() {
        let list = [cidr("127.0.0.1"), cidr("::1"), cidr("10.0.0.0/8")];
        assert!(any_contains(&list, ip("10.9.8.7")));
        assert!(any_contains(&list, ip("::1")));
        assert!(!any_contains(&list, ip("127.0.0.2")));
        assert!(!any_contains(&[], ip("127.0.0.1")));
    }
}
