//! tests/browser.rs: browser end-to-end tests — Debian's Chromium, driven by playwright-core
//! from tests/browser/e2e.mjs, against the demo page and endpoints of a real wsloop.
//!
//! Each test starts its own server (tests/support/server.rs) and runs one scenario of
//! e2e.mjs against it (`node tests/browser/e2e.mjs SCENARIO http://127.0.0.1:PORT`), which
//! launches Chromium, checks what the page sees, and closes Chromium. Why playwright-core
//! and not a page reporting its own results: see the head of e2e.mjs.
//!
//! What they need is installed by `scripts/test`: the Debian packages `chromium` and
//! `fonts-dejavu-core`, and playwright-core (`npm ci --prefix tests/browser`). When any is
//! missing the tests FAIL, never skip. `WSLOOP_CHROMIUM` / `WSLOOP_NODE` override the
//! browser and Node. `WSLOOP_UPDATE_DEMO_PNG=1` makes the screenshot test refresh
//! docs/demo.png.
//!
//! Every wait is bounded: e2e.mjs bounds each wait (5 s) and each scenario (45 s); this file
//! kills it after 60 s. After each scenario, any process still running with the scenario's
//! private temporary directory on its command line (where Playwright puts Chromium's
//! profile) is killed, so no Chromium outlives its test; the server dies with its guard.

// Tests are clients of the server: they use processes and the clock freely.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "support/child.rs"]
mod child;
#[path = "support/nginx.rs"]
mod nginx;
#[path = "support/redis.rs"]
mod redis;
#[path = "support/server.rs"]
mod server;

use child::run;
use server::Server;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// e2e.mjs stops itself after 45 s; this is the backstop if it hangs anyway.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

/// One Chromium at a time: the scenarios time ticks and reconnections, and this machine has
/// two cores.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("WSLOOP_CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from)
}

fn node() -> String {
    std::env::var("WSLOOP_NODE").unwrap_or_else(|_| "node".to_string())
}

