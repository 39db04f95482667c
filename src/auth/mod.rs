//! Owns who may read and write a topic: the policy built at start-up (`Policy`: the token
//! key, the topic rules, the API key for backend publishers) and the check the reactor makes
//! before a transport opens (`Gate`), with the token carriers (`token_of`) and the in-band
//! refresh message. Layer L3, beside `app`: the time is passed in (the reactor's clock), keys
//! are read once, at start-up. Verifying a token is `verify.rs`, the rules `rules.rs`, the
//! per-reactor cache of verified tokens `cache.rs`.
//! Must not: log a token or an API key or put one in an error body or a metric, or read the
//! clock.

mod cache;
mod rules;
mod verify;

use std::rc::Rc;

use serde::Deserialize;
use subtle::ConstantTimeEq;

pub use cache::TokenCache;
pub use rules::{matches, rule_for, TopicRule, Who};
pub use verify::{AuthError, Grant, Right, Verifier, MAX_TOKEN_LEN};

use crate::config::AuthConfig;
use crate::http::request::Request;
use crate::metrics::Outcomes;

/// Who may read and write which topic, as configured: built once (`Policy::load`), shared by
/// every worker.
#[derive(Debug)]
pub struct Policy {
    /// The access-token key (`--token-secret-file` / `--token-public-key-file`), if any.
    pub verifier: Option<Verifier>,
    rules: Vec<TopicRule>,
    /// Who may do what on a topic no rule names.
    default: (Who, Who),
    /// The SHA-256 of the backend publishers' key (`--api-key-file`), if any: compared in
    /// constant time, and never kept in the clear.
    api_key: Option<[u8; 32]>,
    /// The cookie that may carry a token (empty: none).
    pub cookie: String,
    /// Verified tokens each reactor may remember (`--token-cache`).
    pub cache_entries: usize,
}

impl Default for Policy {
    /// Everything open: no keys, no rules.
    fn default() -> Policy {
        Policy {
            verifier: None,
            rules: Vec::new(),
            default: (Who::Anyone, Who::Anyone),
            api_key: None,
            cookie: String::new(),
            cache_entries: 0,
        }
    }
}

impl Policy {
    /// The policy `cfg` asks for, its keys read now. A rule that needs a token with no key
    /// to verify one is refused here, not discovered by a client.
    pub fn load(cfg: &AuthConfig) -> Result<Policy, String> {
        let verifier = Verifier::load(cfg)?;
        let api_key = match &cfg.api_key_file {
            Some(path) => Some(TokenCache::key_of(&verify::read_secret(path)?)),
            None => None,
        };
        // Unsaid: a token when a key can check one, else open as without auth.
        let subscribe = if verifier.is_some() {
            Who::Token
        } else {
            Who::Anyone
        };
        let publish = if verifier.is_some() || api_key.is_some() {
            Who::Token
        } else {
            Who::Anyone
        };
        let mut rules = Vec::new();
        for text in &cfg.topic_rules {
            let rule = TopicRule::parse(text, (subscribe, publish))?;
            if rule.subscribe == Who::Token && verifier.is_none() {
                return Err(format!(
                    "topic_rule {text:?}: subscribe=token needs token_secret_file or \
                     token_public_key_file"
                ));
            }
            if rule.publish == Who::Token && verifier.is_none() && api_key.is_none() {
                return Err(format!(
                    "topic_rule {text:?}: publish=token needs a token key or api_key_file"
                ));
            }
            rules.push(rule);
        }
        Ok(Policy {
            verifier,
            rules,
            default: (subscribe, publish),
            api_key,
            cookie: cfg.cookie.clone(),
            cache_entries: cfg.cache_entries,
        })
    }

    /// Every topic needs a token that `verifier` accepts; no rules, no API key.
    pub fn tokens_only(verifier: Verifier, cache_entries: usize) -> Policy {
        Policy {
            verifier: Some(verifier),
            default: (Who::Token, Who::Token),
            cache_entries,
            ..Policy::default()
        }
    }

