//! Owns the `wsloop-load` command line: the subcommands (echo, rate, connect, idle, fanout,
//! storm, subscribe, churn), their flags, turning them into a validated `Plan` (refusing impossible
//! configurations with exit code 2), and dispatching to the event loop (`engine`), to `--procs`
//! children (`procs`) or, for storm, subscribe and churn, to their own loops (`storm`,
//! `subscribe`, `churn`).
//! Must not: start a run whose configuration it cannot honour (exit 2 instead), or reach beyond
//! loopback.

// The load generator is a client with its own event loop: it owns sockets and the clock, like
// the server's reactor (clippy.toml keeps them out of the server's lower layers).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

// The modules live in src/bin/wsloop-load/ (a crate root looks beside itself by default).
#[path = "wsloop-load/churn.rs"]
mod churn;
#[path = "wsloop-load/engine.rs"]
mod engine;
#[path = "wsloop-load/fanout.rs"]
mod fanout;
#[path = "wsloop-load/fanout_raw.rs"]
mod fanout_raw;
#[path = "wsloop-load/procs.rs"]
mod procs;
#[path = "wsloop-load/reconnect.rs"]
mod reconnect;
#[path = "wsloop-load/report.rs"]
mod report;
#[path = "wsloop-load/storm.rs"]
mod storm;
#[path = "wsloop-load/subscribe.rs"]
mod subscribe;
#[path = "wsloop-load/sys.rs"]
mod sys;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use engine::{Mode, Plan};
use report::Output;

/// Largest message the generator sends (the bound; servers limit far lower).
const MAX_SIZE: usize = 64 << 20;
/// Pre-masked frames are kept per connection; cap the total so a typo cannot eat the RAM.
const MAX_FRAME_BYTES: u64 = 4 << 30;
/// Descriptors a process needs besides its connections (stdio, epoll, timerfd, slack).
const FD_RESERVE: u64 = 64;

/// wsloop-load — WebSocket load generator for wsloop and its comparison peers.
///
/// Loopback only. Progress goes to stderr once a second; the result goes to stdout (one JSON
/// line with --json). SIGINT/SIGTERM end the run early, still closing and reporting. Exit
/// status: 0 ok, 1 a connection failed or the server misbehaved, 2 impossible configuration.
#[derive(Debug, Parser)]
#[command(name = "wsloop-load", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Closed loop: each connection sends a message, waits for its echo, repeats.
    Echo(EchoArgs),
    /// Open loop at a fixed total rate, with latency percentiles measured from each
    /// message's intended send time (no coordinated omission).
    Rate(RateArgs),
    /// Handshakes per second: open, upgrade, close, repeat, on N concurrent slots.
    Connect(ConnectArgs),
    /// Open N connections and hold them (for measuring server memory per connection).
    Idle(IdleArgs),
    /// N raw subscribers of one topic spread over several servers (--url, repeatable) and
    /// source addresses, held while a publisher outside sends messages numbered 0..M in their
    /// first 8 bytes: JSON lines on stdout say when all are up and when each message reached
    /// every subscriber (CLOCK_MONOTONIC ns, comparable across processes).
    Subscribe(subscribe::SubscribeArgs),
    /// N subscribers on a topic (--url ws://HOST:PORT/topic/NAME) and one publisher: M
    /// messages of SIZE bytes at --rate, or as fast as --window allows. Reports deliveries/s
    /// and each message's time until its last subscriber had it; checks that every
    /// subscriber got every message exactly once and in order (exit 1 otherwise).
    Fanout(FanoutArgs),
    /// N subscribers of one topic (--url ws://HOST:PORT/topic/NAME, subprotocol
    /// wsloop.positions) that reconnect with ?since= whenever closed, e.g. through a graceful
    /// restart: reports connection attempts and 101s per bucket from the first 1001, the time
    /// until every client is back, failed attempts, and whether each client received every
    /// position a publisher acknowledged (--acked). Exit 1 on a loss, a repeat or a client
    /// not back.
    Storm(StormArgs),
    /// Connection churn: K loops, each repeating connect, upgrade, one message and its echo,
    /// close handshake (ours, the server's close, its FIN); reports cycles/s, cycle latency,
    /// failed cycles by kind and (--server-pid) server CPU per cycle. --raw: the TCP floor
    /// (connect, write, read back, half-close, FIN) against a raw echo server.
    Churn(ChurnArgs),
}

