//! Owns the value syntax shared by flags, `WSLOOP_*` environment variables and the config
//! file: sizes (`65536`, `64KiB`, `1MiB`), durations (`500ms`, `10s`, `2m`), whole numbers and
//! socket addresses — parsed with errors that say what was expected and what was given — and
//! their printing back as TOML for `--print-config`.
//! Must not: know which setting a value belongs to, or accept a value it cannot print back.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::RedisUrl;

/// What a size looks like, for error messages.
pub const SIZE_EXPECTED: &str = "a number of bytes (e.g. 65536, 64KiB, 1MiB)";
/// What a duration looks like, for error messages.
pub const DURATION_EXPECTED: &str = "a duration (e.g. 500ms, 10s, 2m, 1h)";
/// What a count looks like, for error messages.
pub const COUNT_EXPECTED: &str = "a whole number";
/// What an address looks like, for error messages.
pub const ADDR_EXPECTED: &str = "an address like 127.0.0.1:8080 or [::]:8080";

/// `expected X, got "text"`: the one shape of every value error.
pub fn expected(what: &str, got: &str) -> String {
    format!("expected {what}, got {got:?}")
}

/// A whole number: ASCII digits only (no sign, no separators), so `-1` and `1e6` are errors
/// rather than surprises.
pub fn parse_count(text: &str) -> Result<u64, String> {
    digits(text.trim()).ok_or_else(|| expected(COUNT_EXPECTED, text))
}

fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A size in bytes: a whole number, optionally followed by `B`, `KiB`, `MiB` or `GiB`
/// (binary multiples; case does not matter, a space may separate number and unit). Decimal
/// units (`KB`, `MB`, `GB`) are refused, since whether they mean 1000 or 1024 is a guess.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n = digits(num).ok_or_else(|| expected(SIZE_EXPECTED, text))?;
    let shift = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" => 10,
        "mib" => 20,
        "gib" => 30,
        "k" | "kb" | "m" | "mb" | "g" | "gb" => {
            return Err(format!(
                "{}; use KiB, MiB or GiB (multiples of 1024)",
                expected(SIZE_EXPECTED, text)
            ))
        }
        _ => return Err(expected(SIZE_EXPECTED, text)),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A duration: a whole number with a unit of `ms`, `s`, `m` or `h`; a bare number is
/// seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n = digits(num).ok_or_else(|| expected(DURATION_EXPECTED, text))?;
    let ms = match unit.trim_start() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => {
            return Err(format!(
                "{} (unknown unit {:?}; use ms, s, m or h)",
                expected(DURATION_EXPECTED, text),
                unit.trim_start()
            ))
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// A socket address (`127.0.0.1:8080`, `[::]:8080`).
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| expected(ADDR_EXPECTED, text))
}

/// What a Redis URL looks like, for error messages.
pub const REDIS_EXPECTED: &str =
    "a URL like redis://127.0.0.1:6379, redis://:PASSWORD@HOST:PORT/DB, rediss://HOST:PORT";

/// A Redis URL: `redis://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]…][/DB]`, the form
/// redis-cli's `-u` and most clients accept, with a cluster's further seed nodes after
/// commas. `%XX` escapes are decoded in the user and password (a password may hold `@` or
/// `:`); an IPv6 host goes in brackets. Empty text means no Redis. `rediss://` is TLS.
pub fn parse_redis_url(text: &str) -> Result<Option<RedisUrl>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| format!("{} ({why})", expected(REDIS_EXPECTED, text));
    let tls = t.starts_with("rediss://");
    let rest = t
        .strip_prefix("redis://")
        .or_else(|| t.strip_prefix("rediss://"))
        .ok_or_else(|| bad("it must start with redis:// or rediss://"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (u, None),
            };
            let user = percent_decode(user).ok_or_else(|| bad("bad %-escape in the user"))?;
            let pass = match pass {
                Some(p) => {
                    Some(percent_decode(p).ok_or_else(|| bad("bad %-escape in the password"))?)
                }
                None => None,
            };
            ((!user.is_empty()).then_some(user), pass)
        }
    };
    let mut hosts = Vec::new();
    for hostport in hostport.split(',') {
        hosts.push(host_port(hostport).map_err(&bad)?);
    }
    let (host, port) = hosts.remove(0);
    let db = match path {
        "" => 0,
        p => digits(p)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad("the database must be a number"))?,
    };
    Ok(Some(RedisUrl {
        host,
        port,
        username,
        password,
        db,
        more: hosts,
        tls,
    }))
}

