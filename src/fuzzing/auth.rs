//! Owns the `access_token` property: pattern matching agrees with a plain dynamic-programming
//! matcher restated here; topic rules and refresh messages parse or are refused without
//! panicking; the token carriers (`token_of`, `api_key_of`) return a non-empty, trimmed piece
//! of the request or nothing; and verification of HS256 tokens whose claims come from the
//! input accepts only claims with a string `sub` and a numeric `exp` (and then reports them),
//! refuses any token whose signature was touched, and answers the same through the cache.
//! Must not: use real sockets or time.

use std::rc::Rc;

use super::Input;
use crate::auth::{
    api_key_of, matches, refresh_token, token_of, Gate, Policy, TokenCache, TopicRule, Verifier,
    Who,
};
use crate::config::{AuthConfig, HttpLimits};
use crate::http::request;
use crate::metrics::Outcomes;

const SECRET: &[u8] = b"fuzzing secret";

/// `[pattern length][pattern][topic length][topic][now: 4 bytes][rest]`; the rest is used as
/// request text, as a refresh message and as a token's claims.
pub fn access_token(data: &[u8]) {
    let mut input = Input::new(data);
    let n = usize::from(input.byte() % 24);
    let pattern = String::from_utf8_lossy(input.take(n)).into_owned();
    let n = usize::from(input.byte() % 48);
    let topic = String::from_utf8_lossy(input.take(n)).into_owned();
    let now = u64::from(u32::from_le_bytes([
        input.byte(),
        input.byte(),
        input.byte(),
        input.byte(),
    ]));
    let rest = input.rest();
    let text = String::from_utf8_lossy(rest);

    assert_eq!(
        matches(&pattern, &topic),
        reference_match(pattern.as_bytes(), topic.as_bytes()),
        "{pattern:?} against {topic:?}"
    );
    if let Ok(rule) = TopicRule::parse(&text, (Who::Token, Who::Token)) {
        assert!(!rule.pattern.is_empty() && !rule.pattern.contains(char::is_whitespace));
        assert_ne!(rule.subscribe, Who::Server);
    }
    let _ = refresh_token(&text);
    carriers(&text);
    signed(rest, now);
}

/// The carriers find a trimmed, non-empty piece of the request, or nothing.
fn carriers(text: &str) {
    let line: String = text.chars().filter(|c| !c.is_control()).collect();
    let raw = format!(
        "GET /sse/t?{} HTTP/1.1\r\nHost: h\r\nCookie: {line}\r\nAuthorization: {line}\r\n\r\n",
        line.replace(' ', "")
    );
    let Ok(req) = request::parse(raw.as_bytes(), &HttpLimits::default()) else {
        return;
    };
    for found in [token_of(&req, "tok"), token_of(&req, ""), api_key_of(&req)]
        .into_iter()
        .flatten()
    {
        assert!(!found.is_empty());
        assert_eq!(found, found.trim());
        assert!(raw.contains(found));
    }
}

/// Sign `claims` (when they are JSON) as an HS256 token and check what verification says.
fn signed(claims: &[u8], now: u64) {
    let cfg = AuthConfig::default();
    let verifier = Verifier::hmac(SECRET, &cfg);
    // Anything at all as a token: refused or accepted, never a panic.
    let _ = verifier.verify(&String::from_utf8_lossy(claims));
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(claims) else {
        return;
    };
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let Ok(token) = jsonwebtoken::encode(&header, &value, &key) else {
        return;
    };
    let sub = value.get("sub").and_then(|s| s.as_str());
    let exp = value.get("exp").and_then(|e| e.as_f64());
    if let Ok(grant) = verifier.verify(&token) {
        assert_eq!(Some(grant.sub.as_str()), sub, "{value}");
        let exp = exp.expect("accepted without a numeric exp");
        assert_eq!(grant.exp, exp.max(0.0) as u64);
    }
    if sub.is_none() || exp.is_none() {
        assert!(verifier.verify(&token).is_err(), "accepted {value}");
    }
    // A signature touched in its first character never verifies.
    let dot = token.rfind('.').expect("a JWT has two dots");
    let mut forged = token.clone().into_bytes();
    forged[dot + 1] = if forged[dot + 1] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("base64url is ASCII");
    assert!(
        verifier.verify(&forged).is_err(),
        "a forged signature passed"
    );

    // Through the gate: the same answer the second time, from the cache when accepted.
    let policy = Policy::tokens_only(verifier, 4);
    let mut cache = TokenCache::new(policy.cache_entries);
    let outcomes = Outcomes::new();
    let mut gate = Gate {
        policy: &policy,
        now,
        cache: &mut cache,
        outcomes: &outcomes,
    };
    let first = gate.grant(&token);
    let second = gate.grant(&token);
    assert_eq!(
        first.as_ref().ok().map(Rc::as_ref),
        second.as_ref().ok().map(Rc::as_ref)
    );
    assert_eq!(first.is_ok(), second.is_ok());
    if first.is_ok() {
        assert_eq!(outcomes.tokens_cached.get(), 1);
    }
}

/// `*` matches any run, everything else itself: the textbook table, O(p·t).
fn reference_match(p: &[u8], t: &[u8]) -> bool {
    // m[i][j]: p[..i] matches t[..j].
    let mut m = vec![vec![false; t.len() + 1]; p.len() + 1];
    m[0][0] = true;
    for i in 1..=p.len() {
        for j in 0..=t.len() {
            m[i][j] = if p[i - 1] == b'*' {
                m[i - 1][j] || (j > 0 && m[i][j - 1])
            } else {
                j > 0 && p[i - 1] == t[j - 1] && m[i - 1][j - 1]
            };
        }
    }
    m[p.len()][t.len()]
}