#[derive(Debug, Args)]
struct ChurnArgs {
    /// Concurrent loops (one connection at a time each).
    #[arg(short = 'c', long, default_value_t = 50)]
    loops: usize,
    #[command(flatten)]
    msg: Message,
    /// No WebSocket: connect, write SIZE bytes, read them back, close (for raw-mio-echo).
    #[arg(long, conflicts_with = "text")]
    raw: bool,
    #[arg(short, long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// A cycle not finished this long after its connect counts as timed out.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    cycle_timeout: Duration,
    /// With a wss:// --url: trust the certificates in this PEM file (e.g. the server's
    /// self-signed one). Sessions are resumed across cycles (rustls' default cache).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct Common {
    /// Server URL: ws://HOST:PORT/PATH (HOST in 127.0.0.0/8 or localhost). With --raw the
    /// path is ignored (tcp://HOST:PORT is accepted too). Default ws://127.0.0.1:8080/echo;
    /// fanout: ws://127.0.0.1:8080/topic/fanout.
    #[arg(long)]
    url: Option<String>,

    /// Bind client sockets to these loopback source addresses, round robin: a range
    /// A-B (127.0.0.2-127.0.0.20) or a comma list. Needed beyond ~28,000 connections.
    #[arg(long, value_name = "IPS")]
    source_ips: Option<String>,

    /// Run K processes of the generator (connections and rate split evenly) and aggregate
    /// their results; needed when connections exceed one process's descriptor limit.
    #[arg(long, value_name = "K", default_value_t = 1)]
    procs: usize,

    /// Most connections being opened at the same time.
    #[arg(long, value_name = "N", default_value_t = 256)]
    connect_concurrency: usize,

    /// Give up on connections not up this long after the start.
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = parse_duration)]
    connect_timeout: Duration,

    /// Print the result as one JSON line on stdout.
    #[arg(long)]
    json: bool,

    /// No per-second progress lines.
    #[arg(long, short)]
    quiet: bool,

    /// Include per-connection counts in the JSON output.
    #[arg(long)]
    per_conn: bool,

    /// Report the CPU time (/proc/PID/stat utime+stime) this process, the server, used
    /// during the measured window, per message; and the generator's own.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,

    /// Internal: run as a --procs child (machine-readable lines on stdout).
    #[arg(long, hide = true)]
    child: bool,

    /// Internal: index of this process's first connection among all processes.
    #[arg(long, hide = true, default_value_t = 0)]
    conn_offset: usize,
}

#[derive(Debug, Args)]
struct Message {
    /// Message size: bytes, or with a suffix (K/KiB = 1024, M/MiB = 1024²), at most 64 MiB.
    #[arg(short, long, value_name = "SIZE", default_value = "16", value_parser = parse_size)]
    size: usize,

    /// Send text messages (ASCII) instead of binary.
    #[arg(long)]
    text: bool,
}

