//! Owns what the load generator prints: the live progress line (stderr, once a second), the
//! final result (human text or one hand-formatted JSON line on stdout) and the line protocol
//! by which a `--procs` child reports to its parent.
//! Must not: measure anything; it formats what it is given.

use hdrhistogram::Histogram;

use crate::engine::Mode;

/// Where results go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Human,
    Json,
    /// A `--procs` child: machine lines on stdout for the parent to aggregate.
    Child,
}

/// The outcome of one run (or of several `--procs` children, merged).
#[derive(Debug)]
pub struct Report {
    pub mode: &'static str,
    pub connections: usize,
    /// Connections that completed their opening (handshake, or TCP connect with --raw).
    pub up: usize,
    pub size: usize,
    /// "binary", "text", "raw" or "-" (connect, idle).
    pub kind: &'static str,
    /// Length of the measured window (after warm-up), in seconds.
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Seconds from start until every connection was up (or had failed).
    pub setup_s: f64,
    /// rate: the requested total rate.
    pub rate: Option<f64>,
    /// echo/rate: echoes counted in the window; connect: handshakes completed in it.
    pub messages: u64,
    /// Everything that completed, warm-up and all (e.g. to divide a syscall count by).
    pub completed: u64,
    /// Echoes that arrived inside the window, whenever they were sent.
    pub received: u64,
    /// CPU seconds the server (--server-pid) and this generator used during the window.
    pub server_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
    /// rate: messages whose intended send time fell in the window.
    pub sent: u64,
    /// rate: of those, echoes that had not come back when the drain time ran out.
    pub unanswered: u64,
    /// rate: sends that fell on a connection that had failed.
    pub skipped: u64,
    /// Connections that failed (refused, bad handshake, protocol error, unexpected close).
    pub errors: u64,
    /// Problems during the closing handshake only (do not invalidate the measurement).
    pub close_errors: u64,
    pub first_error: Option<String>,
    pub per_conn: Vec<u64>,
    /// Latency in nanoseconds: echo round trip (echo), from the intended send time (rate),
    /// connect-to-101 (connect).
    pub hist: Histogram<u64>,
    pub procs: usize,
    /// fanout: what the delivery check found (`messages` are then the measured deliveries
    /// and `hist` each message's time until its last subscriber had it).
    pub fanout: Option<FanoutReport>,
}

/// The fan-out part of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutReport {
    pub subscribers: usize,
    /// Messages published (the first `warmup` of them not measured).
    pub published: u64,
    pub warmup: u64,
    /// Most messages incomplete at once; `None` with a rate.
    pub window: Option<u64>,
    /// Sequence numbers a subscriber skipped or never received (summed over subscribers).
    pub missing: u64,
    /// Messages a subscriber received again, or after a later one.
    pub duplicates: u64,
    /// Messages not received by every subscriber.
    pub incomplete: u64,
}

/// A latency histogram from 1 µs to 1 h at 3 significant digits, in nanoseconds.
pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3) {
        Ok(h) => h,
        // The bounds are constants that hdrhistogram accepts.
        Err(e) => unreachable!("histogram bounds: {e}"),
    }
}

impl Report {
    /// Did the run fail: a connection failed, or (fanout) a message was missing, duplicated
    /// or out of order?
    pub fn failed(&self) -> bool {
        self.errors > 0
            || self
                .fanout
                .is_some_and(|f| f.missing + f.duplicates + f.incomplete > 0)
    }

    /// Throughput: echo, connect: what completed in the window. rate: echoes received in the
    /// window (what the server sustained; `messages` counts the window's sends answered,
    /// however late, and is the latency sample).
    pub fn per_sec(&self) -> f64 {
        let n = if self.mode == "rate" {
            self.received
        } else {
            self.messages
        };
        if self.duration_s > 0.0 {
            n as f64 / self.duration_s
        } else {
            0.0
        }
    }

