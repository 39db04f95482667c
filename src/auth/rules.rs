//! Owns topic rules (`topic_rule`): per topic pattern, who may subscribe (`anyone` | `token`)
//! and who may publish (`anyone` | `token` | `server`), and the `*` pattern matching that
//! rules and token claims share. Parsed once, at start-up; first matching rule wins.

/// Who may do something on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Without a token.
    Anyone,
    /// With a token (or, for `POST /publish`, the API key) that grants it.
    Token,
    /// Only the server side: its handlers and `POST /publish` with the API key.
    Server,
}

/// One `topic_rule`: `PATTERN [subscribe=anyone|token] [publish=anyone|token|server]`.
/// `server` topics take publishes from the server's handlers and from `POST /publish` with the
/// API key only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRule {
    pub pattern: String,
    pub subscribe: Who,
    pub publish: Who,
}

impl TopicRule {
    /// Parse one rule; what is not said is `unsaid` (subscribe, publish). The error names
    /// the mistake.
    pub fn parse(text: &str, unsaid: (Who, Who)) -> Result<TopicRule, String> {
        let mut words = text.split_whitespace();
        let pattern = words.next().ok_or("a topic rule needs a topic pattern")?;
        if pattern.contains('=') {
            return Err(format!(
                "{text:?}: a topic rule starts with its topic pattern"
            ));
        }
        let mut rule = TopicRule {
            pattern: pattern.to_string(),
            subscribe: unsaid.0,
            publish: unsaid.1,
        };
        for word in words {
            let who = |v: &str| match v {
                "anyone" => Ok(Who::Anyone),
                "token" => Ok(Who::Token),
                "server" => Ok(Who::Server),
                _ => Err(format!("{text:?}: {v:?} is not anyone, token or server")),
            };
            match word.split_once('=') {
                Some(("subscribe", v)) if v != "server" => rule.subscribe = who(v)?,
                Some(("subscribe", _)) => {
                    return Err(format!("{text:?}: subscribe is anyone or token"))
                }
                Some(("publish", v)) => rule.publish = who(v)?,
                _ => {
                    return Err(format!(
                        "{text:?}: {word:?} is not subscribe=… or publish=…"
                    ))
                }
            }
        }
        Ok(rule)
    }
}

/// The rule for `topic`: the first whose pattern matches it.
pub fn rule_for<'r>(rules: &'r [TopicRule], topic: &str) -> Option<&'r TopicRule> {
    rules.iter().find(|r| matches(&r.pattern, topic))
}

/// Does `pattern` match `topic`? `*` matches any run of characters (none included); every
/// other character matches itself. `news.*` matches `news.` and `news.sport`; `*` matches
/// every topic; there is no escape character.
pub fn matches(pattern: &str, topic: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), topic.as_bytes());
    // Greedy with one backtrack point: the last `*` seen and where its run ended. Linear in
    // practice; at worst pattern × topic length, both bounded (topics by --max-topic-len).
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

#[cfg(test)]
mod tests {
    use super::{matches, TopicRule, Who};

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

    const T: (Who, Who) = (Who::Token, Who::Token);

    #[test]
    fn a_rule_says_who_and_leaves_the_rest_to_the_default() {
        let r = TopicRule::parse("news.* subscribe=anyone", T).unwrap();
        assert_eq!(
            (r.pattern.as_str(), r.subscribe, r.publish),
            ("news.*", Who::Anyone, Who::Token)
        );
        let r = TopicRule::parse("  alerts   publish=server ", T).unwrap();
        assert_eq!((r.subscribe, r.publish), (Who::Token, Who::Server));
        let r = TopicRule::parse("lobby subscribe=anyone publish=anyone", T).unwrap();
        assert_eq!((r.subscribe, r.publish), (Who::Anyone, Who::Anyone));
        let r = TopicRule::parse("x publish=server", (Who::Anyone, Who::Anyone)).unwrap();
        assert_eq!((r.subscribe, r.publish), (Who::Anyone, Who::Server));
        for bad in [
            "",
            "subscribe=anyone",
            "x subscribe=server",
            "x publish=all",
            "x read=anyone",
        ] {
            assert!(
                TopicRule::parse(bad, T).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