#[derive(Debug, Args)]
struct EchoArgs {
    /// Connections.
    #[arg(short = 'c', long, default_value_t = 10)]
    connections: usize,
    #[command(flatten)]
    msg: Message,
    /// No WebSocket: write SIZE bytes, read SIZE bytes back (for raw-mio-echo).
    #[arg(long, conflicts_with = "text")]
    raw: bool,
    /// Measured time (after the warm-up): 5, 5s, 500ms, 1m.
    #[arg(short, long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Warm-up before measuring.
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct RateArgs {
    /// Connections the rate is spread over (round robin).
    #[arg(short = 'c', long, default_value_t = 10)]
    connections: usize,
    /// Total messages per second.
    #[arg(short, long)]
    rate: f64,
    #[command(flatten)]
    msg: Message,
    #[arg(short, long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// After the window, wait this long for missing echoes before counting them unanswered.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    drain: Duration,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct ConnectArgs {
    /// Concurrent connection slots.
    #[arg(short = 'c', long, default_value_t = 1)]
    connections: usize,
    #[arg(short, long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(short, long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct IdleArgs {
    /// Connections to open and hold.
    #[arg(short = 'c', long, default_value_t = 100)]
    connections: usize,
    /// Plain TCP connections, no WebSocket handshake (for raw-mio-echo).
    #[arg(long)]
    raw: bool,
    /// How long to hold them once all are up; without it, until killed.
    #[arg(short, long, value_parser = parse_duration)]
    duration: Option<Duration>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    /// Subscriber connections (the publisher is one more).
    #[arg(short = 'c', long = "subscribers", default_value_t = 100)]
    subscribers: usize,
    /// Messages to publish.
    #[arg(short, long, default_value_t = 1000)]
    messages: u64,
    /// The first K messages are published and checked but not measured.
    #[arg(long, value_name = "K", default_value_t = 0)]
    warmup_messages: u64,
    /// Message size (at least 16: sequence number and send time), binary.
    #[arg(short, long, value_name = "SIZE", default_value = "16", value_parser = parse_size)]
    size: usize,
    /// Publish at this many messages per second (latency from each intended send time);
    /// without it, as fast as --window allows.
    #[arg(short, long)]
    rate: Option<f64>,
    /// Most messages published and not yet received by every subscriber (without --rate).
    #[arg(long, default_value_t = 1, conflicts_with = "rate")]
    window: u64,
    /// Give up when no message is published or delivered for this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain: Duration,
    /// No WebSocket: plain TCP, the publisher writes SIZE-byte records as they are,
    /// subscribers read SIZE-byte records (for benches/peers/raw-mio-fanout; path ignored).
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct StormArgs {
    /// Subscribers.
    #[arg(short = 'c', long, default_value_t = 10_000)]
    clients: usize,
    /// Obey the retry-after-ms= hints of close reasons, and back off exponentially with
    /// full jitter otherwise (--backoff-initial, --backoff-max). Without it: reconnect at once
    /// after a connection that worked is closed, and --retry-delay after anything else.
    #[arg(long)]
    hints: bool,
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    backoff_initial: Duration,
    /// Longest backoff, and the longest hint obeyed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    backoff_max: Duration,
    /// Without --hints: the wait after a failed attempt (refused, reset, timed out, closed
    /// before a message arrived).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    retry_delay: Duration,
    /// Give up on one attempt (connect and 101) after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    attempt_timeout: Duration,
    /// Wait for this file (write it elsewhere and rename it into place): the positions the
    /// publisher had acknowledged, one per line. Then wait up to --settle for every client to
    /// have the last one, and check that each received all of them.
    #[arg(long, value_name = "FILE")]
    acked: Option<PathBuf>,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    settle: Duration,
    /// The run ends this long after its start at the latest.
    #[arg(short, long, default_value = "120s", value_parser = parse_duration)]
    duration: Duration,
    /// Width of the buckets attempts and 101s are counted in.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    bucket: Duration,
    #[command(flatten)]
    common: Common,
}

/// Most messages a fanout run tracks (12 bytes each of bookkeeping).
const MAX_FANOUT_MESSAGES: u64 = 100_000_000;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cli = match cli.cmd {
        Cmd::Subscribe(a) => return subscribe::main(a),
        cmd => Cli { cmd },
    };
    if let Cmd::Storm(a) = &cli.cmd {
        return run_storm(a);
    }
    if let Cmd::Churn(a) = &cli.cmd {
        return run_churn(a);
    }
    let (plan, procs) = match plan(cli) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("wsloop-load: {msg}");
            return ExitCode::from(2);
        }
    };
    if plan.output == Output::Child {
        sys::die_with_parent();
    }
    // Ctrl-C or kill: stop early but still close connections and report.
    sys::catch_stop_signals();
    if procs > 1 {
        return procs::run(&plan, procs);
    }
    let run = if plan.raw && matches!(plan.mode, Mode::Fanout(_)) {
        fanout_raw::run
    } else {
        engine::run
    };
    match run(&plan) {
        Ok(report) => {
            report.print(plan.output, plan.per_conn);
            if report.failed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("wsloop-load: {e}");
            ExitCode::from(1)
        }
    }
}

