//! Tests of the configuration sources: precedence in every combination of file, environment
//! and flag; the error message for a bad value in each source; unknown keys; the printed and
//! example configurations.
//! Must not: depend on the real environment of the process running them (each test builds its
//! own sources).

use std::time::Duration;

use super::*;

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("wsloop").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(text: &str) -> ConfigFile {
    ConfigFile {
        path: "wsloop.toml".into(),
        text: text.into(),
    }
}

fn resolve(args: &[&str], vars: &[(&str, &str)], toml: Option<&str>) -> Result<Effective, String> {
    let f = toml.map(file);
    cli(args)
        .resolve(&env(vars), f.as_ref())
        .map_err(|e| e.to_string())
}

fn err(args: &[&str], vars: &[(&str, &str)], toml: Option<&str>) -> String {
    match resolve(args, vars, toml) {
        Ok(_) => panic!("{args:?} {vars:?} {toml:?}: accepted"),
        Err(e) => e,
    }
}

fn cores() -> String {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .to_string()
}

/// One setting set three different ways, and how to read it back from a `Config`.
struct Key {
    name: &'static str,
    /// The file's line, the environment's value, the flag's arguments.
    file: &'static str,
    env: &'static str,
    flag: &'static [&'static str],
    /// The value read back when it comes from the default, the file, the env, the flag.
    expect: [&'static str; 4],
    read: fn(&Config) -> String,
}

/// One key of every kind of value.
const KEYS: &[Key] = &[
    Key {
        name: "listen",
        file: "listen = \"127.0.0.1:1001\"",
        env: "127.0.0.1:1002",
        flag: &["--listen", "[::1]:1003"],
        expect: [
            "127.0.0.1:8080",
            "127.0.0.1:1001",
            "127.0.0.1:1002",
            "[::1]:1003",
        ],
        read: |c| c.listen.to_string(),
    },
    Key {
        name: "max_message_size",
        file: "max_message_size = \"64KiB\"",
        env: "2MiB",
        flag: &["--max-message-size", "1000"],
        expect: ["1048576", "65536", "2097152", "1000"],
        read: |c| c.ws.max_message_size.to_string(),
    },
    Key {
        name: "max_connections",
        file: "max_connections = 10",
        env: "20",
        flag: &["--max-connections", "30"],
        expect: ["100000", "10", "20", "30"],
        read: |c| c.max_connections.to_string(),
    },
    Key {
        name: "max_fragments",
        file: "max_fragments = \"7\"",
        env: "8",
        flag: &["--max-fragments", "9"],
        expect: ["1024", "7", "8", "9"],
        read: |c| c.ws.max_fragments.to_string(),
    },
    Key {
        name: "slow_soft_limit",
        file: "slow_soft_limit = 4096",
        env: "8KiB",
        flag: &["--slow-soft-limit", "1 MiB"],
        expect: ["262144", "4096", "8192", "1048576"],
        read: |c| c.slow.soft_limit.to_string(),
    },
    Key {
        name: "idle_timeout",
        file: "idle_timeout = 300",
        env: "10m",
        flag: &["--idle-timeout", "1h"],
        expect: ["120s", "300s", "600s", "3600s"],
        read: |c| format!("{}s", c.timeouts.idle.as_secs()),
    },
    Key {
        name: "close_linger",
        file: "close_linger = \"1500ms\"",
        env: "2s",
        flag: &["--close-linger", "250ms"],
        expect: ["5000ms", "1500ms", "2000ms", "250ms"],
        read: |c| format!("{}ms", c.timeouts.close_linger.as_millis()),
    },
    Key {
        name: "allowed_origin",
        file: "allowed_origin = [\"https://f.example\", \"https://g.example\"]",
        env: "https://e.example, https://h.example",
        flag: &[
            "--allowed-origin",
            "https://c.example",
            "--allowed-origin",
            "https://d.example",
        ],
        expect: [
            "",
            "https://f.example https://g.example",
            "https://e.example https://h.example",
            "https://c.example https://d.example",
        ],
        read: |c| c.allowed_origins.join(" "),
    },
    Key {
        name: "trust_proxy",
        file: "trust_proxy = [\"10.0.0.0/8\", \"::1\"]",
        env: "127.0.0.1, 192.168.0.0/16",
        flag: &[
            "--trust-proxy",
            "::ffff:127.0.0.1,fd00::/8",
            "--trust-proxy",
            "10.1.0.0/16",
        ],
        expect: [
            "",
            "10.0.0.0/8 ::1",
            "127.0.0.1 192.168.0.0/16",
            "127.0.0.1 fd00::/8 10.1.0.0/16",
        ],
        read: |c| {
            let blocks: Vec<String> = c.trust_proxy.iter().map(|b| b.to_string()).collect();
            blocks.join(" ")
        },
    },
    Key {
        name: "max_connections_per_ip",
        file: "max_connections_per_ip = 64",
        env: "128",
        flag: &["--max-connections-per-ip", "0"],
        expect: ["0", "64", "128", "0"],
        read: |c| c.max_connections_per_ip.to_string(),
    },
    Key {
        name: "workers",
        file: "workers = 2",
        env: "3",
        flag: &["--workers", "4"],
        expect: ["auto", "2", "3", "4"],
        read: |c| c.workers.to_string(),
    },
];

