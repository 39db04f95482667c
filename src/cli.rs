//! Owns start-up configuration: turning command-line flags, `WSLOOP_*` environment variables
//! and an optional TOML config file into a `Config`, with the precedence
//! **flags > environment > config file > defaults**; `--print-config`; and errors that name
//! the bad key and the source it came from. Every setting is one entry of `keys::SETTINGS`
//! (its flag, variable and file key derive from one name); the defaults themselves live in
//! `config.rs`. It parses and reads the config file; it does not run anything.
//! Must not: start the server, open sockets, or invent defaults (they live in `config.rs`).

mod keys;
#[cfg(test)]
mod tests;
mod value;

pub use value::{parse_duration, parse_size};

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::{self, Write as _};

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::Config;
use keys::{Input, Setting, SETTINGS};

/// The environment variable naming a config file (like `--config`).
pub const CONFIG_ENV: &str = "WSLOOP_CONFIG";

/// `WSLOOP_*` environment variables, name → value (a map, so tests can supply their own).
pub type Env = BTreeMap<String, String>;

/// The `WSLOOP_*` variables of this process (a value that is not UTF-8 is kept, mangled, so
/// that it is reported as a bad value rather than silently ignored).
pub fn process_env() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            let v = v.to_string_lossy().into_owned();
            k.starts_with("WSLOOP_").then_some((k, v))
        })
        .collect()
}

/// A config file: its name as given, and its text.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: String,
    pub text: String,
}

/// Where a setting's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File { path: String, line: usize },
    Env,
    Flag,
}

impl Source {
    /// Higher wins: flags > environment > file > defaults.
    fn rank(&self) -> u8 {
        match self {
            Source::Default => 0,
            Source::File { .. } => 1,
            Source::Env => 2,
            Source::Flag => 3,
        }
    }

    /// The prefix of an error about `setting` from this source: `--idle-timeout`,
    /// `WSLOOP_IDLE_TIMEOUT`, `config file wsloop.toml:3: key idle_timeout`.
    fn locate(&self, setting: &Setting) -> String {
        match self {
            Source::Default => format!("{} (default)", setting.name),
            Source::File { path, line } => {
                format!("config file {path}:{line}: key {}", setting.name)
            }
            Source::Env => setting.env_var(),
            Source::Flag => format!("--{}", setting.flag()),
        }
    }

    /// Where the value came from, for `--print-config`.
    fn origin(&self, setting: &Setting) -> String {
        match self {
            Source::Default => "default".into(),
            Source::File { path, line } => format!("config file {path}:{line}"),
            Source::Env => setting.env_var(),
            Source::Flag => format!("--{}", setting.flag()),
        }
    }
}

/// A configuration that cannot be used; the message names the key and where it came from.
/// `main` prints it after `wsloop: ` and exits with status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The configuration in effect, with the source of every setting.
#[derive(Debug, Clone)]
pub struct Effective {
    pub config: Config,
    /// Indexed like `SETTINGS`.
    sources: Vec<Source>,
    /// Things worth saying that do not stop the server (an unknown `WSLOOP_*` variable).
    pub warnings: Vec<String>,
}

impl Effective {
    /// Where the setting called `name` came from.
    pub fn source(&self, name: &str) -> Option<&Source> {
        keys::find(name).map(|(i, _)| &self.sources[i])
    }

    /// The configuration as a TOML document that `--config` accepts, each value commented
    /// with its source (`wsloop --print-config`).
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# wsloop: the configuration in effect.\n\
             # Precedence: flags > WSLOOP_* environment > config file > defaults.\n\
             # This is a valid config file (wsloop --config FILE); each comment says where the\n\
             # value came from.\n",
        );
        let mut group = "";
        for (s, src) in SETTINGS.iter().zip(&self.sources) {
            if s.group != group {
                group = s.group;
                let _ = write!(out, "\n# {group}\n");
            }
            let (value, note) = s.field.show(&mut self.config.clone());
            let mut origin = src.origin(s);
            if s.name == "workers" && *src == Source::Default {
                origin.push_str(": auto, one per core");
            }
            match note {
                Some(note) => {
                    let _ = writeln!(out, "{} = {value}  # {origin} ({note})", s.name);
                }
                None => {
                    let _ = writeln!(out, "{} = {value}  # {origin}", s.name);
                }
            }
        }
        out
    }
}

/// The parsed command line.
#[derive(Debug, Clone)]
pub struct Cli {
    matches: ArgMatches,
}

const ABOUT: &str =
    "wsloop — a WebSocket server on a hand-written, single-threaded epoll event loop";