/// Turn the command line into a plan and a process count, or say why it cannot run.
fn plan(cli: Cli) -> Result<(Plan, usize), String> {
    let (mode, connections, msg, raw, duration, warmup, common) = match cli.cmd {
        Cmd::Echo(a) => (
            Mode::Echo,
            a.connections,
            Some(a.msg),
            a.raw,
            Some(a.duration),
            a.warmup,
            a.common,
        ),
        Cmd::Rate(a) => {
            if !(a.rate.is_finite() && a.rate > 0.0) {
                return Err(format!("--rate {}: must be a positive number", a.rate));
            }
            if a.rate > 10_000_000.0 {
                return Err(format!("--rate {}: at most 10,000,000 msgs/s", a.rate));
            }
            let mode = Mode::Rate {
                per_sec: a.rate,
                drain: a.drain,
            };
            (
                mode,
                a.connections,
                Some(a.msg),
                false,
                Some(a.duration),
                a.warmup,
                a.common,
            )
        }
        Cmd::Connect(a) => (
            Mode::Connect,
            a.connections,
            None,
            false,
            Some(a.duration),
            a.warmup,
            a.common,
        ),
        Cmd::Idle(a) => (
            Mode::Idle,
            a.connections,
            None,
            a.raw,
            a.duration,
            Duration::ZERO,
            a.common,
        ),
        Cmd::Storm(_) => return Err("storm runs apart from the engine (run_storm)".into()),
        Cmd::Churn(_) => return Err("churn runs on its own loop (run_churn)".into()),
        Cmd::Subscribe(_) => return Err("subscribe runs on its own loop (subscribe::main)".into()),
        Cmd::Fanout(a) => {
            let mode = Mode::Fanout(fanout_spec(&a)?);
            if a.common.procs != 1 {
                return Err(format!(
                    "--procs {}: fanout runs in one process (every latency is measured on one \
                     clock); it holds up to the descriptor limit of subscribers",
                    a.common.procs
                ));
            }
            let msg = Message {
                size: a.size,
                text: false,
            };
            // The publisher is the last connection.
            let conns = a.subscribers.saturating_add(1);
            (
                mode,
                conns,
                Some(msg),
                a.raw,
                None,
                Duration::ZERO,
                a.common,
            )
        }
    };
    let (size, text) = msg.map_or((0, false), |m| (m.size, m.text));

    if connections == 0 {
        return Err("--connections: must be at least 1".into());
    }
    if duration.is_some_and(|d| d.is_zero()) {
        return Err("--duration: must be more than 0".into());
    }
    if raw && size == 0 && mode == Mode::Echo {
        return Err("--raw with --size 0: there would be nothing to echo".into());
    }
    if size > MAX_SIZE {
        return Err(format!("--size {size}: at most 64 MiB ({MAX_SIZE})"));
    }
    if matches!(mode, Mode::Echo | Mode::Rate { .. }) {
        let frames = connections as u64 * (size as u64 + 14);
        if frames > MAX_FRAME_BYTES {
            return Err(format!(
                "{connections} connections x {size} B needs {} MiB of pre-masked frames \
                 (limit {} MiB); use fewer connections or smaller messages",
                frames >> 20,
                MAX_FRAME_BYTES >> 20
            ));
        }
    }
    if common.procs == 0 {
        return Err("--procs: must be at least 1".into());
    }
    if common.procs > connections {
        return Err(format!(
            "--procs {} with {connections} connection(s): each process needs at least one",
            common.procs
        ));
    }
    if common.connect_concurrency == 0 {
        return Err("--connect-concurrency: must be at least 1".into());
    }
    if common.connect_timeout.is_zero() {
        return Err("--connect-timeout: must be more than 0".into());
    }

    let url = common.url.as_deref().unwrap_or(match mode {
        Mode::Fanout(_) => "ws://127.0.0.1:8080/topic/fanout",
        _ => "ws://127.0.0.1:8080/echo",
    });
    let (addr, host, path) = parse_url(url, raw)?;
    if matches!(mode, Mode::Fanout(_)) && !raw && !path.starts_with("/topic/") {
        return Err(format!(
            "--url {url}: fanout needs a topic endpoint, ws://HOST:PORT/topic/NAME (docs/protocol.md)"
        ));
    }
    let source_ips = match &common.source_ips {
        Some(s) => parse_source_ips(s)?,
        None => Vec::new(),
    };

    // Descriptors: one per connection in each process.
    let fd_limit = sys::raise_fd_limit();
    let per_proc = connections.div_ceil(common.procs) as u64;
    if per_proc + FD_RESERVE > fd_limit && matches!(mode, Mode::Fanout(_)) {
        return Err(format!(
            "{} subscribers and a publisher need about {} file descriptors, but the limit \
             (ulimit -n) is {fd_limit}; fanout runs in one process: use at most {} subscribers \
             or raise the limit",
            connections - 1,
            per_proc + FD_RESERVE,
            fd_limit.saturating_sub(FD_RESERVE + 1)
        ));
    }
    if per_proc + FD_RESERVE > fd_limit {
        let per = fd_limit.saturating_sub(FD_RESERVE).max(1);
        let need = (connections as u64).div_ceil(per);
        return Err(format!(
            "{per_proc} connections in one process need about {} file descriptors, but the \
             limit (ulimit -n) is {fd_limit}; use --procs {need} (or more), or raise the limit",
            per_proc + FD_RESERVE
        ));
    }
    // Ports: each source address reaches one server address through one ephemeral range.
    let ports = sys::ephemeral_ports();
    let sources = source_ips.len().max(1) as u64;
    if connections as u64 > ports * sources {
        return Err(format!(
            "{connections} connections to one address need more than the {ports} ephemeral \
             ports of {sources} source address(es); add --source-ips 127.0.0.2-127.0.0.{}",
            (connections as u64).div_ceil(ports) + 2
        ));
    }

    let output = if common.child {
        Output::Child
    } else if common.json {
        Output::Json
    } else {
        Output::Human
    };
    let plan = Plan {
        mode,
        addr,
        host,
        path,
        connections,
        size,
        text,
        raw,
        duration,
        warmup,
        source_ips,
        conn_offset: common.conn_offset,
        connect_concurrency: common.connect_concurrency,
        connect_timeout: common.connect_timeout,
        output,
        quiet: common.quiet,
        per_conn: common.per_conn,
        server_pid: common.server_pid,
    };
    if plan.server_pid.is_some() && common.procs > 1 {
        return Err("--server-pid works with one process only (no --procs)".into());
    }
    if let Some(pid) = plan.server_pid {
        if sys::cpu_seconds(pid).is_none() {
            return Err(format!(
                "--server-pid {pid}: no such process (cannot read /proc/{pid}/stat)"
            ));
        }
    }
    Ok((plan, common.procs))
}

