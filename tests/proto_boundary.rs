//! The layering rule, checked (docs/architecture.md §1 rule 2): the `wsloop-proto` crate —
//! buffers, timers, codecs and the connection state machine — cannot reach the outside and
//! holds no process-wide state. Owns two checks and the tests that show each one fails:
//! - its dependency tree (`cargo tree -p wsloop-proto`, normal and build edges) has none of
//!   the crates that reach sockets, the event loop, TLS or signals (`FORBIDDEN_CRATES`);
//! - its sources declare no `static`, no `thread_local!`, no atomic and no lazily initialised
//!   global, and name no socket, clock, file system, environment, process or thread
//!   (`FORBIDDEN_NAMES`), outside comments and string literals.
//!
//! Must not: build anything or open a socket; it reads `cargo tree`'s output and source text.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates that would let the core reach the outside (or that only make sense if it does).
const FORBIDDEN_CRATES: &[&str] = &[
    "mio",
    "socket2",
    "libc",
    "nix",
    "rustls",
    "ring",
    "signal-hook",
    "signal-hook-mio",
    "signal-hook-registry",
    "tokio",
    "redis-protocol",
];

/// Identifiers (and paths, as tokens joined by `::`) the core's sources must not use:
/// process-wide state, and every way out of a sans-IO crate.
const FORBIDDEN_NAMES: &[(&str, &str)] = &[
    (
        "thread_local",
        "a thread-local is state shared by every connection of a thread",
    ),
    ("lazy_static", "a lazily initialised global"),
    ("OnceLock", "a lazily initialised global"),
    ("LazyLock", "a lazily initialised global"),
    (
        "std::sync::atomic",
        "atomics exist to share state between threads",
    ),
    ("TcpStream", "sockets belong to the reactor"),
    ("TcpListener", "sockets belong to the reactor"),
    ("UdpSocket", "sockets belong to the reactor"),
    (
        "Instant",
        "only the reactor reads the clock; time is a parameter",
    ),
    (
        "SystemTime",
        "only the reactor reads the clock; time is a parameter",
    ),
    (
        "std::fs",
        "files are read by the wiring (cli) and the reactor (TLS)",
    ),
    ("std::env", "the environment is read by the wiring (cli)"),
    ("std::process", "processes belong to the wiring"),
    ("std::thread", "threads belong to the reactor's workers"),
];

/// A violation: file, line, what, why.
type Finding = (String, usize, String, &'static str);

#[test]
fn the_core_crate_depends_on_nothing_that_reaches_the_outside() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--offline",
            "-p",
            "wsloop-proto",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).expect("cargo tree prints UTF-8");
    let names = crate_names(&tree);
    assert!(
        names.iter().any(|n| n == "httparse"),
        "unexpected tree: {tree}"
    );
    let bad = forbidden_crates(&names);
    assert!(bad.is_empty(), "wsloop-proto depends on {bad:?}:\n{tree}");
}

#[test]
fn the_core_crate_holds_no_process_wide_state_and_names_no_way_out() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/src");
    let mut files = Vec::new();
    collect_rs(&root, &mut files);
    assert!(
        files.len() > 20,
        "found only {} files under {root:?}",
        files.len()
    );
    let mut findings = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        findings.extend(scan(&rel, &text));
    }
    let report: Vec<String> = findings
        .iter()
        .map(|(f, l, what, why)| format!("proto/src/{f}:{l}: `{what}`: {why}"))
        .collect();
    assert!(report.is_empty(), "{}", report.join("\n"));
}

// The checks must be able to fail: each forbidden form is caught, and what only looks like
// one (a lifetime, a comment, a string) is not.

#[test]
fn the_dependency_check_catches_a_forbidden_crate() {
    let tree = "wsloop-proto v0.1.0 (/x/proto)\nhttparse v1.10.1\nmio v1.0.4\nlibc v0.2.1 (*)\n";
    let names = crate_names(tree);
    assert_eq!(forbidden_crates(&names), ["mio", "libc"]);
    assert!(forbidden_crates(&crate_names("httparse v1.10.1\nlog v0.4.0\n")).is_empty());
}

#[test]
fn the_source_check_catches_every_form_of_process_wide_state() {
    let cases = [
        (
            "static QUEUED: AtomicUsize = AtomicUsize::new(0);",
            "static",
        ),
        ("pub static mut N: u32 = 0;", "static"),
        ("pub(crate) static NAMES: [&str; 1] = [\"a\"];", "static"),
        (
            "thread_local! { static S: RefCell<u8> = RefCell::new(0); }",
            "thread_local",
        ),
        (
            "use std::sync::atomic::{AtomicU64, Ordering};",
            "std::sync::atomic",
        ),
        ("let t = std::time::Instant::now();", "Instant"),
        ("use std::net::TcpStream;", "TcpStream"),
        ("static CELL: OnceLock<u8> = OnceLock::new();", "static"),
        ("let f = std :: fs :: read(p);", "std::fs"),
    ];
    for (src, want) in cases {
        let found = scan("case.rs", src);
        assert!(
            found.iter().any(|(_, _, what, _)| what == want),
            "{src:?}: expected `{want}`, found {found:?}"
        );
    }
}

#[test]
fn the_source_check_ignores_lifetimes_comments_and_strings() {
    let clean = r##"
        //! Owns nothing static; a `static` in a comment, thread_local! in prose.
        pub fn reason(&self) -> &'static str { "static Instant thread_local" }
        /* static X: u8 = 0; */
        const LIMIT: usize = 16;
        fn f<'a>(x: &'a str) -> &'a str { let c = '\''; let _ = r#"static S"#; x }
        use std::net::{IpAddr, SocketAddr};
    "##;
    let found = scan("clean.rs", clean);
    assert!(found.is_empty(), "false alarms: {found:?}");
}

