//! Owns the few Linux facilities that std and mio do not wrap, each behind a safe function:
//! the monotonic clock in nanoseconds, a timerfd for sub-millisecond wake-ups, the
//! file-descriptor limit, `IP_BIND_ADDRESS_NO_PORT`, the parent-death signal, the ephemeral
//! port range, a random seed, a process's CPU time from /proc, and SIGINT/SIGTERM as a
//! request to stop. All `unsafe` of the load generator lives here.
//! Must not: let `unsafe` leak out: every function it exports is safe to call.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Nanoseconds on CLOCK_MONOTONIC: the clock timerfd deadlines are expressed in, so the
/// schedule and the wake-ups agree without conversion.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// A non-blocking timerfd on CLOCK_MONOTONIC. epoll's own timeout has millisecond
/// granularity, too coarse for an open-loop schedule of thousands of sends per second.
pub struct TimerFd(OwnedFd);

impl TimerFd {
    pub fn new() -> io::Result<TimerFd> {
        // SAFETY: plain syscall; the returned descriptor is checked before it is owned.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(TimerFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Fire once at `deadline_ns` (CLOCK_MONOTONIC); a deadline in the past fires at once.
    pub fn arm_at(&self, deadline_ns: u64) -> io::Result<()> {
        // A zero it_value would disarm the timer instead.
        let deadline_ns = deadline_ns.max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: valid descriptor and itimerspec; the old value is not requested.
        let rc = unsafe {
            libc::timerfd_settime(
                self.0.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Consume the expiration count so the descriptor stops being readable.
    pub fn clear(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: valid descriptor and an 8-byte buffer, the size timerfd reads need. EAGAIN
        // (it had not fired) needs no handling.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    }

    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the (possibly raised) soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: valid pointer; raising the soft limit up to the hard one is always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return lim.rlim_max;
        }
    }
    lim.rlim_cur
}

/// Let `bind(ip, 0)` defer the choice of port to `connect`, so ports are unique per
/// (source, destination) pair rather than per source address: without it each source IP
/// gives fewer than 30,000 connections in total.
pub fn set_bind_address_no_port(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: valid descriptor, option value and length.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A `--procs` child dies with its parent, so killing the parent never leaves load running.
pub fn die_with_parent() {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes the signal number as its only argument.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
}

/// How many ephemeral ports one (source, destination) pair can use.
pub fn ephemeral_ports() -> u64 {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .filter_map(|v| v.parse::<u64>().ok());
    match (it.next(), it.next()) {
        (Some(lo), Some(hi)) if hi >= lo => hi - lo + 1,
        _ => 28_232, // the kernel's default range 32768–60999
    }
}

/// 64 random bits for the PRNG that makes WebSocket keys and masks.
pub fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_ne_bytes(b);
    }
    now_ns() ^ (u64::from(std::process::id()) << 32)
}

/// User + system CPU time of process `pid` (all its threads) in seconds, from
/// /proc/PID/stat fields 14 and 15 (clock ticks; 10 ms resolution at the usual 100 Hz).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields resume after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field 14 (utime) is index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some((utime + stime) as f64 / hz)
}

/// Set by SIGINT/SIGTERM: finish the run early, closing connections and still reporting.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// Route SIGINT and SIGTERM to `stop_requested` instead of killing the process. epoll_wait
/// is never restarted after a handler (signal(7)), so the event loop sees EINTR at once.
pub fn catch_stop_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a valid handler and an empty mask is well formed;
        // the handler only stores to an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Pass a stop request on to a `--procs` child.
pub fn terminate(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: plain syscall on a child we started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}