/// The storm mode: its own loop (`storm`), its own report.
fn run_storm(a: &StormArgs) -> ExitCode {
    own_loop(storm_spec(a), storm::run, |spec, r| {
        r.print(spec.output);
        r.failed()
    })
}

/// The churn mode: its own loop and report (`churn`).
fn run_churn(a: &ChurnArgs) -> ExitCode {
    own_loop(churn_spec(a), churn::run, |spec, r| {
        r.print(spec.output);
        r.failed()
    })
}

/// A mode with a loop and report of its own: exit 2 for a command line it refuses, 1 for a
/// run that failed or could not run (`report` prints and says whether it failed).
fn own_loop<S, R>(
    spec: Result<S, String>,
    run: impl FnOnce(&S) -> std::io::Result<R>,
    report: impl FnOnce(&S, &R) -> bool,
) -> ExitCode {
    let spec = match spec {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("wsloop-load: {msg}");
            return ExitCode::from(2);
        }
    };
    sys::catch_stop_signals();
    match run(&spec) {
        Ok(r) if report(&spec, &r) => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsloop-load: {e}");
            ExitCode::from(1)
        }
    }
}

/// Check a churn command line and turn it into its spec.
fn churn_spec(a: &ChurnArgs) -> Result<churn::Spec, String> {
    let c = &a.common;
    if a.loops == 0 {
        return Err("--loops: must be at least 1".into());
    }
    if c.procs != 1 || c.child {
        return Err(format!("--procs {}: churn runs in one process", c.procs));
    }
    for (name, d) in [
        ("--duration", a.duration),
        ("--cycle-timeout", a.cycle_timeout),
    ] {
        if d.is_zero() {
            return Err(format!("{name}: must be more than 0"));
        }
    }
    if a.msg.size > MAX_SIZE {
        return Err(format!("--size {}: at most 64 MiB", a.msg.size));
    }
    if a.raw && a.msg.size == 0 {
        return Err("--size 0: the raw cycle needs at least one byte to echo".into());
    }
    let url = c.url.as_deref().unwrap_or("ws://127.0.0.1:8080/echo");
    let (addr, host, path, tls) = match url.strip_prefix("wss://") {
        Some(rest) if !a.raw => {
            let (addr, host, path) = parse_url(&format!("ws://{rest}"), false)?;
            let ca =
                a.ca.as_deref()
                    .ok_or_else(|| format!("--url {url}: wss:// needs --ca PEM"))?;
            let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            (addr, host.clone(), path, Some(tls_client(ca, name)?))
        }
        _ => {
            if a.ca.is_some() {
                return Err("--ca: only with a wss:// --url".into());
            }
            let (addr, host, path) = parse_url(url, a.raw)?;
            (addr, host, path, None)
        }
    };
    let source_ips = match &c.source_ips {
        Some(s) => parse_source_ips(s)?,
        None => Vec::new(),
    };
    let fd_limit = sys::raise_fd_limit();
    if a.loops as u64 + FD_RESERVE > fd_limit {
        return Err(format!(
            "{} loops need about {} file descriptors, but the limit (ulimit -n) is {fd_limit}",
            a.loops,
            a.loops as u64 + FD_RESERVE
        ));
    }
    if let Some(pid) = c.server_pid {
        if sys::cpu_seconds(pid).is_none() {
            return Err(format!(
                "--server-pid {pid}: no such process (cannot read /proc/{pid}/stat)"
            ));
        }
    }
    let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
    Ok(churn::Spec {
        loops: a.loops,
        addr,
        host,
        path,
        size: a.msg.size,
        text: a.msg.text,
        raw: a.raw,
        tls,
        source_ips,
        warmup_ns: ns(a.warmup),
        duration_ns: ns(a.duration),
        cycle_timeout_ns: ns(a.cycle_timeout),
        server_pid: c.server_pid,
        output: if c.json { Output::Json } else { Output::Human },
        quiet: c.quiet,
    })
}