#[test]
fn findings_name_the_line() {
    let found = scan("f.rs", "fn a() {}\n\nstatic B: u8 = 0;\n");
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].0.as_str(), found[0].1), ("f.rs", 3));
}

// ------------------------------------------------------------------------------------------

/// Crate names of `cargo tree --prefix none --format {p}` lines (`name vX.Y.Z ...`).
fn crate_names(tree: &str) -> Vec<String> {
    tree.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn forbidden_crates(names: &[String]) -> Vec<String> {
    let mut bad: Vec<String> = Vec::new();
    for n in names {
        if FORBIDDEN_CRATES.contains(&n.as_str()) && !bad.contains(n) {
            bad.push(n.clone());
        }
    }
    bad
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

/// One token of Rust source: an identifier or keyword, or a punctuation character (`::` is
/// one token), with its line.
#[derive(Debug)]
struct Tok {
    text: String,
    line: usize,
}

/// Tokens of `src` without comments, string and character literals, or lifetimes.
fn tokens(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    let skip_to = |i: &mut usize, line: &mut usize, end: usize| {
        *line += c[*i..end.min(c.len())]
            .iter()
            .filter(|&&x| x == '\n')
            .count();
        *i = end;
    };
    while i < c.len() {
        let rest = &c[i..];
        match rest {
            ['/', '/', ..] => {
                let end = (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len());
                skip_to(&mut i, &mut line, end);
            }
            ['/', '*', ..] => {
                let (mut j, mut depth) = (i + 2, 1);
                while j < c.len() && depth > 0 {
                    match (c[j], c.get(j + 1)) {
                        ('/', Some('*')) => (depth, j) = (depth + 1, j + 2),
                        ('*', Some('/')) => (depth, j) = (depth - 1, j + 2),
                        _ => j += 1,
                    }
                }
                skip_to(&mut i, &mut line, j);
            }
            ['r', '#', ..] | ['r', '"', ..] | ['b', 'r', '#', ..] | ['b', 'r', '"', ..] => {
                let start = if c[i] == 'b' { i + 2 } else { i + 1 };
                let hashes = c[start..].iter().take_while(|&&x| x == '#').count();
                if c.get(start + hashes) != Some(&'"') {
                    out.push(Tok {
                        text: c[i].to_string(),
                        line,
                    });
                    i += 1;
                    continue;
                }
                let mut j = start + hashes + 1;
                while j < c.len() {
                    if c[j] == '"'
                        && c[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&x| x == '#')
                            .count()
                            == hashes
                    {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                skip_to(&mut i, &mut line, j);
            }
            ['"', ..] => {
                let mut j = i + 1;
                while j < c.len() && c[j] != '"' {
                    j += if c[j] == '\\' { 2 } else { 1 };
                }
                skip_to(&mut i, &mut line, j + 1);
            }
            ['\'', ..] => {
                // A character literal ('x', '\n', '\'') or a lifetime ('a, 'static).
                if rest.get(1) == Some(&'\\') {
                    let end = (i + 3..c.len()).find(|&j| c[j] == '\'').unwrap_or(c.len());
                    skip_to(&mut i, &mut line, end + 1);
                } else if rest.get(2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1;
                    while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                        i += 1;
                    }
                }
            }
            [x, ..] if x.is_alphabetic() || *x == '_' => {
                let end = (i..c.len())
                    .find(|&j| !(c[j].is_alphanumeric() || c[j] == '_'))
                    .unwrap_or(c.len());
                out.push(Tok {
                    text: c[i..end].iter().collect(),
                    line,
                });
                i = end;
            }
            [':', ':', ..] => {
                out.push(Tok {
                    text: "::".into(),
                    line,
                });
                i += 2;
            }
            ['\n', ..] => {
                line += 1;
                i += 1;
            }
            [x, ..] if x.is_whitespace() => i += 1,
            [x, ..] => {
                out.push(Tok {
                    text: x.to_string(),
                    line,
                });
                i += 1;
            }
            [] => unreachable!(),
        }
    }
    out
}

/// Every forbidden form in one file's source.
fn scan(file: &str, src: &str) -> Vec<Finding> {
    let toks = tokens(src);
    let mut found = Vec::new();
    for (k, t) in toks.iter().enumerate() {
        // A `static` item: `static NAME:` or `static mut NAME:` (a lifetime was dropped).
        if t.text == "static" {
            let next = |n: usize| toks.get(k + n).map(|t| t.text.as_str());
            let is_item = match next(1) {
                Some("mut") => next(3) == Some(":"),
                Some(_) => next(2) == Some(":"),
                None => false,
            };
            if is_item {
                found.push((
                    file.into(),
                    t.line,
                    "static".into(),
                    "a static is process-wide state",
                ));
            }
        }
        if t.text.starts_with("Atomic") && t.text.len() > "Atomic".len() {
            found.push((
                file.into(),
                t.line,
                t.text.clone(),
                "atomics exist to share state between threads",
            ));
        }
        for (name, why) in FORBIDDEN_NAMES {
            let parts: Vec<&str> = name.split("::").collect();
            let matches = parts.iter().enumerate().all(|(n, p)| {
                toks.get(k + 2 * n).is_some_and(|t| t.text == *p)
                    && (n == 0 || toks.get(k + 2 * n - 1).is_some_and(|t| t.text == "::"))
            });
            if matches {
                found.push((file.into(), t.line, name.to_string(), why));
            }
        }
    }
    found
}
