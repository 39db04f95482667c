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
    let cfg = effective.config;
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
