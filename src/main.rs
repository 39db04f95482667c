//! Owns process start-up: parse flags, set up logging, mount the apps, bind, run the loop.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use wsloop::cli::Cli;
use wsloop::reactor::Reactor;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cfg = match Cli::parse().into_config() {
        Ok(cfg) => cfg,
        Err(msg) => {
            eprintln!("wsloop: {msg}");
            return ExitCode::from(2);
        }
    };
    let router = wsloop::app::default_routes(cfg.subprotocols.clone());
    let mut reactor = match Reactor::bind(cfg.clone(), router) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wsloop: cannot listen on {}: {e}", cfg.listen);
            return ExitCode::from(1);
        }
    };
    if let Err(e) = reactor.handle_signals() {
        eprintln!("wsloop: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    let addr = reactor.local_addr();
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("wsloop listening on {addr}");
    let _ = std::io::stdout().flush();
    log::info!("serving ws://{addr}/echo");
    match reactor.run() {
        Ok(()) => {
            log::info!("bye");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::from(1)
        }
    }
}