const LONG_ABOUT: &str = "\
wsloop — a WebSocket server on a hand-written, single-threaded epoll event loop.

Serves a WebSocket echo at ws://ADDR/echo (and ws://ADDR/). Logging goes to stderr and is
controlled by RUST_LOG (e.g. RUST_LOG=debug).

Every setting below can be given three ways: as a flag (--max-message-size 64KiB), as an
environment variable (WSLOOP_MAX_MESSAGE_SIZE=64KiB) or as a key of a TOML config file
(max_message_size = \"64KiB\", read with --config FILE or WSLOOP_CONFIG=FILE). Precedence:
flags > environment > config file > defaults. Sizes are bytes, optionally with a KiB, MiB
or GiB suffix; durations take ms, s, m or h (a bare number is seconds). Lists are repeated
flags, TOML arrays, or comma-separated in the environment. `wsloop --print-config` shows
the result; deploy/wsloop.toml lists every key with its default.";

impl Cli {
    /// The clap command: `--config`, `--print-config`, and one flag per setting.
    pub fn command() -> Command {
        let mut defaults = Config {
            workers: 0, // "auto"
            ..Config::default()
        };
        let mut cmd = Command::new("wsloop")
            .version(env!("CARGO_PKG_VERSION"))
            .about(ABOUT)
            .long_about(LONG_ABOUT)
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_name("FILE")
                    .help(format!(
                        "Read settings from this TOML file (keys as in deploy/wsloop.toml) \
                         [env: {CONFIG_ENV}]"
                    )),
            )
            .arg(
                Arg::new("print_config")
                    .long("print-config")
                    .action(ArgAction::SetTrue)
                    .help("Print the configuration in effect as TOML, and exit"),
            );
        for s in SETTINGS {
            let shown = match s.field.show(&mut defaults) {
                (v, _) if v == "[]" => "none".to_string(),
                (_, Some(note)) => note,
                (v, None) => v.trim_matches('"').to_string(),
            };
            let arg = Arg::new(s.name)
                .long(s.flag())
                .value_name(s.value_name)
                .help_heading(s.group)
                .help(format!(
                    "{} [default: {shown}] [env: {}]",
                    s.help,
                    s.env_var()
                ));
            cmd = cmd.arg(if s.is_list() {
                arg.action(ArgAction::Append)
            } else {
                arg
            });
        }
        cmd
    }

    /// Parse the process's arguments; on a usage error clap prints it and exits with 2.
    pub fn parse() -> Cli {
        Cli {
            matches: Cli::command().get_matches(),
        }
    }

    pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Ok(Cli {
            matches: Cli::command().try_get_matches_from(args)?,
        })
    }

    /// `--print-config` was given.
    pub fn print_config(&self) -> bool {
        self.matches.get_flag("print_config")
    }

    /// The config file to read: `--config`, else `WSLOOP_CONFIG`, else none.
    pub fn config_path(&self, env: &Env) -> Option<String> {
        let flag = self.matches.get_one::<String>("config").cloned();
        flag.or_else(|| env.get(CONFIG_ENV).cloned())
            .filter(|p| !p.is_empty())
    }

    /// Read the config file (if one is named) and resolve every setting.
    pub fn load(&self, env: &Env) -> Result<Effective, ConfigError> {
        let file = match self.config_path(env) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError(format!("config file {path}: {e}")))?;
                Some(ConfigFile { path, text })
            }
            None => None,
        };
        self.resolve(env, file.as_ref())
    }

    /// Resolve every setting from these flags, `env` and `file`: defaults, overridden by
    /// the file, overridden by the environment, overridden by flags. A bad value is an error
    /// in whichever source holds it, even one that a higher source overrides.
    pub fn resolve(&self, env: &Env, file: Option<&ConfigFile>) -> Result<Effective, ConfigError> {
        let mut layers = Layers {
            config: Config {
                workers: 0, // "auto" until every source has spoken
                ..Config::default()
            },
            sources: vec![Source::Default; SETTINGS.len()],
        };
        if let Some(file) = file {
            layers.apply_file(file)?;
        }
        let warnings = layers.apply_env(env)?;
        layers.apply_flags(&self.matches)?;
        layers.finish()?;
        Ok(Effective {
            config: layers.config,
            sources: layers.sources,
            warnings,
        })
    }

    /// The configuration from these flags, the process's environment and the config file
    /// they name, or the message naming what is wrong.
    pub fn into_config(self) -> Result<Config, String> {
        self.load(&process_env())
            .map(|e| e.config)
            .map_err(|e| e.to_string())
    }
}