/// A TLS client trusting the certificates of `ca` (PEM), for the server name `name`.
fn tls_client(
    ca: &std::path::Path,
    name: &str,
) -> Result<
    (
        std::sync::Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    ),
    String,
> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca).map_err(|e| format!("--ca {}: {e}", ca.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("--ca {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("--ca {}: no certificate", ca.display()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(name.to_string())
        .map_err(|e| format!("--url: server name {name:?}: {e}"))?;
    Ok((std::sync::Arc::new(config), name))
}

/// Check a storm command line and turn it into its spec.
fn storm_spec(a: &StormArgs) -> Result<storm::Spec, String> {
    let c = &a.common;
    if a.clients == 0 {
        return Err("--clients: must be at least 1".into());
    }
    if c.procs != 1 || c.child {
        return Err(format!(
            "--procs {}: storm runs in one process (one clock for the buckets); it holds up \
             to the descriptor limit of clients",
            c.procs
        ));
    }
    if c.server_pid.is_some() {
        return Err("--server-pid: not with storm (the server is restarted during it)".into());
    }
    if c.connect_concurrency == 0 {
        return Err("--connect-concurrency: must be at least 1".into());
    }
    for (name, d) in [
        ("--connect-timeout", c.connect_timeout),
        ("--attempt-timeout", a.attempt_timeout),
        ("--duration", a.duration),
        ("--bucket", a.bucket),
        ("--settle", a.settle),
    ] {
        if d.is_zero() {
            return Err(format!("{name}: must be more than 0"));
        }
    }
    if a.bucket < Duration::from_millis(1) || a.bucket > Duration::from_secs(1) {
        return Err("--bucket: from 1ms to 1s".into());
    }
    let url = c
        .url
        .as_deref()
        .unwrap_or("ws://127.0.0.1:8080/topic/storm");
    let (addr, host, path) = parse_url(url, false)?;
    if !path.starts_with("/topic/") || path.len() == "/topic/".len() || path.contains('?') {
        return Err(format!(
            "--url {url}: storm needs a topic endpoint without a query, ws://HOST:PORT/topic/NAME \
             (it adds ?since= itself)"
        ));
    }
    let source_ips = match &c.source_ips {
        Some(s) => parse_source_ips(s)?,
        None => Vec::new(),
    };
    let fd_limit = sys::raise_fd_limit();
    if a.clients as u64 + FD_RESERVE > fd_limit {
        return Err(format!(
            "{} clients need about {} file descriptors, but the limit (ulimit -n) is {fd_limit}",
            a.clients,
            a.clients as u64 + FD_RESERVE
        ));
    }
    let ports = sys::ephemeral_ports();
    let sources = source_ips.len().max(1) as u64;
    if a.clients as u64 > ports * sources {
        return Err(format!(
            "{} clients to one address need more than the {ports} ephemeral ports of {sources} \
             source address(es); add --source-ips 127.0.0.2-127.0.0.{}",
            a.clients,
            (a.clients as u64).div_ceil(ports) + 2
        ));
    }
    let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
    let policy = if a.hints {
        reconnect::Policy::Hints {
            initial_ns: ns(a.backoff_initial),
            max_ns: ns(a.backoff_max),
        }
    } else {
        reconnect::Policy::Naive {
            retry_ns: ns(a.retry_delay),
        }
    };
    Ok(storm::Spec {
        clients: a.clients,
        addr,
        host,
        path,
        source_ips,
        connect_concurrency: c.connect_concurrency,
        connect_timeout_ns: ns(c.connect_timeout),
        attempt_timeout_ns: ns(a.attempt_timeout),
        policy,
        acked: a.acked.clone(),
        settle_ns: ns(a.settle),
        duration_ns: ns(a.duration),
        bucket_ns: ns(a.bucket),
        output: if c.json { Output::Json } else { Output::Human },
        quiet: c.quiet,
    })
}

/// Check a fanout command line and turn it into its schedule.
fn fanout_spec(a: &FanoutArgs) -> Result<fanout::Spec, String> {
    if a.subscribers == 0 {
        return Err("--subscribers: must be at least 1".into());
    }
    if a.messages == 0 || a.messages > MAX_FANOUT_MESSAGES {
        return Err(format!(
            "--messages {}: from 1 to {MAX_FANOUT_MESSAGES}",
            a.messages
        ));
    }
    if a.warmup_messages >= a.messages {
        return Err(format!(
            "--warmup-messages {}: fewer than --messages ({}), or nothing is measured",
            a.warmup_messages, a.messages
        ));
    }
    if a.size < fanout::HEADER {
        return Err(format!(
            "--size {}: at least {} (each message carries its sequence number and send time)",
            a.size,
            fanout::HEADER
        ));
    }
    if let Some(r) = a.rate {
        if !(r.is_finite() && r > 0.0 && r <= 10_000_000.0) {
            return Err(format!(
                "--rate {r}: a positive number, at most 10,000,000 msgs/s"
            ));
        }
    }
    if a.window == 0 {
        return Err("--window: must be at least 1".into());
    }
    if a.drain.is_zero() {
        return Err("--drain: must be more than 0".into());
    }
    Ok(fanout::Spec {
        messages: a.messages,
        warmup: a.warmup_messages,
        rate: a.rate,
        window: a.window,
        drain_ns: a.drain.as_nanos() as u64,
    })
}

/// `ws://HOST[:PORT][/PATH]` → (address, Host header, path). Loopback IPv4 only.
fn parse_url(url: &str, raw: bool) -> Result<(SocketAddrV4, String, String), String> {
    let rest = if let Some(r) = url.strip_prefix("ws://") {
        r
    } else if let Some(r) = url.strip_prefix("tcp://").filter(|_| raw) {
        r
    } else if url.contains("://") {
        return Err(format!(
            "--url {url}: only ws:// is supported{}",
            if raw { " (or tcp:// with --raw)" } else { "" }
        ));
    } else {
        url
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p
                .parse()
                .map_err(|_| format!("--url {url}: bad port {p:?}"))?;
            (h, port)
        }
        None => (authority, 80),
    };
    let ip: Ipv4Addr = if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST
    } else {
        host.parse()
            .map_err(|_| format!("--url {url}: host must be an IPv4 address or localhost"))?
    };
    if !ip.is_loopback() {
        return Err(format!(
            "--url {url}: loopback only (127.0.0.0/8); the generator is not for other hosts"
        ));
    }
    if port == 0 {
        return Err(format!("--url {url}: port 0"));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "--url {url}: the path must not contain spaces or controls"
        ));
    }
    Ok((
        SocketAddrV4::new(ip, port),
        authority.to_string(),
        path.to_string(),
    ))
}