/// The value of the first `"key": "value"` in a JSON text (enough for package.json files).
fn json_str<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let rest = &text[text.find(&format!("\"{key}\""))? + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// Why the browser tests cannot run here (with what to do about it), or None.
fn missing_tools(chromium: &Path, dir: &Path) -> Option<String> {
    if !chromium.is_file() {
        return Some(format!(
            "Chromium is missing: no {}. scripts/test installs it (Debian packages `chromium` \
             and `fonts-dejavu-core`); or point WSLOOP_CHROMIUM at a Chromium.",
            chromium.display()
        ));
    }
    let pinned = std::fs::read_to_string(dir.join("package.json")).ok();
    let pinned = pinned
        .as_deref()
        .and_then(|t| json_str(t, "playwright-core"));
    let installed = dir.join("node_modules/playwright-core/package.json");
    let installed = std::fs::read_to_string(installed).ok();
    let installed = installed.as_deref().and_then(|t| json_str(t, "version"));
    if pinned.is_none() || installed != pinned {
        return Some(format!(
            "playwright-core {} is not installed in {}/node_modules (found {:?}). scripts/test \
             installs it (npm ci --prefix tests/browser).",
            pinned.unwrap_or("?"),
            dir.display(),
            installed
        ));
    }
    None
}

/// Pids of the processes whose command line mentions `marker` (this process excluded).
fn processes_mentioning(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

/// Kill what is left of a scenario's Chromium: every process with `dir` on its command line
/// (its profile lives there). Gives them a second to exit by themselves first. Returns how
/// many had to be killed.
fn reap_browser(dir: &Path) -> usize {
    let marker = dir.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline && !processes_mentioning(&marker).is_empty() {
        thread::sleep(Duration::from_millis(50));
    }
    let left = processes_mentioning(&marker);
    for &pid in &left {
        // SAFETY: kill(2) on a pid that runs with our temporary directory on its command
        // line, i.e. one we started; no memory effects.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    left.len()
}

/// Runs scenario `name` of e2e.mjs against `server` with the extra environment `envs`;
/// panics with the scenario's output unless it passes.
fn run_scenario(name: &str, server: &Server, envs: &[(&str, &str)]) {
    run_scenario_at(name, server.port, server.pid(), envs);
}

/// Runs scenario `name` against the server at `port` whose pid is `pid` (a front, such as
/// nginx, for scenarios that drive several servers themselves).
fn run_scenario_at(name: &str, port: u16, pid: u32, envs: &[(&str, &str)]) {
    let dir = browser_dir();
    if let Some(why) = missing_tools(&chromium(), &dir) {
        panic!("{why}");
    }
    // Playwright creates Chromium's profile under TMPDIR: a directory of this scenario's own,
    // so that whatever it leaves running can be found and killed.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("browser-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("create the scenario's TMPDIR");
    let mut cmd = Command::new(node());
    cmd.current_dir(&dir)
        .arg(dir.join("e2e.mjs"))
        .arg(name)
        .arg(format!("http://127.0.0.1:{port}"))
        .env("TMPDIR", &tmp)
        .env("WSLOOP_CHROMIUM", chromium())
        .env("WSLOOP_SERVER_PID", pid.to_string());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let (status, output) = run(cmd, SCENARIO_TIMEOUT);
    let killed = reap_browser(&tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    match status {
        Some(s) if s.success() => {
            println!("{name} passed in {:?}\n{output}", started.elapsed());
            if killed > 0 {
                println!("(killed {killed} Chromium processes left behind)");
            }
        }
        Some(s) => panic!("browser scenario {name} failed ({s}):\n{output}"),
        None => panic!(
            "browser scenario {name} did not finish within {SCENARIO_TIMEOUT:?}; killed:\n{output}"
        ),
    }
}

/// Starts a server with `args`, runs scenario `name` against it, checks the server survived.
fn scenario(name: &str, args: &[&str]) {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = Server::start(args);
    run_scenario(name, &server, &[]);
    server.assert_running();
}

#[test]
fn websocket_echo_of_text_and_binary_arraybuffer() {
    scenario("echo", &[]);
}

#[test]
fn websocket_ready_state_connecting_open_closing_closed() {
    scenario("readystate", &[]);
}

#[test]
fn chat_room_between_two_browser_contexts() {
    scenario("chat", &[]);
}

#[test]
fn clock_ticks_at_least_twice_in_three_seconds() {
    scenario("clock", &[]);
}

#[test]
fn close_1000_with_reason_chosen_by_the_server_reaches_onclose() {
    scenario("bye", &[]);
}

#[test]
fn close_1001_reaches_onclose_when_the_server_shuts_down() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = Server::start(&[]);
    run_scenario("shutdown", &server, &[]);
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("the server exits after SIGTERM and its drain");
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn permessage_deflate_negotiated_by_the_browser() {
    scenario("deflate", &[]);
}

#[test]
fn sse_fallback_with_event_source() {
    scenario("sse", &[]);
}

#[test]
fn sse_reconnects_with_last_event_id_and_misses_nothing() {
    // The page goes through a relay that the scenario cuts; EventSource retries after the
    // server's `retry:`, shortened here to keep the test quick.
    scenario("sse-resume", &["--sse-retry", "250ms"]);
}

/// A token secret in a file of the test's own (its path): what --token-secret-file reads.
fn secret_file(name: &str, secret: &str) -> String {
    let file =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    std::fs::write(&file, secret).expect("write the token secret");
    file.to_string_lossy().into_owned()
}

#[test]
fn access_tokens_by_query_and_by_cookie() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let secret = "browser secret";
    let file = secret_file("browser-token-secret", secret);
    let args = [
        "--token-secret-file",
        &file,
        "--token-cookie",
        "wsloop_token",
    ];
    let mut server = Server::start(&args);
    run_scenario("tokens", &server, &[("WSLOOP_TOKEN_SECRET", secret)]);
    server.assert_running();
    let _ = std::fs::remove_file(&file);
}

/// Scenario `name` with nginx in front of three nodes on one Redis (each started with
/// `--workers 1 --redis URL --redis-timeout 500ms` and `extra`), round robin, no sticky
/// sessions; the scenario gets the nodes as WSLOOP_NODES (`[[pid, port], ...]`) and kills
/// them itself (nothing signals the front).
fn behind_nginx_over_three_nodes(name: &str, extra: &[&str]) {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let redis = redis::Redis::start();
    let url = redis.url();
    let args = [
        &[
            "--workers",
            "1",
            "--redis",
            &url,
            "--redis-timeout",
            "500ms",
        ],
        extra,
    ]
    .concat();
    let nodes = [0, 1, 2].map(|_| Server::start(&args));
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr()).collect();
    let lb = nginx::Nginx::start_many(&addrs);
    let list: Vec<String> = nodes
        .iter()
        .map(|n| format!("[{},{}]", n.pid(), n.port))
        .collect();
    let list = format!("[{}]", list.join(","));
    run_scenario_at(
        name,
        lb.addr.port(),
        std::process::id(),
        &[("WSLOOP_NODES", &list)],
    );
}

#[test]
fn event_source_behind_round_robin_nginx_resumes_on_another_node_exactly() {
    behind_nginx_over_three_nodes("sse-nodes", &["--sse-retry", "250ms"]);
}

/// The client across a graceful restart of its node (the scenario sends the SIGTERM; the
/// replacement is started here on the same port once the old one has exited), publishing
/// going on through a second node of the same Redis.
#[test]
fn the_client_resumes_across_a_restart_of_its_server_mid_stream() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let redis = redis::Redis::start();
    let url = redis.url();
    let args = [
        "--workers",
        "1",
        "--redis",
        url.as_str(),
        "--shutdown-spread",
        "1s",
        "--redis-timeout",
        "500ms",
    ];
    let mut a = Server::start(&args);
    let b = Server::start(&args);
    let (port, pid) = (a.port, a.pid());
    let publish = format!("http://127.0.0.1:{}", b.port);
    let scenario = std::thread::spawn(move || {
        run_scenario_at("client-restart", port, pid, &[("WSLOOP_PUBLISH", &publish)])
    });
    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    while a.try_status().is_none() && !scenario.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let listen = format!("127.0.0.1:{port}");
    let again = (!scenario.is_finished())
        .then(|| Server::start(&[&["--listen", &listen], &args[..]].concat()));
    if let Err(panic) = scenario.join() {
        std::panic::resume_unwind(panic);
    }
    drop(again);
}

/// The client behind a round-robin nginx over three nodes of one Redis, the node holding its
/// WebSocket killed twice (by the scenario).
#[test]
fn the_client_moves_to_another_node_when_its_node_is_killed_and_resumes_exactly() {
    behind_nginx_over_three_nodes("client-nodes", &[]);
}

/// The client scenario against a server of its own, reached directly (`hostile` None) or
/// through an nginx that drops `Upgrade` (and, with `Some(true)`, buffers responses).
fn client_settles_on(expect: &str, hostile: Option<bool>) {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(&[]);
    let direct = format!("http://127.0.0.1:{}", server.port);
    let envs = [
        ("WSLOOP_EXPECT", expect),
        ("WSLOOP_DIRECT", direct.as_str()),
    ];
    match hostile {
        None => run_scenario("client", &server, &envs),
        Some(buffering) => {
            let lb = nginx::Nginx::start_hostile(server.addr(), buffering);
            run_scenario_at("client", lb.addr.port(), std::process::id(), &envs);
        }
    }
}

#[test]
fn the_client_uses_websocket_when_it_can() {
    client_settles_on("websocket", None);
}

#[test]
fn the_client_falls_back_to_sse_through_a_proxy_that_drops_upgrade() {
    client_settles_on("sse", Some(false));
}

#[test]
fn the_client_falls_back_to_polling_through_a_proxy_that_also_buffers() {
    client_settles_on("poll", Some(true));
}

#[test]
fn the_client_refreshes_its_token_in_band_or_reconnects_at_expiry_and_misses_nothing() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let secret = "client secret";
    let file = secret_file("browser-client-secret", secret);
    let mut server = Server::start(&["--token-secret-file", &file]);
    run_scenario("client-token", &server, &[("WSLOOP_TOKEN_SECRET", secret)]);
    server.assert_running();
    let _ = std::fs::remove_file(&file);
}

