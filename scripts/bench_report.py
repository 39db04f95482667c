#!/usr/bin/env python3
# scripts/bench_report.py: turns the raw results of scripts/bench (JSON lines) into docs/benchmarks.md and the hand-written SVG chart docs/bench-throughput.svg.
#
# usage: scripts/bench_report.py RESULTS.jsonl DOCS_DIR
# Standard library only. Medians are over repetitions; "ratio to wsloop" is the median of the
# per-repetition ratios (each server against wsloop in the same repetition of the same case).
"""Render benchmark results as Markdown tables and an SVG bar chart."""

import html
import json
import math
import os
import re
import statistics
import sys

SERVERS = ["wsloop", "fastwebsockets", "tokio-tungstenite", "raw"]
LABELS = {
    "wsloop": "wsloop",
    "fastwebsockets": "fastwebsockets",
    "tokio-tungstenite": "tokio-tungstenite",
    "raw": "raw TCP (raw-mio-echo)",
}
COLORS = {
    "wsloop": "#d95f02",
    "fastwebsockets": "#1b9e77",
    "tokio-tungstenite": "#7570b3",
    "raw": "#888888",
}
READ_FAMILY = {"read", "readv", "recvfrom", "recvmsg", "recvmmsg", "pread64", "preadv"}
WRITE_FAMILY = {"write", "writev", "sendto", "sendmsg", "sendmmsg", "pwrite64", "pwritev"}