    fn unit(&self) -> &'static str {
        match self.mode {
            "connect" => "handshakes",
            "fanout" => "deliveries",
            _ => "msgs",
        }
    }

    /// Latency quantile in microseconds (0 when nothing was recorded).
    fn q_us(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1_000.0
    }

    fn max_us(&self) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.max() as f64 / 1_000.0
        }
    }

    pub fn print(&self, output: Output, per_conn: bool) {
        match output {
            Output::Human => print!("{}", self.human()),
            Output::Json => println!("{}", self.json(per_conn)),
            Output::Child => print!("{}", self.child_lines()),
        }
    }

    pub fn human(&self) -> String {
        let mut s = String::new();
        let conns = if self.up == self.connections {
            format!("{}", self.connections)
        } else {
            format!("{} ({} up)", self.connections, self.up)
        };
        let what = match (self.mode, self.fanout) {
            (_, Some(f)) => {
                let pace = match (self.rate, f.window) {
                    (Some(r), _) => format!("at {r:.0} msgs/s"),
                    (None, Some(w)) => format!("window {w}"),
                    (None, None) => String::new(),
                };
                format!(
                    "fanout: {} subscribers x {} B {}, {} messages ({pace}, {} warm-up)",
                    f.subscribers, self.size, self.kind, f.published, f.warmup
                )
            }
            ("idle", _) => format!("idle: {conns} connections held"),
            ("connect", _) => format!("connect: {conns} concurrent"),
            (m, _) => format!("{m}: {conns} connections x {} B {}", self.size, self.kind),
        };
        let procs = if self.procs > 1 {
            format!(", {} processes", self.procs)
        } else {
            String::new()
        };
        if self.mode == "idle" {
            s += &format!("{what} for {:.1} s{procs}\n", self.duration_s);
        } else if self.fanout.is_some() {
            s += &format!(
                "{what}, {:.2} s from the first measured publish to the last delivery\n",
                self.duration_s
            );
        } else {
            s += &format!(
                "{what}, {:.1} s measured after {:.1} s warm-up{procs}\n",
                self.duration_s, self.warmup_s,
            );
        }
        if self.mode != "idle" {
            s += &format!(
                "  {:.0} {}/s ({} in {:.2} s)",
                self.per_sec(),
                self.unit(),
                if self.mode == "rate" {
                    self.received
                } else {
                    self.messages
                },
                self.duration_s
            );
            if self.fanout.is_some() {
                let published = self.sent as f64 / self.duration_s.max(1e-9);
                s += &format!(", {published:.0} msgs/s published");
            } else if self.size > 0 && self.mode != "connect" {
                let mib = self.per_sec() * self.size as f64 / (1024.0 * 1024.0);
                s += &format!(", {mib:.1} MiB/s each way");
            }
            s += "\n";
        } else {
            s += &format!("  all up after {:.2} s\n", self.setup_s);
        }
        if let (Some(srv), Some(own)) = (self.server_cpu_s, self.client_cpu_s) {
            s += &format!(
                "  server CPU {srv:.2} s ({:.2} us/{}), generator CPU {own:.2} s ({:.0}% of the window)\n",
                per_msg_us(srv, self.messages),
                match self.mode {
                    "connect" => "handshake",
                    "fanout" => "delivery",
                    _ => "msg",
                },
                100.0 * own / self.duration_s.max(1e-9)
            );
        }
        if let (Some(rate), None) = (self.rate, self.fanout) {
            s += &format!(
                "  requested {rate:.0} msgs/s; {} due in the window: {} answered, {} unanswered, \
                 {} skipped\n",
                self.sent, self.messages, self.unanswered, self.skipped
            );
        }
        if let Some(f) = self.fanout {
            s += &if f.missing + f.duplicates + f.incomplete == 0 {
                "  every subscriber received every message once, in order\n".to_string()
            } else {
                format!(
                    "  DELIVERY CHECK FAILED: {} missing, {} duplicate or out of order, {} \
                     message(s) not received by every subscriber\n",
                    f.missing, f.duplicates, f.incomplete
                )
            };
        }
        let latency = if self.fanout.is_some() {
            "time to the last subscriber"
        } else {
            "latency"
        };
        if !self.hist.is_empty() {
            s += &format!(
                "  {latency} us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}\n",
                self.q_us(0.5),
                self.q_us(0.9),
                self.q_us(0.99),
                self.q_us(0.999),
                self.max_us()
            );
        }
        if self.errors > 0 || self.close_errors > 0 {
            s += &format!(
                "  errors: {} connection(s) failed, {} close problem(s); first: {}\n",
                self.errors,
                self.close_errors,
                self.first_error.as_deref().unwrap_or("-")
            );
        }
        s
    }

    /// One JSON object on one line (hand-formatted; every key is always present).
    pub fn json(&self, per_conn: bool) -> String {
        let mut s = format!(
            "{{\"mode\":\"{}\",\"connections\":{},\"up\":{},\"procs\":{},\"size\":{},\"kind\":\"{}\",\
             \"duration_s\":{:.3},\"warmup_s\":{:.3},\"setup_s\":{:.3},\"messages\":{},\
             \"per_sec\":{:.1},\"rate\":{},\"sent\":{},\"unanswered\":{},\"skipped\":{},",
            self.mode,
            self.connections,
            self.up,
            self.procs,
            self.size,
            self.kind,
            self.duration_s,
            self.warmup_s,
            self.setup_s,
            self.messages,
            self.per_sec(),
            self.rate.map_or("null".to_string(), |r| format!("{r:.1}")),
            self.sent,
            self.unanswered,
            self.skipped,
        );
        s += &format!(
            "\"latency_us\":{{\"count\":{},\"mean\":{:.1},\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\
             \"p999\":{:.1},\"max\":{:.1}}},",
            self.hist.len(),
            if self.hist.is_empty() {
                0.0
            } else {
                self.hist.mean() / 1_000.0
            },
            self.q_us(0.5),
            self.q_us(0.9),
            self.q_us(0.99),
            self.q_us(0.999),
            self.max_us()
        );
        let opt = |v: Option<f64>, scale: f64| {
            v.map_or("null".to_string(), |v| format!("{:.4}", v * scale))
        };
        s += &format!(
            "\"completed\":{},\"received\":{},\"server_cpu_s\":{},\"server_cpu_us_per_msg\":{},\
             \"client_cpu_s\":{},\"client_cpu_us_per_msg\":{},",
            self.completed,
            self.received,
            opt(self.server_cpu_s, 1.0),
            opt(self.server_cpu_s.map(|c| per_msg_us(c, self.messages)), 1.0),
            opt(self.client_cpu_s, 1.0),
            opt(self.client_cpu_s.map(|c| per_msg_us(c, self.messages)), 1.0),
        );
        s += &format!(
            "\"errors\":{},\"close_errors\":{},\"first_error\":{}",
            self.errors,
            self.close_errors,
            self.first_error
                .as_deref()
                .map_or("null".to_string(), json_string)
        );
        s += &match self.fanout {
            None => ",\"fanout\":null".to_string(),
            Some(f) => format!(
                ",\"fanout\":{{\"subscribers\":{},\"published\":{},\"warmup_messages\":{},\
                 \"window\":{},\"deliveries\":{},\"deliveries_per_s\":{:.1},\"missing\":{},\
                 \"duplicates\":{},\"incomplete\":{}}}",
                f.subscribers,
                f.published,
                f.warmup,
                f.window.map_or("null".to_string(), |w| w.to_string()),
                self.messages,
                self.per_sec(),
                f.missing,
                f.duplicates,
                f.incomplete
            ),
        };
        if per_conn {
            let list: Vec<String> = self.per_conn.iter().map(u64::to_string).collect();
            s += &format!(",\"per_conn\":[{}]", list.join(","));
        }
        s.push('}');
        s
    }

    /// The child → parent protocol: `result k=v ...`, `per_conn a,b,...`, `hist v:n,...` and
    /// `error TEXT`, one per line.
    pub fn child_lines(&self) -> String {
        let mut s = format!(
            "result up={} setup_ns={} duration_ns={} messages={} completed={} received={} sent={} unanswered={} \
             skipped={} errors={} close_errors={}\n",
            self.up,
            (self.setup_s * 1e9) as u64,
            (self.duration_s * 1e9) as u64,
            self.messages,
            self.completed,
            self.received,
            self.sent,
            self.unanswered,
            self.skipped,
            self.errors,
            self.close_errors
        );
        let list: Vec<String> = self.per_conn.iter().map(u64::to_string).collect();
        s += &format!("per_conn {}\n", list.join(","));
        let hist: Vec<String> = self
            .hist
            .iter_recorded()
            .map(|v| format!("{}:{}", v.value_iterated_to(), v.count_at_value()))
            .collect();
        s += &format!("hist {}\n", hist.join(","));
        if let Some(e) = &self.first_error {
            s += &format!("error {}\n", e.replace('\n', " "));
        }
        s
    }
}

