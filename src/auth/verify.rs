//! Owns verifying one access token (JWT, RFC 7519) with the configured key: the algorithms
//! come from the key, never from the token, so `alg: none` and HS/RS confusion cannot pass;
//! the time claims are checked against a time passed in (the reactor's clock). What a
//! verified token grants is a `Grant`.

use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::rules::matches;
use crate::config::AuthConfig;
use crate::metrics::TOKEN_REFUSALS;

/// The longest token looked at: a bound on the work an unauthenticated peer can ask for
/// (base64 and JSON decoding before the signature is checked).
pub const MAX_TOKEN_LEN: usize = 4096;

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
    /// Longer than `MAX_TOKEN_LEN`.
    TooLarge,
    /// Not a JWT: bad base64, JSON or header, or an unknown algorithm name.
    Malformed(String),
    /// The signature does not verify, or the algorithm is not one the key allows.
    Signature(String),
    /// The wrong audience or issuer, or a required claim (`sub`, `exp`) missing.
    Claims(String),
    /// Its `exp` has passed.
    Expired,
    /// Its `nbf` has not come yet.
    NotYet,
}

impl AuthError {
    /// The metric label: a bounded set, never anything from the token.
    pub fn label(&self) -> &'static str {
        TOKEN_REFUSALS[self.index()]
    }

    /// Where `label` is in `metrics::TOKEN_REFUSALS`.
    pub fn index(&self) -> usize {
        match self {
            AuthError::Missing => 0,
            AuthError::TooLarge => 1,
            AuthError::Malformed(_) => 2,
            AuthError::Signature(_) => 3,
            AuthError::Claims(_) => 4,
            AuthError::Expired => 5,
            AuthError::NotYet => 6,
        }
    }

    /// The response body: what is wrong, never the token or the verifier's details.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "an access token is required",
            AuthError::TooLarge => "the access token is too large",
            AuthError::Malformed(_) | AuthError::Signature(_) | AuthError::Claims(_) => {
                "the access token is not valid"
            }
            AuthError::Expired => "the access token has expired",
            AuthError::NotYet => "the access token is not valid yet",
        }
    }

    fn of(e: jsonwebtoken::errors::Error) -> AuthError {
        let why = e.to_string();
        match e.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_) => AuthError::Signature(why),
            ErrorKind::InvalidAudience
            | ErrorKind::InvalidIssuer
            | ErrorKind::InvalidSubject
            | ErrorKind::MissingRequiredClaim(_) => AuthError::Claims(why),
            _ => AuthError::Malformed(why),
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Malformed(why) | AuthError::Signature(why) | AuthError::Claims(why) => {
                write!(f, "{}: {why}", self.reason())
            }
            _ => f.write_str(self.reason()),
        }
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    Subscribe,
    Publish,
}

/// A verified token: who it names, until when, what it grants, and its other claims (for
/// handlers: `Upgrade::identity`).
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// Who it names.
    pub sub: String,
    /// When it expires, in seconds since the Unix epoch.
    pub exp: u64,
    nbf: Option<f64>,
    subscribe: Vec<String>,
    publish: Vec<String>,
    /// Every other claim (`aud`, `iss`, `iat`, an application's own), as sent.
    pub claims: serde_json::Map<String, serde_json::Value>,
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

    /// Is it valid at `now` (seconds since the Unix epoch): `exp` not passed, `nbf` come?
    pub fn valid_at(&self, now: u64) -> Result<(), AuthError> {
        let now_f = now as f64;
        if self.exp <= now {
            return Err(AuthError::Expired);
        }
        if self.nbf.is_some_and(|nbf| nbf > now_f) {
            return Err(AuthError::NotYet);
        }
        Ok(())
    }
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
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl Verifier {
    /// The verifier `cfg` asks for, its key read now; None when no key is configured.
    pub fn load(cfg: &AuthConfig) -> Result<Option<Verifier>, String> {
        let (key, algorithms) = match (&cfg.secret_file, &cfg.public_key_file) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err("token_secret_file and token_public_key_file: choose one".into())
            }
            (Some(path), None) => return Ok(Some(Verifier::hmac(&read_secret(path)?, cfg))),
            (None, Some(path)) => public_key(path, &read(path)?)?,
        };
        Ok(Some(Verifier::with(key, algorithms, cfg)))
    }

    /// A verifier of HS256/384/512 tokens signed with `secret`, checking `cfg`'s audience and
    /// issuer.
    pub fn hmac(secret: &[u8], cfg: &AuthConfig) -> Verifier {
        let hs = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
        Verifier::with(DecodingKey::from_secret(secret), hs, cfg)
    }

    fn with(key: DecodingKey, algorithms: Vec<Algorithm>, cfg: &AuthConfig) -> Verifier {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        // Time is checked against the reactor's clock (`Grant::valid_at`), not read here.
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
        Verifier { key, validation }
    }

    /// Verify `token`'s signature, algorithm, audience and issuer; its time claims are the
    /// caller's to check (`Grant::valid_at`), so that a cached grant is checked the same way.
    pub fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::TooLarge);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(AuthError::of)?;
        let c = data.claims;
        Ok(Grant {
            sub: c.sub,
            // Whole seconds: a fractional exp expires at the second it falls in.
            exp: c.exp.max(0.0) as u64,
            nbf: c.nbf,
            subscribe: c.subscribe,
            publish: c.publish,
            claims: c.rest,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A secret file's bytes, one trailing newline (LF or CRLF) removed; empty is an error.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let mut secret = read(path)?;
    if secret.ends_with(b"\n") {
        secret.pop();
        if secret.ends_with(b"\r") {
            secret.pop();
        }
    }
    if secret.is_empty() {
        return Err(format!("{}: the secret is empty", path.display()));
    }
    Ok(secret)
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
