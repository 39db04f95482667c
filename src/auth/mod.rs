//! Owns access tokens (JWT, RFC 7519): verifying one with the configured key — the algorithms
//! come from the key, never from the token, so `alg: none` and HS/RS confusion cannot pass —
//! and what its claims grant: the topics it may subscribe to and publish into, as `*`
//! patterns. Layer L3, beside `app`: the reactor asks before a transport opens; the time is
//! passed in (the reactor's clock), and the key is read once, at start-up (`Verifier::load`).
//! Must not: log a token or put one in an error body, or read the clock.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::AuthConfig;
use crate::http::request::Request;

/// Checks tokens against one key.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier({:?})", self.validation.algorithms)
    }
}

/// Why a token was not accepted: each is a 401 (RFC 6750 §3.1 `invalid_token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token in the request.
    Missing,
    /// Malformed, badly signed, the wrong algorithm, audience or issuer, or a required claim
    /// (`sub`, `exp`) missing: what jsonwebtoken said.
    Invalid(String),
    /// Its `exp` has passed.
    Expired,
    /// Its `nbf` has not come yet.
    NotYet,
}

impl AuthError {
    /// The response body: what is wrong, never the token or the verifier's details.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "an access token is required",
            AuthError::Invalid(_) => "the access token is not valid",
            AuthError::Expired => "the access token has expired",
            AuthError::NotYet => "the access token is not valid yet",
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Missing => f.write_str("an access token is required"),
            AuthError::Invalid(why) => write!(f, "the access token is not valid: {why}"),
            AuthError::Expired => f.write_str("the access token has expired"),
            AuthError::NotYet => f.write_str("the access token is not valid yet"),
        }
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    Subscribe,
    Publish,
}

/// A verified token's claims that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who it names (for logs).
    pub sub: String,
    /// When it expires, in seconds since the Unix epoch.
    pub exp: u64,
    subscribe: Vec<String>,
    publish: Vec<String>,
}

impl Grant {
    /// May the token's holder do `right` on `topic`?
    pub fn may(&self, right: Right, topic: &str) -> bool {
        let patterns = match right {
            Right::Subscribe => &self.subscribe,
            Right::Publish => &self.publish,
        };
        patterns.iter().any(|p| matches(p, topic))
    }
}

/// The access check as the reactor makes it for one request: the verifier (none: everything
/// is open), the time, and the cookie that may carry the token.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    pub verifier: Option<&'a Verifier>,
    /// Topic patterns anyone may subscribe to (`--token-public-topic`).
    pub public: &'a [String],
    /// Seconds since the Unix epoch (the reactor's clock).
    pub now: u64,
    pub cookie: &'a str,
}

/// A refusal: the status (401 or 403) and its body.
pub type Refusal = (u16, &'static str);

impl Gate<'_> {
    fn is_public(&self, topic: &str) -> bool {
        self.public.iter().any(|p| matches(p, topic))
    }

    /// The request's verified token, when a key is configured: `Ok(None)` when none is.
    fn grant(&self, req: &Request<'_>) -> Result<Option<Grant>, Refusal> {
        let Some(verifier) = self.verifier else {
            return Ok(None);
        };
        let token = token_of(req, self.cookie).ok_or((401, "an access token is required"))?;
        match verifier.verify(token, self.now) {
            Ok(grant) => Ok(Some(grant)),
            Err(e) => {
                log::debug!("{} {}: {e}", req.method, req.path);
                Err((401, e.reason()))
            }
        }
    }

    /// May this request do `right` on `topic`? 401 without a valid token, 403 when its
    /// claims do not grant it; allowed, the token's `exp` (none when no key is configured).
    pub fn allows(
        &self,
        req: &Request<'_>,
        right: Right,
        topic: &str,
    ) -> Result<Option<u64>, Refusal> {
        if right == Right::Subscribe && self.is_public(topic) {
            return Ok(None);
        }
        match self.grant(req)? {
            Some(g) if !g.may(right, topic) => Err(match right {
                Right::Subscribe => (403, "the token does not grant subscribing to this topic"),
                Right::Publish => (403, "the token does not grant publishing to this topic"),
            }),
            grant => Ok(grant.map(|g| g.exp)),
        }
    }

    /// A refresh on an open WebSocket that reads `reads` and writes `writes`: the new token,
    /// verified now, must grant reading as the first did. Refused: the reason.
    pub fn refresh(
        &self,
        token: &str,
        reads: Option<&str>,
        writes: Option<&str>,
    ) -> Result<Admitted, &'static str> {
        let verifier = self.verifier.ok_or("no access tokens are configured")?;
        let grant = verifier.verify(token, self.now).map_err(|e| e.reason())?;
        if reads.is_some_and(|t| !grant.may(Right::Subscribe, t)) {
            return Err("the token does not grant subscribing to this topic");
        }
        Ok(Admitted {
            may_write: writes.is_none_or(|t| grant.may(Right::Publish, t)),
            exp: Some(grant.exp),
        })
    }

    /// A WebSocket that reads `reads` and writes `writes`: refused (401, or 403 without the
    /// right to read), or admitted with whether it may write and the token's `exp`. A route
    /// with no topic needs no token.
    pub fn check(
        &self,
        req: &Request<'_>,
        reads: Option<&str>,
        writes: Option<&str>,
    ) -> Result<Admitted, Refusal> {
        let open = Admitted {
            may_write: true,
            exp: None,
        };
        if reads.is_none() && writes.is_none() {
            return Ok(open);
        }
        // A public topic is read without a token; with none, it cannot be written.
        if self.verifier.is_some()
            && reads.is_some_and(|t| self.is_public(t))
            && token_of(req, self.cookie).is_none()
        {
            return Ok(Admitted {
                may_write: writes.is_none(),
                exp: None,
            });
        }
        let Some(grant) = self.grant(req)? else {
            return Ok(open);
        };
        if reads.is_some_and(|t| !grant.may(Right::Subscribe, t)) {
            return Err((403, "the token does not grant subscribing to this topic"));
        }
        Ok(Admitted {
            may_write: writes.is_none_or(|t| grant.may(Right::Publish, t)),
            exp: Some(grant.exp),
        })
    }
}