/// CPU microseconds per message (0 when there were none).
fn per_msg_us(cpu_s: f64, messages: u64) -> f64 {
    if messages == 0 {
        0.0
    } else {
        cpu_s * 1e6 / messages as f64
    }
}

/// A JSON string literal (RFC 8259 §7 escapes).
pub fn json_string(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s += "\\\"",
            '\\' => s += "\\\\",
            '\n' => s += "\\n",
            '\r' => s += "\\r",
            '\t' => s += "\\t",
            c if (c as u32) < 0x20 => s += &format!("\\u{:04x}", c as u32),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// The live progress line, once a second, on stderr (or as a machine line for a parent).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub output: Output,
    pub quiet: bool,
    /// What `count` counts per second ("msgs", "handshakes"); empty (idle): only show how
    /// many connections are up.
    pub unit: &'static str,
    /// Connections asked for.
    pub total: usize,
}

impl Progress {
    pub fn new(output: Output, quiet: bool, mode: Mode, total: usize) -> Progress {
        let unit = match mode {
            Mode::Idle => "",
            Mode::Connect => "handshakes",
            Mode::Fanout(_) => "deliveries",
            _ => "msgs",
        };
        Progress {
            output,
            quiet,
            unit,
            total,
        }
    }

    /// `count`: what completed during the last second.
    pub fn tick(&self, second: u64, stage: &str, count: u64, up: usize, errors: u64) {
        let (unit, total) = (self.unit, self.total);
        match self.output {
            Output::Child => {
                println!("progress {second} {count} {up} {errors}");
            }
            _ if self.quiet => {}
            _ if unit.is_empty() => {
                eprintln!("[{second:>4}s] {stage:<8} up {up}/{total}  errors {errors}")
            }
            _ => eprintln!(
                "[{second:>4}s] {stage:<8} {count:>10} {unit}/s  up {up}/{total}  errors {errors}"
            ),
        }
    }

