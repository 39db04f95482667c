//! Owns small text encodings shared by several layers: JSON string literals (RFC 8259 §7),
//! calendar dates from Unix time (for `Date` headers and the clock), base64 for binary
//! payloads carried in text transports, and decimal numbers as peers send them. Pure functions; no clock is read here.
//! Must not: read a clock or allocate more than the output it returns.

use base64::Engine;

/// A JSON string literal: quotes, backslashes and control characters escaped (RFC 8259 §7).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_string(&mut out, s);
    out
}

/// A number a peer sent in decimal: ASCII digits only, at least one, no sign, no spaces, no
/// overflow (RFC 9110 §8.6 for `Content-Length`: `1*DIGIT`). Rust's `str::parse` also takes
/// a leading `+`, which a proxy in front may read differently — a request-smuggling seed.
pub fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Append a JSON string literal to `out`.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A civil date and time (UTC) from milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

impl Civil {
    pub fn from_unix_ms(unix_ms: u64) -> Civil {
        let secs = unix_ms / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Days since 1970-01-01 to a date, in 400-year eras that start on March 1st so the
        // leap day falls at the end of a year.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            weekday: ((days + 4) % 7) as u32, // 1970-01-01 was a Thursday
        }
    }

    /// `YYYY-MM-DDThh:mm:ssZ` (RFC 3339).
    pub fn iso8601(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// IMF-fixdate for the HTTP `Date` header (RFC 9110 §5.6.7).
    pub fn http_date(&self) -> String {
        const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            DAYS[self.weekday as usize % 7],
            self.day,
            MONTHS[(self.month as usize).saturating_sub(1) % 12],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_takes_digits_only() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"+5",
            b"-5",
            b" 5",
            b"5 ",
            b"0x5",
            b"5a",
            b"18446744073709551616",
            b"1e3",
        ] {
            assert_eq!(decimal(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}é"), r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn known_instants() {
        assert_eq!(Civil::from_unix_ms(0).iso8601(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Civil::from_unix_ms(951_782_400_000).iso8601(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            Civil::from_unix_ms(1_700_000_000_123).iso8601(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            Civil::from_unix_ms(4_107_542_399_000).iso8601(),
            "2100-02-28T23:59:59Z"
        );
        // RFC 9110 §5.6.7's example.
        assert_eq!(
            Civil::from_unix_ms(784_111_777_000).http_date(),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }
}
