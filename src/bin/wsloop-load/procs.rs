//! Owns `--procs K`: re-executing the generator K times with the connections (and the rate)
//! split evenly, reading each child's machine lines (see `Report::child_lines`), printing
//! the aggregated progress, and merging the children's results into one report. Children die
//! with the parent (PR_SET_PDEATHSIG), so killing the parent stops the whole load.
//! Must not: leave a child running after the parent is gone.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::engine::{Mode, Plan};
use crate::report::{new_histogram, Output, Progress, Report};
use crate::sys;

/// A child's final lines, parsed.
#[derive(Default)]
struct ChildResult {
    fields: HashMap<String, u64>,
    per_conn: Vec<u64>,
    hist: Vec<(u64, u64)>,
    error: Option<String>,
    got_result: bool,
}

pub fn run(plan: &Plan, k: usize) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wsloop-load: cannot find my own executable to start --procs: {e}");
            return ExitCode::from(1);
        }
    };
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    let mut children: Vec<Child> = Vec::with_capacity(k);
    let mut offset = 0;
    for i in 0..k {
        let share = plan.connections / k + usize::from(i < plan.connections % k);
        let args = child_args(plan, share, offset);
        offset += share;
        let spawned = Command::new(&exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                eprintln!("wsloop-load: cannot start child process {i}: {e}");
                kill_all(&mut children);
                return ExitCode::from(1);
            }
        };
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    match line {
                        Ok(l) => {
                            if tx.send((i, Some(l))).is_err() {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
                let _ = tx.send((i, None));
            });
        }
        children.push(child);
    }
    drop(tx);

    // A parent's own progress goes to stderr whatever its result format.
    let output = if plan.output == Output::Child {
        Output::Child
    } else {
        Output::Human
    };
    let progress = Progress::new(output, plan.quiet, plan.mode, plan.connections);
    let mut results: Vec<ChildResult> = (0..k).map(|_| ChildResult::default()).collect();
    // second → (count, up, errors, children that reported it)
    let mut seconds: HashMap<u64, (u64, usize, u64, usize)> = HashMap::new();
    let (mut up_reports, mut up_total) = (0, 0);
    let started = std::time::Instant::now();
    let mut open = k;
    let mut forwarded = false;
    while open > 0 {
        let (i, line) = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(msg) => msg,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // A stop request for the parent stops every child (each still reports).
                if sys::stop_requested() && !forwarded {
                    forwarded = true;
                    children.iter().for_each(|c| sys::terminate(c.id()));
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let Some(line) = line else {
            open -= 1;
            continue;
        };
        let mut words = line.splitn(2, ' ');
        let tag = words.next().unwrap_or("");
        let rest = words.next().unwrap_or("");
        match tag {
            "progress" => {
                let v: Vec<u64> = rest.split(' ').filter_map(|w| w.parse().ok()).collect();
                if let [sec, count, up, errors] = v[..] {
                    let e = seconds.entry(sec).or_default();
                    *e = (e.0 + count, e.1 + up as usize, e.2 + errors, e.3 + 1);
                    if e.3 == k {
                        let (count, up, errors, _) = *e;
                        progress.tick(sec, "all", count, up, errors);
                        seconds.remove(&sec);
                    }
                }
            }
            "up" => {
                up_reports += 1;
                up_total += rest
                    .split(' ')
                    .next()
                    .and_then(|w| w.parse::<usize>().ok())
                    .unwrap_or(0);
                if up_reports == k {
                    progress.all_up(up_total, plan.connections, started.elapsed().as_secs_f64());
                }
            }
            "result" => {
                let r = &mut results[i];
                r.got_result = true;
                for kv in rest.split(' ') {
                    if let Some((key, v)) = kv.split_once('=') {
                        r.fields.insert(key.to_string(), v.parse().unwrap_or(0));
                    }
                }
            }
            "per_conn" => {
                results[i].per_conn = rest.split(',').filter_map(|w| w.parse().ok()).collect();
            }
            "hist" => {
                results[i].hist = rest
                    .split(',')
                    .filter_map(|p| p.split_once(':'))
                    .filter_map(|(v, n)| Some((v.parse().ok()?, n.parse().ok()?)))
                    .collect();
            }
            "error" => results[i].error = Some(rest.to_string()),
            _ => eprintln!("wsloop-load: child {i}: {line}"),
        }
    }

    let mut failed_children = 0;
    for (i, c) in children.iter_mut().enumerate() {
        match c.wait() {
            Ok(s) if s.success() || s.code() == Some(1) => {}
            Ok(s) => {
                failed_children += 1;
                results[i]
                    .error
                    .get_or_insert_with(|| format!("child process {i} ended with {s}"));
            }
            Err(e) => {
                failed_children += 1;
                results[i]
                    .error
                    .get_or_insert_with(|| format!("child process {i}: {e}"));
            }
        }
    }

    let report = merge(plan, k, &results, failed_children);
    report.print(plan.output, plan.per_conn);
    if report.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn kill_all(children: &mut [Child]) {
    for c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn merge(plan: &Plan, k: usize, results: &[ChildResult], failed: u64) -> Report {
    let sum = |key: &str| -> u64 {
        results
            .iter()
            .map(|r| r.fields.get(key).copied().unwrap_or(0))
            .sum()
    };
    let max = |key: &str| -> u64 {
        results
            .iter()
            .map(|r| r.fields.get(key).copied().unwrap_or(0))
            .max()
            .unwrap_or(0)
    };
    let mut hist = new_histogram();
    for r in results {
        for &(v, n) in &r.hist {
            let _ = hist.record_n(v.clamp(hist.low(), hist.high()), n);
        }
    }
    let missing = results.iter().filter(|r| !r.got_result).count() as u64;
    Report {
        mode: plan.mode.name(),
        connections: plan.connections,
        up: sum("up") as usize,
        size: if matches!(plan.mode, Mode::Echo | Mode::Rate { .. }) {
            plan.size
        } else {
            0
        },
        kind: plan.kind(),
        duration_s: max("duration_ns") as f64 / 1e9,
        warmup_s: plan.warmup.as_secs_f64(),
        setup_s: max("setup_ns") as f64 / 1e9,
        rate: match plan.mode {
            Mode::Rate { per_sec, .. } => Some(per_sec),
            _ => None,
        },
        messages: sum("messages"),
        completed: sum("completed"),
        received: sum("received"),
        // Children sample their own CPU only when asked; a --procs run does not pass it on.
        server_cpu_s: None,
        client_cpu_s: None,
        sent: sum("sent"),
        unanswered: sum("unanswered"),
        skipped: sum("skipped"),
        errors: sum("errors") + failed.max(missing),
        close_errors: sum("close_errors"),
        first_error: results.iter().find_map(|r| r.error.clone()),
        per_conn: results.iter().flat_map(|r| r.per_conn.clone()).collect(),
        hist,
        procs: k,
        fanout: None,
    }
}

/// The command line of a child running `share` connections from index `offset` on.
fn child_args(plan: &Plan, share: usize, offset: usize) -> Vec<String> {
    let ms = |d: std::time::Duration| format!("{}ms", d.as_secs_f64() * 1e3);
    let scheme = if plan.raw { "tcp://" } else { "ws://" };
    let mut a: Vec<String> = vec![
        plan.mode.name().to_string(),
        "--url".into(),
        format!(
            "{scheme}{}{}",
            plan.host,
            if plan.raw { "" } else { &plan.path }
        ),
        "-c".into(),
        share.to_string(),
        "--child".into(),
        "--conn-offset".into(),
        offset.to_string(),
        "--connect-concurrency".into(),
        plan.connect_concurrency.to_string(),
        "--connect-timeout".into(),
        ms(plan.connect_timeout),
    ];
    if let Some(d) = plan.duration {
        a.extend(["-d".into(), ms(d)]);
    }
    if plan.mode != Mode::Idle {
        a.extend(["-w".into(), ms(plan.warmup)]);
    }
    if matches!(plan.mode, Mode::Echo | Mode::Rate { .. }) {
        a.extend(["--size".into(), plan.size.to_string()]);
        if plan.text {
            a.push("--text".into());
        }
        if plan.raw {
            a.push("--raw".into());
        }
    }
    if plan.raw && plan.mode == Mode::Idle {
        a.push("--raw".into());
    }
    if let Mode::Rate { per_sec, drain } = plan.mode {
        let share_rate = per_sec * share as f64 / plan.connections as f64;
        a.extend([
            "-r".into(),
            format!("{share_rate}"),
            "--drain".into(),
            ms(drain),
        ]);
    }
    if !plan.source_ips.is_empty() {
        let list: Vec<String> = plan.source_ips.iter().map(|ip| ip.to_string()).collect();
        a.extend(["--source-ips".into(), list.join(",")]);
    }
    a
}