    /// Every connection has been opened (or failed): idle's signal that memory can be read.
    pub fn all_up(&self, up: usize, total: usize, secs: f64) {
        match self.output {
            Output::Child => println!("up {up} {total}"),
            _ => eprintln!("wsloop-load: {up}/{total} connections up after {secs:.2} s"),
        }
    }
}

// ---- storm ------------------------------------------------------------------------------------

/// The outcome of a `storm` run: N subscribers through a restart (see `storm`).
#[derive(Debug, Default)]
pub struct StormReport {
    pub clients: usize,
    /// Obeying the server's hints, or not; and the policy in words.
    pub hints: bool,
    pub policy: String,
    /// Seconds until every client was first up.
    pub setup_s: f64,
    /// Bucket width, and per bucket from the first 1001: connection attempts begun, 101s.
    pub bucket_ms: f64,
    pub attempts: Vec<u32>,
    pub upgrades: Vec<u32>,
    /// Over the whole run, the setup included.
    pub attempts_total: u64,
    pub upgrades_total: u64,
    /// A 1001 arrived (the server restarted).
    pub restarted: bool,
    pub closes_1001: u64,
    /// The waits (ms) the 1001 closes asked for.
    pub hints_1001: Vec<u32>,
    /// What went wrong before the first 1001 (the clients' first connections), and from it.
    pub setup: Failures,
    pub storm: Failures,
    /// From the first 1001: until every client was open again (101), and until every client
    /// had received a message on its new connection (none: not all came back).
    pub all_open_s: Option<f64>,
    pub all_back_s: Option<f64>,
    /// Clients still without a message on a new connection at the end.
    pub still_down: usize,
    /// Positions received; gap notices; numbers jumped over; repeated or out-of-order ones.
    pub messages: u64,
    pub gaps: u64,
    pub skipped: u64,
    pub repeats: u64,
    pub ack: Option<AckCheck>,
    /// Protocol errors and run problems (a signal, a timeout, a bad --acked file).
    pub errors: u64,
    pub first_error: Option<String>,
}