/// A configuration being built, with the source of each setting so far.
struct Layers {
    config: Config,
    sources: Vec<Source>,
}

impl Layers {
    fn set(&mut self, index: usize, src: Source, input: Input<'_>) -> Result<(), ConfigError> {
        let s = &SETTINGS[index];
        s.field
            .set(&mut self.config, input)
            .map_err(|msg| ConfigError(format!("{}: {msg}", src.locate(s))))?;
        self.sources[index] = src;
        Ok(())
    }

    /// The file's keys, in the order they appear. Unknown keys are errors: a typo must not
    /// silently leave a default in force.
    fn apply_file(&mut self, file: &ConfigFile) -> Result<(), ConfigError> {
        let path = &file.path;
        let table: BTreeMap<String, toml::Spanned<toml::Value>> = toml::from_str(&file.text)
            .map_err(|e| {
                ConfigError(format!("config file {path}: {}", e.to_string().trim_end()))
            })?;
        let mut entries: Vec<_> = table.into_iter().collect();
        entries.sort_by_key(|(_, v)| v.span().start);
        for (key, value) in entries {
            let before = file.text.get(..value.span().start).unwrap_or("");
            let line = 1 + before.matches('\n').count();
            let Some((index, _)) = keys::find(&key) else {
                let hint = keys::suggest(&key, SETTINGS.iter().map(|s| s.name))
                    .map(|n| format!(" (did you mean {n}?)"))
                    .unwrap_or_default();
                return Err(ConfigError(format!(
                    "config file {path}:{line}: unknown key {key:?}{hint}"
                )));
            };
            let src = Source::File {
                path: path.clone(),
                line,
            };
            match value.get_ref() {
                toml::Value::String(s) => self.set(index, src, Input::Text(s))?,
                toml::Value::Integer(i) => self.set(index, src, Input::Int(*i))?,
                toml::Value::Array(items) => {
                    let strings: Option<Vec<String>> =
                        items.iter().map(|v| v.as_str().map(String::from)).collect();
                    match strings {
                        Some(v) => self.set(index, src, Input::Many(v))?,
                        None => {
                            let shown = value.get_ref().to_string();
                            self.set(index, src, Input::Other(shown))?
                        }
                    }
                }
                other => self.set(index, src, Input::Other(other.to_string()))?,
            }
        }
        Ok(())
    }

