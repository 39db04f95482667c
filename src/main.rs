//! Owns process start-up: parse flags, set up logging, raise the descriptor limit, mount the
//! apps, and run one reactor per worker until a graceful shutdown.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use wsloop::app::default_routes;
use wsloop::cli::Cli;
use wsloop::reactor::workers;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cfg = match Cli::parse().into_config() {
        Ok(cfg) => cfg,
        Err(msg) => {
            eprintln!("wsloop: {msg}");
            return ExitCode::from(2);
        }
    };
    raise_fd_limit();
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
/// LimitNOFILE sets the hard one; see deploy/).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                log::warn!("could not raise the open-file limit");
            }
        }
    }
}