/// Closes other than 1001 and failed attempts.
#[derive(Debug, Default, Clone)]
pub struct Failures {
    pub closes_1013: u64,
    /// The waits (ms) the 1013 closes asked for.
    pub hints_1013: Vec<u32>,
    pub closes_other: u64,
    pub first_other_close: Option<String>,
    /// 101s that did not select the subprotocol (wsloop's 1013 turn-away answers so).
    pub unselected: u64,
    /// Attempts and connections that ended without a close frame: refused, reset, closed
    /// (FIN), timed out, answered with an HTTP status, other socket errors.
    pub refused: u64,
    pub resets: u64,
    pub eofs: u64,
    pub timeouts: u64,
    pub statuses: u64,
    pub first_status: Option<String>,
    pub other_io: u64,
    pub first_other_io: Option<String>,
}

impl Failures {
    fn any(&self) -> bool {
        self.closes_1013
            + self.closes_other
            + self.refused
            + self.resets
            + self.eofs
            + self.timeouts
            + self.statuses
            + self.other_io
            > 0
    }

    fn human(&self) -> String {
        let first = |v: &Option<String>| {
            v.as_deref()
                .map_or(String::new(), |c| format!(" (first: {c})"))
        };
        format!(
            "{} x 1013 ({}; {} 101s without the subprotocol), {} other close(s){}; failed \
             attempts: {} refused, {} reset, {} closed without a close frame, {} timed out, {} \
             HTTP status{}, {} other{}",
            self.closes_1013,
            hints_text(&self.hints_1013),
            self.unselected,
            self.closes_other,
            first(&self.first_other_close),
            self.refused,
            self.resets,
            self.eofs,
            self.timeouts,
            self.statuses,
            first(&self.first_status),
            self.other_io,
            first(&self.first_other_io),
        )
    }

    fn json(&self) -> String {
        let opt_s = |v: &Option<String>| v.as_deref().map_or("null".to_string(), json_string);
        format!(
            "{{\"closes_1013\":{},\"hints_1013_ms\":{},\"closes_other\":{},\
             \"first_other_close\":{},\"unselected\":{},\"refused\":{},\"resets\":{},\
             \"eofs\":{},\"timeouts\":{},\"statuses\":{},\"first_status\":{},\"other_io\":{},\
             \"first_other_io\":{}}}",
            self.closes_1013,
            hints_json(&self.hints_1013),
            self.closes_other,
            opt_s(&self.first_other_close),
            self.unselected,
            self.refused,
            self.resets,
            self.eofs,
            self.timeouts,
            self.statuses,
            opt_s(&self.first_status),
            self.other_io,
            opt_s(&self.first_other_io),
        )
    }
}

fn hints_text(v: &[u32]) -> String {
    spread(v).map_or("no hint".to_string(), |(lo, mid, hi)| {
        format!("hints {lo}/{mid}/{hi} ms min/median/max")
    })
}

fn hints_json(v: &[u32]) -> String {
    match spread(v) {
        Some((lo, mid, hi)) => format!(
            "{{\"count\":{},\"min\":{lo},\"median\":{mid},\"max\":{hi}}}",
            v.len()
        ),
        None => "{\"count\":0,\"min\":null,\"median\":null,\"max\":null}".to_string(),
    }
}

/// The acknowledged positions against what every client received.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AckCheck {
    /// Positions the publisher had acknowledged (202).
    pub acked: u64,
    /// Of those, how many some client never received: the messages lost (target 0).
    pub lost: u64,
    pub first_lost: Option<u64>,
    /// Clients that lack at least one, and (client, position) pairs missing in all.
    pub clients_incomplete: u64,
    pub missing: u64,
    /// Positions received that were not acknowledged (published, answer lost or refused).
    pub unacked_received: u64,
}