#[test]
fn long_polling_fallback_receives_chat_from_a_websocket_page() {
    scenario("poll", &[]);
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    let signature = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || &png[..8] != signature || &png[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&png[16..20]), be(&png[20..24])))
}

#[test]
fn screenshot_of_the_demo_page() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(&[]);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo.png");
    let _ = std::fs::remove_file(&out);
    let out_str = out.to_str().expect("UTF-8 path");
    run_scenario("screenshot", &server, &[("WSLOOP_SCREENSHOT", out_str)]);
    let png = std::fs::read(&out).expect("the scenario wrote the screenshot");
    assert_eq!(png_size(&png), Some((1200, 800)), "a 1200×800 PNG");
    assert!(
        png.len() > 10_000,
        "{} bytes: too small to show the page",
        png.len()
    );
    if std::env::var_os("WSLOOP_UPDATE_DEMO_PNG").is_some_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/demo.png");
        std::fs::copy(&out, &docs).expect("copy to docs/demo.png");
        println!("updated {}", docs.display());
    }
}

#[test]
fn missing_chromium_fails_with_instructions() {
    // The harness's own check ...
    let why = missing_tools(Path::new("/nonexistent/chromium"), &browser_dir())
        .expect("a missing Chromium is reported");
    assert!(why.contains("scripts/test installs it"), "{why}");
    // ... and e2e.mjs's, when run by hand: a failure, not a skip.
    let mut cmd = Command::new(node());
    cmd.current_dir(browser_dir())
        .arg(browser_dir().join("e2e.mjs"))
        .args(["echo", "http://127.0.0.1:9"])
        .env("WSLOOP_CHROMIUM", "/nonexistent/chromium");
    let (status, output) = run(cmd, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| !s.success()),
        "exits non-zero:\n{output}"
    );
    assert!(output.contains("scripts/test installs it"), "{output}");
}

#[test]
fn json_str_reads_package_fields() {
    let text = r#"{ "name": "x", "dependencies": { "playwright-core": "1.64.1" } }"#;
    assert_eq!(json_str(text, "playwright-core"), Some("1.64.1"));
    assert_eq!(json_str(text, "name"), Some("x"));
    assert_eq!(json_str(text, "version"), None);
}