    /// `WSLOOP_*` variables. An empty variable counts as unset (systemd's `Environment=X=`
    /// and shell `X=` mean "nothing"). An unknown `WSLOOP_*` variable is a warning, not an
    /// error: the prefix is also used by tools around the server (e.g. the test suite's
    /// `WSLOOP_SKIP_PROMTOOL`).
    fn apply_env(&mut self, env: &Env) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        let vars: Vec<String> = SETTINGS.iter().map(Setting::env_var).collect();
        for (name, value) in env {
            if !name.starts_with("WSLOOP_") || name == CONFIG_ENV {
                continue;
            }
            match vars.iter().position(|v| v == name) {
                Some(_) if value.is_empty() => {}
                Some(index) => self.set(index, Source::Env, Input::Text(value))?,
                None => {
                    let known = vars.iter().map(String::as_str).chain([CONFIG_ENV]);
                    let hint = keys::suggest(name, known)
                        .map(|n| format!(" (did you mean {n}?)"))
                        .unwrap_or_default();
                    warnings.push(format!(
                        "ignoring unknown environment variable {name}{hint}"
                    ));
                }
            }
        }
        Ok(warnings)
    }

    fn apply_flags(&mut self, matches: &ArgMatches) -> Result<(), ConfigError> {
        for (index, s) in SETTINGS.iter().enumerate() {
            if s.is_list() {
                if let Some(values) = matches.get_many::<String>(s.name) {
                    let values = values.cloned().collect();
                    self.set(index, Source::Flag, Input::Many(values))?;
                }
            } else if let Some(value) = matches.get_one::<String>(s.name) {
                self.set(index, Source::Flag, Input::Text(value))?;
            }
        }
        Ok(())
    }

    /// Rules that involve more than one setting, and derived values.
    fn finish(&mut self) -> Result<(), ConfigError> {
        let cfg = &mut self.config;
        if cfg.timeouts.ping_margin >= cfg.timeouts.idle {
            let idle = value::format_duration(cfg.timeouts.idle);
            let at = self.blame("ping_margin", "idle_timeout");
            return Err(ConfigError(format!(
                "{at}: ping_margin must be shorter than idle_timeout ({idle})"
            )));
        }
        if cfg.tls_cert.is_some() != cfg.tls_key.is_some() {
            let at = self.blame("tls_cert", "tls_key");
            return Err(ConfigError(format!(
                "{at}: tls_cert and tls_key go together"
            )));
        }
        if cfg.buffer_size > 1 << 30 {
            let at = self.blame("buffer_size", "buffer_size");
            return Err(ConfigError(format!("{at}: at most 1 GiB")));
        }
        cfg.buffer_size = cfg.buffer_size.max(4096).next_power_of_two();
        if cfg.pubsub.max_topics == 0 {
            let at = self.blame("max_topics", "max_topics");
            return Err(ConfigError(format!("{at}: must be at least 1")));
        }
        if cfg.ws.max_fragments == 0 {
            let at = self.blame("max_fragments", "max_fragments");
            return Err(ConfigError(format!("{at}: must be at least 1")));
        }
        cfg.ws.max_frame_size = cfg.ws.max_frame_size.min(cfg.ws.max_message_size);
        if cfg.redis.timeout.is_zero() {
            let at = self.blame("redis_timeout", "redis_timeout");
            return Err(ConfigError(format!("{at}: must be longer than 0")));
        }
        if let Some(url) = cfg.redis.url.as_ref() {
            if !url.more.is_empty() && !cfg.redis.cluster {
                let at = self.blame("redis", "redis_cluster");
                return Err(ConfigError(format!(
                    "{at}: several Redis hosts are the seed nodes of a Redis Cluster: set \
                     --redis-cluster"
                )));
            }
            if url.db != 0 && cfg.redis.cluster {
                let at = self.blame("redis", "redis_cluster");
                return Err(ConfigError(format!(
                    "{at}: a Redis Cluster has only database 0"
                )));
            }
        }
        if cfg.workers == 0 {
            cfg.workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(256));
        }
        Ok(())
    }

    /// The error prefix for a rule between settings `a` and `b`: the one set by the
    /// stronger source (the one the user most likely just changed).
    fn blame(&self, a: &str, b: &str) -> String {
        let pick = |name: &str| keys::find(name).map(|(i, s)| (&self.sources[i], s));
        match (pick(a), pick(b)) {
            (Some((sa, _)), Some((sb, b))) if sb.rank() > sa.rank() => sb.locate(b),
            (Some((sa, a)), _) => sa.locate(a),
            _ => a.to_string(),
        }
    }
}

/// A commented example config file: every key at its default, with its help text
/// (deploy/wsloop.toml is this text; a test keeps the two equal).
pub fn example_config() -> String {
    let mut defaults = Config {
        workers: 0,
        ..Config::default()
    };
    let mut out = String::from(
        "# deploy/wsloop.toml: an example wsloop config file listing every key with its default.\n\
         #\n\
         # Use it with `wsloop --config /etc/wsloop/wsloop.toml` (or WSLOOP_CONFIG=FILE).\n\
         # Precedence: flags > WSLOOP_* environment variables > this file > defaults.\n\
         # Keys are the flag names with `_` for `-` (--max-message-size → max_message_size;\n\
         # environment: WSLOOP_MAX_MESSAGE_SIZE). Unknown keys are errors.\n\
         # Sizes: bytes as a number, or a string with KiB/MiB/GiB (\"64KiB\").\n\
         # Durations: a string with ms, s, m or h (\"500ms\", \"10s\", \"2m\"); a number is seconds.\n\
         # Lists: arrays of strings. `wsloop --print-config` shows the result of all sources.\n\
         #\n\
         # Generated by wsloop::cli::example_config(); WSLOOP_BLESS=1 cargo test regenerates it.\n",
    );
    let mut group = "";
    for s in SETTINGS {
        if s.group != group {
            group = s.group;
            let _ = write!(out, "\n# ---- {group} ----\n");
        }
        out.push('\n');
        for line in wrap(s.help, 92) {
            let _ = writeln!(out, "# {line}");
        }
        let (value, note) = s.field.show(&mut defaults);
        let note = note.map(|n| format!("  # {n}")).unwrap_or_default();
        let _ = writeln!(out, "# {} = {value}{note}", s.name);
        if let Some((_, example)) = EXAMPLES.iter().find(|(name, _)| *name == s.name) {
            let _ = writeln!(out, "# for example: {} = {example}", s.name);
        }
    }
    out
}

/// Keys whose default says too little of how they are written.
const EXAMPLES: &[(&str, &str)] = &[(
    "topic_rule",
    r#"["public.* subscribe=anyone", "lobby subscribe=anyone publish=anyone", "alerts publish=server"]"#,
)];

/// Split `text` into lines of at most `width` characters at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