    /// Is everything open: no token key and no API key?
    pub fn is_open(&self) -> bool {
        self.verifier.is_none() && self.api_key.is_none() && self.rules.is_empty()
    }

    /// Who may do `right` on `topic`: the first rule that matches, else the default.
    pub fn who(&self, right: Right, topic: &str) -> Who {
        let (subscribe, publish) = match rule_for(&self.rules, topic) {
            Some(r) => (r.subscribe, r.publish),
            None => self.default,
        };
        match right {
            Right::Subscribe => subscribe,
            Right::Publish => publish,
        }
    }

    /// Does `key` equal the configured API key? Compared as SHA-256 digests in constant time,
    /// so neither the key's bytes nor its length leak through the time taken.
    fn api_key_is(&self, key: &str) -> bool {
        self.api_key
            .is_some_and(|k| bool::from(k.ct_eq(&TokenCache::key_of(key.as_bytes()))))
    }
}

/// The access check as the reactor makes it for one request: the policy, the time, this
/// reactor's cache of verified tokens and the counters of what happened to tokens.
pub struct Gate<'a> {
    pub policy: &'a Policy,
    /// Seconds since the Unix epoch (the reactor's clock).
    pub now: u64,
    pub cache: &'a mut TokenCache,
    pub outcomes: &'a Outcomes,
}