#[test]
fn precedence_is_flag_then_env_then_file_then_default_in_every_combination() {
    for key in KEYS {
        let var = format!("WSLOOP_{}", key.name.to_ascii_uppercase());
        for combo in 0..8u8 {
            let (in_file, in_env, in_flag) = (combo & 1 != 0, combo & 2 != 0, combo & 4 != 0);
            let toml = in_file.then_some(key.file);
            let vars: Vec<(&str, &str)> = if in_env {
                vec![(var.as_str(), key.env)]
            } else {
                vec![]
            };
            let args: &[&str] = if in_flag { key.flag } else { &[] };
            let eff = resolve(args, &vars, toml).unwrap_or_else(|e| panic!("{}: {e}", key.name));
            let (want, want_src) = if in_flag {
                (key.expect[3], Source::Flag)
            } else if in_env {
                (key.expect[2], Source::Env)
            } else if in_file {
                let line = 1;
                let path = "wsloop.toml".to_string();
                (key.expect[1], Source::File { path, line })
            } else {
                (key.expect[0], Source::Default)
            };
            let want = if want == "auto" { cores() } else { want.into() };
            let case = format!("{} file={in_file} env={in_env} flag={in_flag}", key.name);
            assert_eq!((key.read)(&eff.config), want, "{case}");
            assert_eq!(eff.source(key.name), Some(&want_src), "{case}");
        }
    }
}

#[test]
fn every_setting_in_one_file_with_env_and_flags_on_top() {
    let toml: Vec<&str> = KEYS.iter().map(|k| k.file).collect();
    let toml = toml.join("\n");
    // The environment overrides the even keys; flags override every third one.
    let vars: Vec<(String, String)> = KEYS
        .iter()
        .step_by(2)
        .map(|k| {
            (
                format!("WSLOOP_{}", k.name.to_ascii_uppercase()),
                k.env.into(),
            )
        })
        .collect();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let args: Vec<&str> = KEYS
        .iter()
        .step_by(3)
        .flat_map(|k| k.flag.iter().copied())
        .collect();
    let eff = resolve(&args, &vars, Some(&toml)).unwrap();
    for (i, key) in KEYS.iter().enumerate() {
        let want = if i % 3 == 0 {
            key.expect[3]
        } else if i % 2 == 0 {
            key.expect[2]
        } else {
            key.expect[1]
        };
        assert_eq!((key.read)(&eff.config), want, "{}", key.name);
        let line = match eff.source(key.name) {
            Some(Source::File { line, .. }) => *line,
            _ => 0,
        };
        if i % 2 == 1 && i % 3 != 0 {
            assert_eq!(line, i + 1, "{}: line of its file entry", key.name);
        }
    }
}

