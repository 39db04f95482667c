//! tests/config.rs: the configuration sources through the real binary — --print-config, a
//! config file, WSLOOP_* variables and flags in one process, and exit status 2 with a message
//! naming the key and its source for a bad value in each.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Run `wsloop ARGS` with exactly the `WSLOOP_*` variables given (none inherited).
fn wsloop(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsloop"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WSLOOP_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .envs(vars.iter().copied())
        .env("RUST_LOG", "warn");
    cmd.output().expect("run wsloop")
}

/// A config file in the target directory, unique per test.
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("config-test-{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write config file");
    path
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn print_config_shows_defaults_and_exits_0() {
    let out = wsloop(&["--print-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("listen = \"127.0.0.1:8080\"  # default\n"),
        "{text}"
    );
    assert!(
        text.contains("max_message_size = 1048576  # default (1 MiB)\n"),
        "{text}"
    );
    assert!(
        text.contains("idle_timeout = \"2m\"  # default\n"),
        "{text}"
    );
    // Every line that is not a comment is `key = value`.
    let table: toml::Table = text.parse().expect("--print-config output is TOML");
    assert!(table.contains_key("max_queued_total"), "{text}");
}

#[test]
fn flags_beat_environment_beats_file_in_the_real_process() {
    let file = config_file(
        "precedence",
        "listen = \"127.0.0.1:1001\"\nidle_timeout = \"5m\"\nmax_connections = 10\n",
    );
    let path = file.to_string_lossy().into_owned();
    let out = wsloop(
        &[
            "--config",
            &path,
            "--print-config",
            "--max-connections",
            "30",
        ],
        &[
            ("WSLOOP_IDLE_TIMEOUT", "10m"),
            ("WSLOOP_MAX_CONNECTIONS", "20"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "listen = \"127.0.0.1:1001\"  # config file {path}:1\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("idle_timeout = \"10m\"  # WSLOOP_IDLE_TIMEOUT\n"),
        "{text}"
    );
    assert!(
        text.contains("max_connections = 30  # --max-connections\n"),
        "{text}"
    );
    // WSLOOP_CONFIG names the file when --config does not.
    let out = wsloop(&["--print-config"], &[("WSLOOP_CONFIG", &path)]);
    assert!(
        stdout(&out).contains("max_connections = 10  # config file"),
        "{}",
        stdout(&out)
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn bad_values_exit_2_naming_key_and_source() {
    let file = config_file("bad", "max_message_size = \"big\"\n");
    let path = file.to_string_lossy().into_owned();
    let out = wsloop(&["--config", &path], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "wsloop: config file {path}:1: key max_message_size: expected a number of bytes \
             (e.g. 65536, 64KiB, 1MiB), got \"big\"\n"
        )
    );
    let out = wsloop(&[], &[("WSLOOP_IDLE_TIMEOUT", "soon")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("wsloop: WSLOOP_IDLE_TIMEOUT: expected a duration"),
        "{}",
        stderr(&out)
    );
    let out = wsloop(&["--max-connections=-1"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("wsloop: --max-connections: expected a whole number"),
        "{}",
        stderr(&out)
    );
    let out = wsloop(&["--trust-proxy", "127.0.0.1,10.0.0.0/33"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "wsloop: --trust-proxy: expected IP addresses or CIDR blocks (e.g. 127.0.0.1, ::1, \
         10.0.0.0/8), got \"10.0.0.0/33\" (prefix length \"33\" is not a number from 0 to 32)\n"
    );
    let out = wsloop(&[], &[("WSLOOP_TRUST_PROXY", "nginx")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("wsloop: WSLOOP_TRUST_PROXY: expected IP addresses"),
        "{}",
        stderr(&out)
    );
    let unknown = config_file("unknown", "max_conections = 5\n");
    let out = wsloop(&["--config", &unknown.to_string_lossy()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown key \"max_conections\" (did you mean max_connections?)"),
        "{}",
        stderr(&out)
    );
    let out = wsloop(&["--config", "/nonexistent/wsloop.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("wsloop: config file /nonexistent/wsloop.toml: "));
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(unknown);
}

#[test]
fn the_deploy_example_is_accepted_by_the_binary() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/wsloop.toml");
    let out = wsloop(&["--config", example, "--print-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