def load(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def fmt_num(v, digits=0):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def case_key(case):
    """Order cases as given by the script: by size, then connections."""
    conns, size = case.split("x")
    mult = {"KiB": 1024, "MiB": 1024 * 1024}
    m = re.match(r"(\d+)(KiB|MiB)?$", size)
    n = int(m.group(1)) * mult.get(m.group(2) or "", 1) if m else 0
    return (n, int(conns))


def case_label(case):
    conns, size = case.split("x")
    size = size if size[-1] == "B" else size + " B"
    return f"{int(conns):,} × {size}"


def lock_versions(path, names):
    """Versions of `names` from a Cargo.lock (name → version)."""
    out = {}
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        return out
    for block in text.split("[[package]]"):
        n = re.search(r'^name = "([^"]+)"', block, re.M)
        v = re.search(r'^version = "([^"]+)"', block, re.M)
        if n and v and n.group(1) in names:
            out.setdefault(n.group(1), v.group(1))
    return out


def echo_table(rows):
    """(case, server) → dict of lists, and per-rep values for ratios."""
    data = {}
    per_rep = {}
    for r in rows:
        res = r.get("result")
        d = data.setdefault((r["case"], r["server"]), {"rate": [], "cpu": [], "gen": [], "srv": [], "err": 0})
        if not res or r.get("rc", 0) != 0 or res.get("errors", 0) > 0:
            d["err"] += 1
            continue
        d["rate"].append(res["per_sec"])
        if res.get("server_cpu_us_per_msg") is not None:
            d["cpu"].append(res["server_cpu_us_per_msg"])
        if res.get("client_cpu_s") is not None and res["duration_s"]:
            d["gen"].append(100.0 * res["client_cpu_s"] / res["duration_s"])
        if res.get("server_cpu_s") is not None and res["duration_s"]:
            d["srv"].append(100.0 * res["server_cpu_s"] / res["duration_s"])
        per_rep[(r["case"], r["server"], r["rep"])] = res
    return data, per_rep


def ratios(per_rep, case, server, field):
    out = []
    for (c, s, rep), res in per_rep.items():
        if c != case or s != server:
            continue
        base = per_rep.get((case, "wsloop", rep))
        if base and base.get(field) and res.get(field) is not None:
            out.append(res[field] / base[field])
    return out


def med(xs):
    return statistics.median(xs) if xs else None


def span(xs, digits=0):
    if not xs:
        return "–"
    if len(xs) == 1:
        return fmt_num(xs[0], digits)
    return f"{fmt_num(min(xs), digits)}–{fmt_num(max(xs), digits)}"


def svg_chart(cases, data, servers):
    """Small multiples: one panel per case with its own linear scale, bars = median msgs/s,
    whiskers = min–max over repetitions."""
    panel_w, panel_h = 230, 250
    left, top, bottom = 60, 60, 70
    bar_gap = 8
    width = left + panel_w * len(cases) + 20
    height = top + panel_h + bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">'
        "Echo throughput, messages/s (median; whiskers: min–max)</text>",
    ]
    # Legend.
    lx = left
    for s in servers:
        out.append(f'<rect x="{lx}" y="34" width="12" height="12" fill="{COLORS[s]}"/>')
        out.append(f'<text x="{lx + 16}" y="45">{html.escape(LABELS[s])}</text>')
        lx += 40 + 7 * len(LABELS[s])
    for i, case in enumerate(cases):
        x0 = left + i * panel_w
        meds = [med(data.get((case, s), {}).get("rate", [])) for s in servers]
        maxes = [max(data.get((case, s), {}).get("rate", []) or [0]) for s in servers]
        step = nice_step(max([m for m in maxes if m] or [1]) * 1.1 / 4)
        ymax = step * 4
        plot_w = panel_w - 30
        bw = (plot_w - bar_gap * (len(servers) + 1)) / len(servers)
        base_y = top + panel_h
        out.append(
            f'<line x1="{x0}" y1="{base_y}" x2="{x0 + plot_w}" y2="{base_y}" stroke="#333"/>'
        )
        out.append(f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{base_y}" stroke="#333"/>')
        for t in range(5):
            v = ymax * t / 4
            y = base_y - panel_h * t / 4
            out.append(f'<line x1="{x0 - 3}" y1="{y:.1f}" x2="{x0}" y2="{y:.1f}" stroke="#333"/>')
            out.append(
                f'<text x="{x0 - 5}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
                f"{short(v)}</text>"
            )
        for j, s in enumerate(servers):
            vals = data.get((case, s), {}).get("rate", [])
            if not vals:
                continue
            m = med(vals)
            h = panel_h * m / ymax
            bx = x0 + bar_gap + j * (bw + bar_gap)
            out.append(
                f'<rect x="{bx:.1f}" y="{base_y - h:.1f}" width="{bw:.1f}" height="{h:.1f}" '
                f'fill="{COLORS[s]}"><title>{html.escape(LABELS[s])}: {m:,.0f} msgs/s</title></rect>'
            )
            lo, hi = min(vals), max(vals)
            cx = bx + bw / 2
            ylo, yhi = base_y - panel_h * lo / ymax, base_y - panel_h * hi / ymax
            out.append(f'<line x1="{cx:.1f}" y1="{ylo:.1f}" x2="{cx:.1f}" y2="{yhi:.1f}" stroke="#000"/>')
            out.append(f'<line x1="{cx - 4:.1f}" y1="{yhi:.1f}" x2="{cx + 4:.1f}" y2="{yhi:.1f}" stroke="#000"/>')
            out.append(f'<line x1="{cx - 4:.1f}" y1="{ylo:.1f}" x2="{cx + 4:.1f}" y2="{ylo:.1f}" stroke="#000"/>')
            out.append(
                f'<text x="{cx:.1f}" y="{yhi - 4:.1f}" text-anchor="middle" font-size="9">{short(m)}</text>'
            )
        out.append(
            f'<text x="{x0 + plot_w / 2}" y="{base_y + 20}" text-anchor="middle" font-weight="bold">'
            f"{html.escape(case_label(case))}</text>"
        )
    out.append(
        f'<text x="{width / 2}" y="{height - 20}" text-anchor="middle" font-size="11" fill="#555">'
        "binary echo, closed loop; server on CPU 0, wsloop-load on CPU 1; each panel has its own scale"
        "</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def nice_step(raw):
    """The smallest 1, 2, 2.5 or 5 × 10^k at least `raw`, for round axis ticks."""
    k = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if m * k >= raw:
            return m * k
    return 10 * k


def short(v):
    if v >= 1e6:
        return f"{v / 1e6:.1f}M"
    if v >= 1e3:
        k = v / 1e3
        return f"{k:.0f}k" if k == int(k) or v >= 1e4 else f"{k:.1f}k"
    return f"{v:.0f}"


def main():
    if len(sys.argv) != 3:
        print(__doc__ + "\nusage: bench_report.py RESULTS.jsonl DOCS_DIR", file=sys.stderr)
        return 2
    results, docs = sys.argv[1], sys.argv[2]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = load(results)
    meta = next((r for r in rows if r.get("bench") == "meta"), {})
    meta_end = next((r for r in rows if r.get("bench") == "meta_end"), {})
    echo = [r for r in rows if r.get("bench") == "echo"]
    idle = [r for r in rows if r.get("bench") == "idle"]
    sysc = [r for r in rows if r.get("bench") == "syscalls"]
    servers = [s for s in SERVERS if any(r["server"] == s for r in echo + idle + sysc)]
    cases = sorted({r["case"] for r in echo}, key=case_key)
    data, per_rep = echo_table(echo)

    md = []
    md.append("# Benchmarks")
    md.append("")
    md.append(
        "Generated by `scripts/bench` (raw results: `target/bench/results.jsonl`, rendered by "
        "`scripts/bench_report.py`). Do not edit by hand; re-run the script."
    )
    md.append("")
    md.append(f"- Date: {meta.get('date', '?')}")
    md.append(f"- Command: `{meta.get('command', 'scripts/bench')}` — {meta.get('reps')} repetition(s), "
              f"{meta.get('warmup_s')} s warm-up + {meta.get('duration_s')} s measured per run, servers interleaved")
    md.append(f"- CPU: {meta.get('cpu', '?')} ({meta.get('nproc', '?')} cores); kernel {meta.get('kernel', '?')}")
    md.append(f"- Toolchain: {meta.get('rustc', '?')}; {meta.get('cargo', '?')}; wsloop at commit {meta.get('git', '?')}")
    md.append(f"- Load average (1/5/15 min) at start: {meta.get('loadavg_start', '?')}; at end: {meta_end.get('loadavg_end', '?')}")
    wv = lock_versions(os.path.join(root, "Cargo.lock"), {"mio", "httparse", "sha1", "simdutf8", "hdrhistogram", "socket2"})
    fv = lock_versions(os.path.join(root, "benches/peers/fastwebsockets-echo/Cargo.lock"), {"fastwebsockets", "hyper", "hyper-util", "tokio"})
    tv = lock_versions(os.path.join(root, "benches/peers/tokio-tungstenite-echo/Cargo.lock"), {"tokio-tungstenite", "tungstenite", "tokio"})
    rv = lock_versions(os.path.join(root, "benches/peers/raw-mio-echo/Cargo.lock"), {"mio"})
    def vs(d):
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "?"
    md.append(f"- Crates: wsloop + wsloop-load: {vs(wv)}; fastwebsockets-echo: {vs(fv)}; "
              f"tokio-tungstenite-echo: {vs(tv)}; raw-mio-echo: {vs(rv)}")
    md.append("")
    md.append("Setup: every server is single-threaded and pinned to CPU 0 (`taskset -c 0`); the load "
              "generator `wsloop-load` runs on CPU 1. Each run starts a fresh server. wsloop runs with "
              "`--max-message-size 2097152 --max-frame-size 2097152 --max-queued-bytes 8388608`. "
              "Echo is binary, closed loop (each connection has one message in flight). "
              "Server CPU is utime+stime from `/proc/PID/stat` sampled at the start and end of the "
              "measured window (10 ms clock ticks).")
    md.append("")
    md.append("> **Noise.** This machine has 2 cores and other work was running during the measurement "
              "(see the load averages above), so the server and the generator did not always have their "
              "CPU to themselves. Treat differences under ~15 % as noise; the min–max columns show the "
              "spread. The `srv CPU %` and `gen CPU %` columns show who was saturated: a server below "
              "~90 % while the generator is near 100 % means the generator, not the server, set the pace.")
    md.append("")

    # Throughput.
    md.append("## Throughput and server CPU per message")
    md.append("")
    md.append("| Case | Server | msgs/s median | min–max | ratio to wsloop | server µs CPU/msg median | min–max | CPU/msg ratio to wsloop | srv CPU % | gen CPU % |")
    md.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for case in cases:
        for s in servers:
            d = data.get((case, s))
            if not d:
                continue
            r_rate = med(ratios(per_rep, case, s, "per_sec"))
            r_cpu = med(ratios(per_rep, case, s, "server_cpu_us_per_msg"))
            failed = f" ({d['err']} failed run(s))" if d["err"] else ""
            md.append(
                f"| {case_label(case)} | {LABELS[s]}{failed} | {fmt_num(med(d['rate']))} | {span(d['rate'])} | "
                f"{fmt_num(r_rate, 2) if r_rate is not None else '–'} | {fmt_num(med(d['cpu']), 2)} | "
                f"{span(d['cpu'], 2)} | {fmt_num(r_cpu, 2) if r_cpu is not None else '–'} | "
                f"{fmt_num(med(d['srv']))} | {fmt_num(med(d['gen']))} |"
            )
    md.append("")
    md.append("![Echo throughput by case and server](bench-throughput.svg)")
    md.append("")

    # Targets.
    md.append("## wsloop against the targets of issue 9")
    md.append("")
    md.append("Targets: server CPU per message ≤ 0.85× fastwebsockets and ≤ 1.05× the raw TCP floor; "
              "msgs/s ≥ fastwebsockets and ≥ 1.4× tokio-tungstenite (medians of per-repetition ratios).")
    md.append("")
    md.append("| Case | CPU/msg ÷ fastwebsockets (≤ 0.85) | CPU/msg ÷ raw (≤ 1.05) | msgs/s ÷ fastwebsockets (≥ 1) | msgs/s ÷ tokio-tungstenite (≥ 1.4) |")
    md.append("|---|--:|--:|--:|--:|")

    def inv(xs):
        return [1 / x for x in xs if x]

    def verdict(v, ok):
        if v is None:
            return "–"
        return f"{v:.2f} {'✅' if ok(v) else '❌'}"

    for case in cases:
        cf = med(inv(ratios(per_rep, case, "fastwebsockets", "server_cpu_us_per_msg")))
        cr = med(inv(ratios(per_rep, case, "raw", "server_cpu_us_per_msg")))
        rf = med(inv(ratios(per_rep, case, "fastwebsockets", "per_sec")))
        rt = med(inv(ratios(per_rep, case, "tokio-tungstenite", "per_sec")))
        md.append(
            f"| {case_label(case)} | {verdict(cf, lambda v: v <= 0.85)} | {verdict(cr, lambda v: v <= 1.05)} | "
            f"{verdict(rf, lambda v: v >= 1.0)} | {verdict(rt, lambda v: v >= 1.4)} |"
        )
    md.append("")

    # Memory.
    if idle:
        md.append("## Memory per idle connection")
        md.append("")
        md.append("Server VmRSS before and after opening the idle connections with `wsloop-load idle` "
                  "(raw: plain TCP connections), in two halves. *Per connection* is (after − before) / N; "
                  "*marginal* is the growth over the second half divided by its size, which leaves out "
                  "one-off allocations made during the first burst of handshakes (buffer pools, tables "
                  "sized once). User-space memory only: kernel socket buffers are not in RSS. "
                  "Target for wsloop: ≤ 128 bytes per idle WebSocket connection.")
        md.append("")
        md.append("| Server | connections up | RSS before (KiB) | after N/2 (KiB) | after N (KiB) | bytes per connection | marginal bytes per connection |")
        md.append("|---|--:|--:|--:|--:|--:|--:|")
        for s in servers:
            for r in idle:
                if r["server"] != s:
                    continue
                b, m, a = r.get("rss_before_kb"), r.get("rss_half_kb"), r.get("rss_after_kb")
                n, half = r["conns"], r.get("half", r["conns"])
                per = (a - b) * 1024 / n if None not in (a, b) else None
                marg = (a - m) * 1024 / (n - half) if None not in (a, m) and n > half else None
                up = r.get("up")
                md.append(f"| {LABELS[s]} | {fmt_num(up) if up is not None else 'failed'} of {n:,} | "
                          f"{fmt_num(b)} | {fmt_num(m)} | {fmt_num(a)} | {fmt_num(per)} | {fmt_num(marg)} |")
        md.append("")

    # Syscalls.
    if sysc:
        md.append("## System calls per echoed message")
        md.append("")
        md.append(f"`strace -c -f -p PID` attached to the server during a {meta.get('strace_duration_s')} s run per case "
                  "(no warm-up; the handshakes' few calls per connection are included, about 1 %). "
                  "strace slows every call down, which changes batching (fewer `epoll_wait` per message), "
                  "but not how many reads and writes a message needs. Target for wsloop: 2 (one read, one write).")
        md.append("")
        md.append("| Case | Server | messages | read-family / msg | write-family / msg | epoll_wait / msg | other / msg | total / msg |")
        md.append("|---|---|--:|--:|--:|--:|--:|--:|")
        for case in sorted({r["case"] for r in sysc}, key=case_key):
            for s in servers:
                for r in sysc:
                    if r["server"] != s or r["case"] != case:
                        continue
                    res = r.get("result") or {}
                    n = res.get("completed") or 0
                    calls = r.get("calls", {})
                    rd = sum(v for k, v in calls.items() if k in READ_FAMILY)
                    wr = sum(v for k, v in calls.items() if k in WRITE_FAMILY)
                    ep = sum(v for k, v in calls.items() if k.startswith("epoll_wait") or k == "epoll_pwait")
                    other = sum(calls.values()) - rd - wr - ep
                    def per(v):
                        return f"{v / n:.2f}" if n else "–"
                    md.append(f"| {case_label(case)} | {LABELS[s]} | {fmt_num(n)} | {per(rd)} | {per(wr)} | {per(ep)} | {per(other)} | {per(sum(calls.values()))} |")
        md.append("")

    md.append("## Reproduce")
    md.append("")
    md.append("```sh")
    md.append(meta.get("command", "scripts/bench"))
    md.append("scripts/bench --help   # options: repetitions, durations, cases, servers")
    md.append("```")
    md.append("")
    os.makedirs(docs, exist_ok=True)
    with open(os.path.join(docs, "benchmarks.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md))
    with open(os.path.join(docs, "bench-throughput.svg"), "w", encoding="utf-8") as f:
        f.write(svg_chart(cases, data, [s for s in servers if any(k[1] == s for k in data)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
