//! Owns the value syntax shared by flags, `WSLOOP_*` environment variables and the config
//! file: sizes (`65536`, `64KiB`, `1MiB`), durations (`500ms`, `10s`, `2m`), whole numbers and
//! socket addresses — parsed with errors that say what was expected and what was given — and
//! their printing back as TOML for `--print-config`.
//! Must not: know which setting a value belongs to, or accept a value it cannot print back.

use std::net::SocketAddr;
use std::time::Duration;

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
    fn human_sizes() {
        assert_eq!(human_size(1 << 20).as_deref(), Some("1 MiB"));
        assert_eq!(human_size(256 << 10).as_deref(), Some("256 KiB"));
        assert_eq!(human_size(100), None);
        assert_eq!(human_size(0), None);
    }
}