/// `HOST[:PORT]` or `[V6]:PORT` of a Redis URL (6379 unless told), or why not.
fn host_port(hostport: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed [")?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or("text after ]")?)),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    let port = match port {
        None => 6379,
        Some(p) => digits(p)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or("the port must be 1 to 65535")?,
    };
    Ok((host.to_string(), port))
}

/// `%XX` escapes decoded (None for a bad escape or a result that is not UTF-8).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A duration in the largest unit that states it exactly: `10s`, `2m`, `1500ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        _ if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// A size in the largest binary unit that states it exactly (`1 MiB`), for comments; None
/// when plain bytes say it best.
pub fn human_size(n: u64) -> Option<String> {
    let units = [(30, "GiB"), (20, "MiB"), (10, "KiB")];
    units
        .iter()
        .find(|(shift, _)| n >= 1 << shift && n % (1 << shift) == 0)
        .map(|(shift, unit)| format!("{} {unit}", n >> shift))
}

/// A TOML string literal, escaped by the toml crate.
pub fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("64 kib"), Ok(64 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("7B"), Ok(7));
        let err = parse_size("big").unwrap_err();
        assert_eq!(
            err,
            "expected a number of bytes (e.g. 65536, 64KiB, 1MiB), got \"big\""
        );
        assert!(parse_size("1MB")
            .unwrap_err()
            .contains("use KiB, MiB or GiB"));
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999GiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("1d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
        for d in ["500ms", "10s", "2m", "1h", "1500ms", "0s", "90s"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }

    #[test]
    fn counts_and_addresses() {
        assert_eq!(parse_count("100000"), Ok(100_000));
        assert_eq!(
            parse_count("lots").unwrap_err(),
            "expected a whole number, got \"lots\""
        );
        assert!(parse_count("+3").is_err());
        assert_eq!(
            parse_addr("[::1]:80").unwrap(),
            "[::1]:80".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_addr("localhost")
            .unwrap_err()
            .contains("127.0.0.1:8080"));
    }

    #[test]
    fn redis_urls() {
        let u = parse_redis_url("redis://127.0.0.1:6380/2")
            .unwrap()
            .unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 6380, 2));
        assert_eq!((u.username, u.password), (None, None));
        let u = parse_redis_url("redis://:s%40cret:x@redis.internal")
            .unwrap()
            .unwrap();
        assert_eq!((u.host.as_str(), u.port), ("redis.internal", 6379));
        assert_eq!(u.password.as_deref(), Some("s@cret:x"));
        assert_eq!(u.username, None);
        assert_eq!(u.redacted(), "redis://:***@redis.internal:6379");
        assert_eq!(format!("{u:?}"), "redis://:***@redis.internal:6379");
        let u = parse_redis_url("redis://app:pw@[::1]:7000")
            .unwrap()
            .unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.port, 7000);
        assert_eq!(u.username.as_deref(), Some("app"));
        assert_eq!(u.redacted(), "redis://app:***@[::1]:7000");
        assert_eq!(parse_redis_url(" ").unwrap(), None);
        // A cluster's seed nodes, after commas.
        let u = parse_redis_url("redis://app:pw@10.0.0.1:7000,10.0.0.2,[::1]:7002")
            .unwrap()
            .unwrap();
        assert_eq!((u.host.as_str(), u.port), ("10.0.0.1", 7000));
        let more = [("10.0.0.2".to_string(), 6379), ("::1".to_string(), 7002)];
        assert_eq!(u.more, more);
        assert_eq!(
            u.redacted(),
            "redis://app:***@10.0.0.1:7000,10.0.0.2:6379,[::1]:7002"
        );
        for bad in [
            "redis://h1:7000,",
            "redis://h1:7000,:7001",
            "127.0.0.1:6379",
            "redis://",
            "redis://h:0",
            "redis://h:99999",
            "redis://h/x",
            "redis://:%zz@h",
            "redis://[::1",
        ] {
            let err = parse_redis_url(bad).unwrap_err();
            assert!(
                err.starts_with("expected a URL like redis://"),
                "{bad}: {err}"
            );
        }
        let u = parse_redis_url("rediss://u:p@redis.example:6380")
            .unwrap()
            .unwrap();
        assert!(u.tls);
        assert_eq!(u.redacted(), "rediss://u:***@redis.example:6380");
        assert!(!parse_redis_url("redis://h").unwrap().unwrap().tls);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(1 << 20).as_deref(), Some("1 MiB"));
        assert_eq!(human_size(256 << 10).as_deref(), Some("256 KiB"));
        assert_eq!(human_size(100), None);
        assert_eq!(human_size(0), None);
    }
}