#[test]
fn bad_values_name_the_key_and_the_source() {
    // The file.
    assert_eq!(
        err(&[], &[], Some("max_message_size = \"big\"")),
        "config file wsloop.toml:1: key max_message_size: expected a number of bytes \
         (e.g. 65536, 64KiB, 1MiB), got \"big\""
    );
    assert_eq!(
        err(&[], &[], Some("# comment\n\nidle_timeout = \"ten\"\n")),
        "config file wsloop.toml:3: key idle_timeout: expected a duration \
         (e.g. 500ms, 10s, 2m, 1h), got \"ten\""
    );
    assert_eq!(
        err(&[], &[], Some("max_connections = true")),
        "config file wsloop.toml:1: key max_connections: expected a whole number, got true"
    );
    assert_eq!(
        err(&[], &[], Some("max_connections = -5")),
        "config file wsloop.toml:1: key max_connections: expected a whole number, got -5"
    );
    assert_eq!(
        err(&[], &[], Some("listen = 8080")),
        "config file wsloop.toml:1: key listen: expected an address like 127.0.0.1:8080 or \
         [::]:8080, got 8080"
    );
    assert_eq!(
        err(&[], &[], Some("allowed_origin = [1, 2]")),
        "config file wsloop.toml:1: key allowed_origin: expected a list of strings, got [1, 2]"
    );
    assert_eq!(
        err(&[], &[], Some("max_fragments = 5000000000")),
        "config file wsloop.toml:1: key max_fragments: 5000000000 is too large \
         (at most 4294967295)"
    );
    // The environment.
    assert_eq!(
        err(&[], &[("WSLOOP_IDLE_TIMEOUT", "ten")], None),
        "WSLOOP_IDLE_TIMEOUT: expected a duration (e.g. 500ms, 10s, 2m, 1h), got \"ten\""
    );
    assert_eq!(
        err(&[], &[("WSLOOP_MAX_MESSAGE_SIZE", "1MB")], None),
        "WSLOOP_MAX_MESSAGE_SIZE: expected a number of bytes (e.g. 65536, 64KiB, 1MiB), got \
         \"1MB\"; use KiB, MiB or GiB (multiples of 1024)"
    );
    assert_eq!(
        err(&[], &[("WSLOOP_LISTEN", "localhost:80")], None),
        "WSLOOP_LISTEN: expected an address like 127.0.0.1:8080 or [::]:8080, got \
         \"localhost:80\""
    );
    // Flags.
    assert_eq!(
        err(&["--max-connections", "lots"], &[], None),
        "--max-connections: expected a whole number, got \"lots\""
    );
    assert_eq!(
        err(&["--trust-proxy", "127.0.0.1,10.0.0.1/8"], &[], None),
        "--trust-proxy: expected IP addresses or CIDR blocks (e.g. 127.0.0.1, ::1, \
         10.0.0.0/8), got \"10.0.0.1/8\" (host bits set below the /8 prefix; the block is \
         10.0.0.0/8)"
    );
    assert_eq!(
        err(&[], &[], Some("trust_proxy = [\"nginx\"]")),
        "config file wsloop.toml:1: key trust_proxy: expected IP addresses or CIDR blocks \
         (e.g. 127.0.0.1, ::1, 10.0.0.0/8), got \"nginx\" (not an IP address)"
    );
    assert_eq!(
        err(&[], &[], Some("trust_proxy = 5")),
        "config file wsloop.toml:1: key trust_proxy: expected IP addresses or CIDR blocks \
         (e.g. 127.0.0.1, ::1, 10.0.0.0/8), got 5"
    );
    assert_eq!(
        err(&["--idle-timeout", "1d"], &[], None),
        "--idle-timeout: expected a duration (e.g. 500ms, 10s, 2m, 1h), got \"1d\" \
         (unknown unit \"d\"; use ms, s, m or h)"
    );
}

#[test]
fn a_bad_value_is_an_error_even_where_a_stronger_source_overrides_it() {
    let e = err(
        &["--max-message-size", "1000"],
        &[("WSLOOP_MAX_MESSAGE_SIZE", "huge")],
        None,
    );
    assert!(e.starts_with("WSLOOP_MAX_MESSAGE_SIZE: "), "{e}");
    let e = err(
        &["--max-message-size", "1000"],
        &[],
        Some("max_message_size = \"huge\""),
    );
    assert!(
        e.starts_with("config file wsloop.toml:1: key max_message_size: "),
        "{e}"
    );
}