/// The largest count in any `width` consecutive buckets.
pub fn peak_window(buckets: &[u32], width: usize) -> u64 {
    let width = width.max(1);
    let mut sum: u64 = 0;
    let mut peak = 0;
    for (i, &n) in buckets.iter().enumerate() {
        sum += u64::from(n);
        if i >= width {
            sum -= u64::from(buckets[i - width]);
        }
        peak = peak.max(sum);
    }
    peak
}

/// (min, median, max) of some waits.
fn spread(v: &[u32]) -> Option<(u32, u32, u32)> {
    let mut s = v.to_vec();
    s.sort_unstable();
    Some((*s.first()?, s[s.len() / 2], *s.last()?))
}

impl StormReport {
    /// Did the run fail: a protocol error, a repeat, a client not back, a message lost?
    pub fn failed(&self) -> bool {
        self.errors > 0
            || self.repeats > 0
            || self.still_down > 0
            || (self.restarted && self.all_back_s.is_none())
            || self.ack.is_some_and(|a| a.lost > 0)
    }

    /// Buckets in one second (at least one).
    fn per_second(&self) -> usize {
        ((1000.0 / self.bucket_ms).round() as usize).max(1)
    }

    /// Peak per second in one bucket (scaled), and in any one-second window.
    fn peaks(&self, v: &[u32]) -> (f64, u64) {
        let bucket = v.iter().copied().max().unwrap_or(0);
        (
            f64::from(bucket) * 1000.0 / self.bucket_ms,
            peak_window(v, self.per_second()),
        )
    }

    pub fn print(&self, output: Output) {
        match output {
            Output::Json => println!("{}", self.json()),
            _ => print!("{}", self.human()),
        }
    }

    pub fn human(&self) -> String {
        let secs = |v: Option<f64>| v.map_or("never".to_string(), |s| format!("{s:.2} s"));
        let mut s = format!(
            "storm: {} clients over wsloop.positions, {}; all up after {:.2} s\n",
            self.clients, self.policy, self.setup_s
        );
        if !self.restarted {
            s += "  no 1001 arrived: the server was not restarted during the run\n";
        }
        let (up_b, up_s) = self.peaks(&self.upgrades);
        let (at_b, at_s) = self.peaks(&self.attempts);
        s += &format!(
            "  from the first 1001: {} attempts, {} 101s; peak 101s/s {up_b:.0} in a {:.0} ms \
             bucket, {up_s} in a second; peak attempts/s {at_b:.0}, {at_s} in a second\n",
            self.attempts.iter().map(|&n| u64::from(n)).sum::<u64>(),
            self.upgrades.iter().map(|&n| u64::from(n)).sum::<u64>(),
            self.bucket_ms
        );
        s += &format!(
            "  all open again after {}, all receiving after {} ({} still down)\n",
            secs(self.all_open_s),
            secs(self.all_back_s),
            self.still_down
        );
        s += &format!(
            "  {} x 1001 ({})\n  from the first 1001: {}\n",
            self.closes_1001,
            hints_text(&self.hints_1001),
            self.storm.human()
        );
        if self.setup.any() {
            s += &format!("  before it (setup): {}\n", self.setup.human());
        }
        s += &format!(
            "  {} positions received, {} gap notice(s), {} number(s) skipped, {} repeated or out \
             of order\n",
            self.messages, self.gaps, self.skipped, self.repeats
        );
        if let Some(a) = self.ack {
            s += &if a.lost == 0 {
                format!(
                    "  every client received all {} acknowledged positions ({} unacknowledged \
                     ones too)\n",
                    a.acked, a.unacked_received
                )
            } else {
                format!(
                    "  MESSAGES LOST: {} of {} acknowledged positions missing at some client \
                     (first {}); {} client(s) incomplete, {} missing in all\n",
                    a.lost,
                    a.acked,
                    a.first_lost.unwrap_or(0),
                    a.clients_incomplete,
                    a.missing
                )
            };
        }
        if self.errors > 0 {
            s += &format!(
                "  errors: {}; first: {}\n",
                self.errors,
                self.first_error.as_deref().unwrap_or("-")
            );
        }
        let per_s: Vec<String> = self
            .upgrades
            .chunks(self.per_second())
            .map(|c| c.iter().map(|&n| u64::from(n)).sum::<u64>().to_string())
            .collect();
        if !per_s.is_empty() {
            s += &format!(
                "  101s in each second from the first 1001: {}\n",
                per_s.join(" ")
            );
        }
        s
    }

