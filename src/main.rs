//! Owns process start-up: resolve the configuration (flags, environment, config file), set up
//! logging, raise the descriptor limit, mount the apps, and run one reactor per worker until a
//! graceful shutdown.
//! Must not: contain protocol logic; everything it runs lives in the library.

use std::io::Write;
use std::process::ExitCode;

use wsloop::app::default_routes;
use wsloop::cli::{self, Cli};
use wsloop::reactor::workers;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    keep_freed_memory_for_reuse();
    let cli = Cli::parse();
    let effective = match cli.load(&cli::process_env()) {
        Ok(effective) => effective,
        Err(e) => {
            // Exit status 2, like a usage error from clap: the configuration is unusable.
            eprintln!("wsloop: {e}");
            return ExitCode::from(2);
        }
    };
    for warning in &effective.warnings {
        log::warn!("{warning}");
    }
    if cli.print_config() {
        print!("{}", effective.to_toml());
        return ExitCode::SUCCESS;
    }
    let mut cfg = effective.config.clone();
    if let Some(nofile) = raise_fd_limit() {
        let chosen = !matches!(
            effective.source("max_connections"),
            Some(cli::Source::Default)
        );
        fit_to_fd_limit(&mut cfg, nofile, chosen);
    }
    let subprotocols = cfg.subprotocols.clone();
    let listen = cfg.listen;
    let result = workers::run(
        cfg.clone(),
        cfg.workers,
        move || default_routes(subprotocols.clone()),
        |addr| {
            // Tests and scripts read this line to learn the port when listening on port 0.
            println!("wsloop listening on {addr}");
            let _ = std::io::stdout().flush();
            log::info!("serving ws://{addr}/echo with {} worker(s)", cfg.workers);
        },
    );
    match result {
        Ok(()) => {
            log::info!("bye");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wsloop: {listen}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Every connection is a descriptor: lift the soft limit to the hard one (systemd's
/// LimitNOFILE sets the hard one; see deploy/). Returns the soft limit now in force.
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            } else {
                log::warn!("could not raise the open-file limit");
            }
        }
    }
    Some(lim.rlim_cur)
}

/// Keep `--max-connections` within the descriptors the process has, less a reserve for its
/// own (stdio, each worker's epoll, waker, listener and spare descriptor, the signal pipe,
/// the Redis link, files): at the cap a new client gets a prompt 503, where past the
/// descriptors it could only be shed unanswered. The default is lowered to fit; a value the
/// operator chose is kept, with a warning.
fn fit_to_fd_limit(cfg: &mut wsloop::config::Config, nofile: u64, chosen: bool) {
    let reserve = 16 + 4 * cfg.workers as u64;
    let room = usize::try_from(nofile.saturating_sub(reserve).max(1)).unwrap_or(usize::MAX);
    if cfg.max_connections <= room {
        return;
    }
    if chosen {
        log::warn!(
            "--max-connections {} is more than the open-file limit ({nofile}) leaves room for \
             (about {room}): past that, new clients are shed without an answer",
            cfg.max_connections
        );
    } else {
        log::info!(
            "max_connections {room}: the open-file limit ({nofile}) less {reserve} for the \
             server's own descriptors"
        );
        cfg.max_connections = room;
    }
}

/// glibc gives memory freed at the top of a worker's arena back to the kernel as soon as more
/// than its trim threshold is free (128 KiB, raised only by large `mmap`s); the TLS path frees
/// and allocates records of tens of KiB per message, so a 64 KiB `wss://` echo paid ~14 page
/// faults per message refilling what was just given back (docs/benchmarks.md, "TLS: a peer
/// and the crypto provider"). Keep up to 4 MiB free per arena instead. An operator's own
/// `MALLOC_TRIM_THRESHOLD_` wins; other allocators are not touched.
fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
        }
    }
}