#[test]
fn workers_are_a_positive_number_or_auto() {
    let cores = cores();
    let w = |args: &[&str], vars: &[(&str, &str)], toml| {
        resolve(args, vars, toml).map(|e| e.config.workers.to_string())
    };
    assert_eq!(w(&[], &[], None), Ok(cores.clone()));
    assert_eq!(
        w(&["--workers", "auto"], &[], Some("workers = 3")),
        Ok(cores.clone())
    );
    assert_eq!(w(&[], &[], Some("workers = \"auto\"")), Ok(cores));
    for (args, vars, toml, at) in [
        (&["--workers", "0"][..], &[][..], None, "--workers"),
        (&[], &[("WSLOOP_WORKERS", "0")][..], None, "WSLOOP_WORKERS"),
        (
            &[],
            &[],
            Some("workers = 0"),
            "config file wsloop.toml:1: key workers",
        ),
    ] {
        assert_eq!(
            err(args, vars, toml),
            format!("{at}: must be at least 1 (\"auto\" is one per core)")
        );
    }
    assert!(err(&["--workers", "many"], &[], None).starts_with("--workers: expected a number"));
}

#[test]
fn rules_between_settings_blame_the_strongest_source() {
    // Both flags: the old behaviour.
    let e = err(
        &["--idle-timeout", "10s", "--ping-margin", "20s"],
        &[],
        None,
    );
    assert_eq!(
        e,
        "--ping-margin: ping_margin must be shorter than idle_timeout (10s)"
    );
    // Only the idle timeout was changed, in the environment: that is what to blame.
    let e = err(&[], &[("WSLOOP_IDLE_TIMEOUT", "60s")], None);
    assert_eq!(
        e,
        "WSLOOP_IDLE_TIMEOUT: ping_margin must be shorter than idle_timeout (1m)"
    );
    let e = err(&[], &[], Some("\nbuffer_size = \"2GiB\""));
    assert_eq!(
        e,
        "config file wsloop.toml:2: key buffer_size: at most 1 GiB"
    );
    let e = err(&[], &[], Some("max_fragments = 0"));
    assert_eq!(
        e,
        "config file wsloop.toml:1: key max_fragments: must be at least 1"
    );
    // Several Redis hosts are a cluster's seeds: only with --redis-cluster, on database 0.
    let e = err(&["--redis", "redis://a:7000,b:7001"], &[], None);
    assert!(e.starts_with("--redis: several Redis hosts"), "{e}");
    let e = err(
        &["--redis", "redis://a:7000/1"],
        &[("WSLOOP_REDIS_CLUSTER", "true")],
        None,
    );
    assert!(e.ends_with("a Redis Cluster has only database 0"), "{e}");
    let c = resolve(
        &["--redis", "redis://a:7000,b:7001", "--redis-cluster", "yes"],
        &[],
        None,
    )
    .unwrap()
    .config;
    assert!(c.redis.cluster);
    assert_eq!(c.redis.url.unwrap().more, [("b".to_string(), 7001)]);
}

#[test]
fn derived_values_follow_the_old_flag_rules() {
    let c = resolve(
        &["--buffer-size", "5000", "--max-frame-size", "2MiB"],
        &[],
        None,
    )
    .unwrap()
    .config;
    assert_eq!(c.buffer_size, 8192, "rounded up to a power of two");
    assert_eq!(c.ws.max_frame_size, 1 << 20, "at most the message size");
    let c = resolve(&["--buffer-size", "10"], &[], None).unwrap().config;
    assert_eq!(c.buffer_size, 4096);
}

#[test]
fn unknown_keys_in_the_file_are_errors_with_a_suggestion() {
    assert_eq!(
        err(&[], &[], Some("max_mesage_size = 1")),
        "config file wsloop.toml:1: unknown key \"max_mesage_size\" (did you mean \
         max_message_size?)"
    );
    assert_eq!(
        err(
            &[],
            &[],
            Some("listen = \"127.0.0.1:1\"\n\"idle-timeout\" = \"5m\"")
        ),
        "config file wsloop.toml:2: unknown key \"idle-timeout\" (did you mean idle_timeout?)"
    );
    assert_eq!(
        err(&[], &[], Some("[ws]\nmax_message_size = 1")),
        "config file wsloop.toml:1: unknown key \"ws\""
    );
    assert_eq!(
        err(&[], &[], Some("colour = \"blue\"")),
        "config file wsloop.toml:1: unknown key \"colour\""
    );
    let e = err(&[], &[], Some("listen = "));
    assert!(
        e.starts_with("config file wsloop.toml: TOML parse error"),
        "{e}"
    );
}