/// A refusal: the status (401 or 403) and its body.
pub type Refusal = (u16, &'static str);

const SERVER_ONLY: Refusal = (403, "this topic is published by the server only");
const BAD_API_KEY: Refusal = (401, "the API key is not valid");

impl Gate<'_> {
    /// Verify `token` (or find it verified before) and check its time claims now. Counted:
    /// verified, cached, or refused by reason.
    pub fn grant(&mut self, token: &str) -> Result<Rc<Grant>, AuthError> {
        let got = self.grant_uncounted(token);
        match &got {
            Ok(_) => {}
            Err(e) => {
                log::debug!("access token refused: {e}");
                self.outcomes.token_refused(e.index());
            }
        }
        got
    }

    fn grant_uncounted(&mut self, token: &str) -> Result<Rc<Grant>, AuthError> {
        let verifier = self
            .policy
            .verifier
            .as_ref()
            .ok_or_else(|| AuthError::Signature("no token key is configured".into()))?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::TooLarge);
        }
        let key = TokenCache::key(token);
        if let Some(grant) = self.cache.get(&key) {
            grant.valid_at(self.now)?;
            self.outcomes.tokens_cached.inc();
            return Ok(grant);
        }
        let grant = verifier.verify(token)?;
        grant.valid_at(self.now)?;
        self.outcomes.tokens_verified.inc();
        let grant = Rc::new(grant);
        self.cache.insert(key, grant.clone(), self.now);
        Ok(grant)
    }

    /// The request's token, verified: 401 without one or when it does not verify.
    fn grant_of(&mut self, req: &Request<'_>) -> Result<Rc<Grant>, Refusal> {
        let Some(token) = token_of(req, &self.policy.cookie) else {
            self.outcomes.token_refused(AuthError::Missing.index());
            return Err((401, AuthError::Missing.reason()));
        };
        self.grant(token).map_err(|e| (401, e.reason()))
    }

    /// May this request do `right` on `topic`? 401 without a valid token (or API key), 403
    /// when its claims or the topic's rule do not allow it; allowed, the token's `exp` (none
    /// when no token was needed).
    pub fn allows(
        &mut self,
        req: &Request<'_>,
        right: Right,
        topic: &str,
    ) -> Result<Option<u64>, Refusal> {
        let key = api_key_of(req);
        match (self.policy.who(right, topic), key) {
            (Who::Anyone, _) => Ok(None),
            // Backend publishers (`--api-key-file`) may publish anything but a handler's own.
            (Who::Server | Who::Token, Some(key)) if right == Right::Publish => {
                match self.policy.api_key_is(key) {
                    true => Ok(None),
                    false => Err(BAD_API_KEY),
                }
            }
            (Who::Server, _) => Err(SERVER_ONLY),
            (Who::Token, _) => {
                let grant = self.grant_of(req)?;
                if grant.may(right, topic) {
                    Ok(Some(grant.exp))
                } else {
                    Err(match right {
                        Right::Subscribe => (403, NO_SUBSCRIBE),
                        Right::Publish => {
                            (403, "the token does not grant publishing to this topic")
                        }
                    })
                }
            }
        }
    }

    /// A WebSocket that reads `reads` and writes `writes`: refused (401, or 403 without the
    /// right to read), or admitted with whether it may write and the token it brought. A
    /// route with no topic needs no token; a token brought to a topic anyone may read is
    /// still verified (it may grant writing).
    pub fn check(
        &mut self,
        req: &Request<'_>,
        reads: Option<&str>,
        writes: Option<&str>,
    ) -> Result<Admitted, Refusal> {
        if reads.is_none() && writes.is_none() {
            return Ok(Admitted::open());
        }
        let token = token_of(req, &self.policy.cookie).filter(|_| self.policy.verifier.is_some());
        let grant = match token {
            Some(t) => Some(self.grant(t).map_err(|e| (401, e.reason()))?),
            None => None,
        };
        if let Some(topic) = reads.filter(|t| self.policy.who(Right::Subscribe, t) == Who::Token) {
            match &grant {
                None => {
                    self.outcomes.token_refused(AuthError::Missing.index());
                    return Err((401, AuthError::Missing.reason()));
                }
                Some(g) if !g.may(Right::Subscribe, topic) => return Err((403, NO_SUBSCRIBE)),
                Some(_) => {}
            }
        }
        Ok(self.admit(grant, writes))
    }

    /// A refresh on an open WebSocket that reads `reads` and writes `writes`: the new token,
    /// verified now, must grant reading as the first did. Refused: the reason.
    pub fn refresh(
        &mut self,
        token: &str,
        reads: Option<&str>,
        writes: Option<&str>,
    ) -> Result<Admitted, &'static str> {
        let grant = self.grant(token).map_err(|e| e.reason())?;
        let needs = reads.filter(|t| self.policy.who(Right::Subscribe, t) == Who::Token);
        if needs.is_some_and(|t| !grant.may(Right::Subscribe, t)) {
            return Err(NO_SUBSCRIBE);
        }
        Ok(self.admit(Some(grant), writes))
    }

    /// Admitted with `grant`: may it write `writes`, by the topic's rule and its claims?
    fn admit(&self, grant: Option<Rc<Grant>>, writes: Option<&str>) -> Admitted {
        let may_write = match writes {
            None => true,
            Some(t) => match self.policy.who(Right::Publish, t) {
                Who::Anyone => true,
                Who::Server => false,
                Who::Token => grant.as_ref().is_some_and(|g| g.may(Right::Publish, t)),
            },
        };
        Admitted {
            may_write,
            exp: grant.as_ref().map(|g| g.exp),
            identity: grant,
        }
    }
}

const NO_SUBSCRIBE: &str = "the token does not grant subscribing to this topic";

/// A WebSocket let in by `Gate::check`.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// It may publish into its topic.
    pub may_write: bool,
    /// Its token's `exp` (seconds since the Unix epoch), if it brought one: the connection
    /// ends then.
    pub exp: Option<u64>,
    /// The token it brought, verified (`Upgrade::identity`).
    pub identity: Option<Rc<Grant>>,
}

impl Admitted {
    fn open() -> Admitted {
        Admitted {
            may_write: true,
            exp: None,
            identity: None,
        }
    }
}

/// The API key a request carries: `Authorization: ApiKey KEY`.
pub fn api_key_of<'a>(req: &Request<'a>) -> Option<&'a str> {
    let v = std::str::from_utf8(req.header("authorization")?)
        .ok()?
        .trim();
    let (scheme, key) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("apikey")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
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
