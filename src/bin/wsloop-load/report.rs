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