/// A WebSocket let in by `Gate::check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// It may publish into its topic.
    pub may_write: bool,
    /// Its token's `exp` (seconds since the Unix epoch), if it needed one: the connection
    /// ends then.
    pub exp: Option<u64>,
}

/// The subprotocol a WebSocket client offers to refresh its token in-band: the server selects
/// it when a token admitted the connection and the route chose no subprotocol of its own.
pub const REFRESH_PROTOCOL: &str = "wsloop.auth";

/// The token in a refresh message — `{"type":"refresh","token":"…"}` as a text message on a
/// connection that negotiated `REFRESH_PROTOCOL` — or None if the message is anything else.
pub fn refresh_token(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Refresh {
        #[serde(rename = "type")]
        kind: String,
        token: String,
    }
    let r: Refresh = serde_json::from_str(text).ok()?;
    (r.kind == "refresh").then_some(r.token)
}

/// The claims as they arrive; NumericDate may be fractional (RFC 7519 §2).
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: f64,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

impl Verifier {
    /// The verifier `cfg` asks for, its key read now; None when no key is configured.
    pub fn load(cfg: &AuthConfig) -> Result<Option<Verifier>, String> {
        let (key, algorithms) = match (&cfg.secret_file, &cfg.public_key_file) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err("token_secret_file and token_public_key_file: choose one".into())
            }
            (Some(path), None) => {
                let secret = read(path)?;
                let secret = secret.strip_suffix(b"\n").unwrap_or(&secret);
                let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
                if secret.is_empty() {
                    return Err(format!("{}: the secret is empty", path.display()));
                }
                let hs = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
                (DecodingKey::from_secret(secret), hs)
            }
            (None, Some(path)) => public_key(path, &read(path)?)?,
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        // Time is checked against the reactor's clock (`verify`), not read here.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        // A configured audience or issuer must be present too, not only right when present.
        let mut required = vec!["sub", "exp"];
        if cfg.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&cfg.audience]);
            required.push("aud");
        }
        if !cfg.issuer.is_empty() {
            validation.set_issuer(&[&cfg.issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Some(Verifier { key, validation }))
    }

    /// Verify `token` at `now` (seconds since the Unix epoch): its signature, algorithm,
    /// audience and issuer, `exp` in the future and `nbf`, if any, not.
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let c = data.claims;
        let now = now as f64;
        if c.exp <= now {
            return Err(AuthError::Expired);
        }
        if c.nbf.is_some_and(|nbf| nbf > now) {
            return Err(AuthError::NotYet);
        }
        Ok(Grant {
            sub: c.sub,
            exp: c.exp as u64,
            subscribe: c.subscribe,
            publish: c.publish,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A PEM public key and the algorithms it verifies: RSA (RS*, PS*), EC (ES256, ES384) or
/// Ed25519 (EdDSA).
fn public_key(path: &Path, pem: &[u8]) -> Result<(DecodingKey, Vec<Algorithm>), String> {
    use Algorithm::*;
    if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        return Ok((k, vec![RS256, RS384, RS512, PS256, PS384, PS512]));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        return Ok((k, vec![ES256, ES384]));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(pem) {
        return Ok((k, vec![EdDSA]));
    }
    Err(format!(
        "{}: not a PEM RSA, EC or Ed25519 public key",
        path.display()
    ))
}

/// Does `pattern` match `topic`? `*` matches any run of characters (none included); every
/// other character matches itself. `news.*` matches `news.` and `news.sport`; `*` matches
/// every topic; there is no escape character.
pub fn matches(pattern: &str, topic: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), topic.as_bytes());
    // Greedy with one backtrack point: the last `*` seen and where its run ended. Linear in
    // practice; at worst patterns × topic length, both bounded (topics by --max-topic-len).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// The token a request carries: `Authorization: Bearer …` (RFC 6750 §2.1), else the `token`
/// query parameter (§2.3: what a browser's `WebSocket` and `EventSource` can send), else the
/// cookie named `cookie` (if set).
pub fn token_of<'a>(req: &Request<'a>, cookie: &str) -> Option<&'a str> {
    if let Some(v) = req.header("authorization") {
        let v = std::str::from_utf8(v).ok()?.trim();
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty());
    }
    let from_query = req.query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .filter(|t| !t.is_empty())
    });
    if from_query.is_some() || cookie.is_empty() {
        return from_query;
    }
    req.headers_named("cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == cookie).then_some(v).filter(|v| !v.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn a_star_matches_any_run_and_nothing_else_is_special() {
        for (p, t) in [
            ("*", "news"),
            ("*", ""),
            ("news", "news"),
            ("news.*", "news."),
            ("news.*", "news.sport"),
            ("*.eu", "chat.eu"),
            ("a*b*c", "abc"),
            ("a*b*c", "aXbYbZc"),
            ("**", "x"),
        ] {
            assert!(matches(p, t), "{p} should match {t}");
        }
        for (p, t) in [
            ("news", "news2"),
            ("news.*", "news"),
            ("*.eu", "chat.us"),
            ("a*b*c", "acb"),
            ("clock", "CLOCK"),
            ("", "x"),
        ] {
            assert!(!matches(p, t), "{p} should not match {t}");
        }
    }
}