#[test]
fn unknown_environment_variables_are_warnings_and_empty_ones_are_unset() {
    let eff = resolve(
        &[],
        &[("WSLOOP_IDLE_TIMOUT", "5m"), ("WSLOOP_LISTEN", "")],
        None,
    )
    .unwrap();
    assert_eq!(
        eff.warnings,
        vec![
            "ignoring unknown environment variable WSLOOP_IDLE_TIMOUT (did you mean \
             WSLOOP_IDLE_TIMEOUT?)"
                .to_string()
        ]
    );
    assert_eq!(eff.source("listen"), Some(&Source::Default));
    assert_eq!(eff.config.timeouts.idle, Duration::from_secs(120));
}

#[test]
fn the_config_file_comes_from_the_flag_or_the_environment() {
    let vars = env(&[(CONFIG_ENV, "/etc/wsloop/env.toml")]);
    assert_eq!(
        cli(&[]).config_path(&vars).as_deref(),
        Some("/etc/wsloop/env.toml")
    );
    assert_eq!(
        cli(&["--config", "flag.toml"])
            .config_path(&vars)
            .as_deref(),
        Some("flag.toml")
    );
    assert_eq!(cli(&[]).config_path(&env(&[])), None);
    let e = cli(&["--config", "/nonexistent/wsloop.toml"])
        .load(&env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("config file /nonexistent/wsloop.toml: "),
        "{e}"
    );
}

#[test]
fn printed_configuration_is_a_config_file_that_gives_the_same_configuration() {
    let eff = resolve(
        &[
            "--allowed-origin",
            "https://a.example",
            "--max-message-size",
            "64KiB",
        ],
        &[
            ("WSLOOP_IDLE_TIMEOUT", "90s"),
            ("WSLOOP_SUBPROTOCOL", "chat.v1,\"q\""),
        ],
        Some("close_linger = \"250ms\"\nworkers = 2"),
    )
    .unwrap();
    let printed = eff.to_toml();
    assert!(
        printed.contains("max_message_size = 65536  # --max-message-size (64 KiB)\n"),
        "{printed}"
    );
    assert!(printed.contains("idle_timeout = \"90s\"  # WSLOOP_IDLE_TIMEOUT\n"));
    assert!(printed.contains("close_linger = \"250ms\"  # config file wsloop.toml:1\n"));
    assert!(printed.contains("listen = \"127.0.0.1:8080\"  # default\n"));
    let again = resolve(&[], &[], Some(&printed)).unwrap();
    assert_eq!(
        format!("{:?}", again.config),
        format!("{:?}", eff.config),
        "{printed}"
    );
    assert_eq!(again.config.subprotocols, vec!["chat.v1", "\"q\""]);
}

#[test]
fn help_lists_every_setting_with_its_default_and_variable() {
    let help = Cli::command().render_long_help().to_string();
    for s in SETTINGS {
        assert!(help.contains(&format!("--{}", s.flag())), "{}", s.name);
        assert!(help.contains(&s.env_var()), "{}", s.name);
    }
    assert!(help.contains("[default: 1 MiB]"), "{help}");
    assert!(help.contains("--print-config"));
}

#[test]
fn the_deploy_example_lists_every_key_at_its_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/wsloop.toml");
    let want = example_config();
    if std::env::var_os("WSLOOP_BLESS").is_some() {
        std::fs::write(path, &want).expect("write deploy/wsloop.toml");
    }
    let got = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        got == want,
        "deploy/wsloop.toml is out of date; regenerate it with WSLOOP_BLESS=1 cargo test"
    );
    // Uncommented, the example is a valid file that changes nothing.
    let uncommented: String = got
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.split_once(" = ")
                .is_some_and(|(k, _)| keys::find(k).is_some())
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let eff = resolve(&[], &[], Some(&uncommented)).unwrap();
    assert_eq!(
        SETTINGS
            .iter()
            .filter(|s| matches!(eff.source(s.name), Some(Source::File { .. })))
            .count(),
        SETTINGS.len(),
        "every key appears in the example"
    );
    let defaults = resolve(&[], &[], None).unwrap();
    assert_eq!(
        format!("{:?}", eff.config),
        format!("{:?}", defaults.config)
    );
}