    /// One JSON object on one line (hand-formatted; every key is always present).
    pub fn json(&self) -> String {
        let opt_f = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.3}"));
        let opt_s = |v: &Option<String>| v.as_deref().map_or("null".to_string(), json_string);
        let list = |v: &[u32]| {
            let items: Vec<String> = v.iter().map(u32::to_string).collect();
            format!("[{}]", items.join(","))
        };
        let (up_b, up_s) = self.peaks(&self.upgrades);
        let (at_b, at_s) = self.peaks(&self.attempts);
        let mut s = format!(
            "{{\"mode\":\"storm\",\"clients\":{},\"hints\":{},\"policy\":{},\"setup_s\":{:.3},\
             \"restarted\":{},\"bucket_ms\":{:.1},\"peak_upgrades_per_s_bucket\":{up_b:.0},\
             \"peak_upgrades_in_1s\":{up_s},\"peak_attempts_per_s_bucket\":{at_b:.0},\
             \"peak_attempts_in_1s\":{at_s},\"attempts_total\":{},\"upgrades_total\":{},\
             \"all_open_s\":{},\"all_back_s\":{},\"still_down\":{},",
            self.clients,
            self.hints,
            json_string(&self.policy),
            self.setup_s,
            self.restarted,
            self.bucket_ms,
            self.attempts_total,
            self.upgrades_total,
            opt_f(self.all_open_s),
            opt_f(self.all_back_s),
            self.still_down,
        );
        s += &format!(
            "\"closes_1001\":{},\"hints_1001_ms\":{},\"setup\":{},\"storm\":{},",
            self.closes_1001,
            hints_json(&self.hints_1001),
            self.setup.json(),
            self.storm.json()
        );
        s += &format!(
            "\"messages\":{},\"gaps\":{},\"skipped\":{},\"repeats\":{},",
            self.messages, self.gaps, self.skipped, self.repeats
        );
        s += &match self.ack {
            None => "\"ack\":null,".to_string(),
            Some(a) => format!(
                "\"ack\":{{\"acked\":{},\"lost\":{},\"first_lost\":{},\"clients_incomplete\":{},\
                 \"missing\":{},\"unacked_received\":{}}},",
                a.acked,
                a.lost,
                a.first_lost.map_or("null".to_string(), |p| p.to_string()),
                a.clients_incomplete,
                a.missing,
                a.unacked_received
            ),
        };
        s += &format!(
            "\"errors\":{},\"first_error\":{},\"attempts\":{},\"upgrades\":{}}}",
            self.errors,
            opt_s(&self.first_error),
            list(&self.attempts),
            list(&self.upgrades)
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peak_is_the_busiest_window() {
        assert_eq!(peak_window(&[1, 5, 2, 9, 0, 0, 4], 2), 11);
        assert_eq!(peak_window(&[1, 5, 2], 10), 8);
        assert_eq!(peak_window(&[], 10), 0);
        assert_eq!(peak_window(&[3, 7], 0), 7, "width 0 is one bucket");
    }

    #[test]
    fn a_storm_report_is_one_json_line() {
        let r = StormReport {
            clients: 2,
            policy: "p \"q\"".into(),
            bucket_ms: 100.0,
            upgrades: vec![1, 1],
            hints_1001: vec![30, 10, 20],
            restarted: true,
            ..StormReport::default()
        };
        let j = r.json();
        assert!(!j.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&j).expect("valid JSON");
        assert_eq!(v["hints_1001_ms"]["median"], 20);
        assert_eq!(v["peak_upgrades_in_1s"], 2);
        assert_eq!(v["peak_upgrades_per_s_bucket"], 10);
        assert!(r.failed(), "restarted but never all back");
    }
}