/// `A-B` (same /24, last octet ascending) or `A,B,C`; every address loopback.
fn parse_source_ips(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let ip = |v: &str| -> Result<Ipv4Addr, String> {
        let ip: Ipv4Addr = v
            .trim()
            .parse()
            .map_err(|_| format!("--source-ips: {v:?} is not an IPv4 address"))?;
        if !ip.is_loopback() {
            return Err(format!("--source-ips: {ip} is not in 127.0.0.0/8"));
        }
        Ok(ip)
    };
    let ips = if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (u32::from(ip(a)?), u32::from(ip(b)?));
        if b < a || b - a >= 65_536 {
            return Err(format!(
                "--source-ips {s}: want A-B with A <= B, at most 65536"
            ));
        }
        (a..=b).map(Ipv4Addr::from).collect()
    } else {
        s.split(',').map(ip).collect::<Result<Vec<_>, _>>()?
    };
    if ips.is_empty() {
        return Err("--source-ips: no address".into());
    }
    Ok(ips)
}

/// `5`, `5s`, `1.5s`, `500ms`, `2m`: seconds unless a unit says otherwise.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 5, 5s, 500ms, 2m)"))?;
    if !(v.is_finite() && v >= 0.0) || v * scale > 86_400.0 * 365.0 {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// `16`, `1K`, `1KiB`, `64k`, `1M`, `1MiB` (binary multiples).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (num, mult) = [
        ("kib", 1usize << 10),
        ("k", 1 << 10),
        ("mib", 1 << 20),
        ("m", 1 << 20),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suffix, m)| lower.strip_suffix(suffix).map(|n| (n.to_string(), *m)))
    .unwrap_or((lower.clone(), 1));
    let v: usize = num
        .trim()
        .parse()
        .map_err(|_| format!("{t:?} is not a size (e.g. 16, 1KiB, 64K, 1MiB)"))?;
    v.checked_mul(mult)
        .ok_or_else(|| format!("{t:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("16"), Ok(16));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("x").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn urls_are_loopback_only() {
        let (a, h, p) = parse_url("ws://127.0.0.1:9000/echo", false).unwrap();
        assert_eq!(
            (a.port(), h.as_str(), p.as_str()),
            (9000, "127.0.0.1:9000", "/echo")
        );
        let (a, _, p) = parse_url("localhost:81", false).unwrap();
        assert_eq!((a.port(), p.as_str()), (81, "/"));
        assert!(parse_url("ws://10.0.0.1:80/", false).is_err());
        assert!(parse_url("wss://127.0.0.1/", false).is_err());
        assert!(parse_url("tcp://127.0.0.1:5", true).is_ok());
    }

    #[test]
    fn source_ip_ranges() {
        assert_eq!(parse_source_ips("127.0.0.2-127.0.0.4").unwrap().len(), 3);
        assert_eq!(parse_source_ips("127.0.0.2,127.0.0.9").unwrap().len(), 2);
        assert!(parse_source_ips("10.0.0.1").is_err());
        assert!(parse_source_ips("127.0.0.4-127.0.0.2").is_err());
    }
}
