//! The `ticketlock` command: parses the options and hands them to [`app::run`].

mod app;
mod bench;
mod cli;
mod demo;
mod exec;
mod exit;
mod json;
mod migrate;
mod records;
mod rng;
mod shell;
mod store;
mod torture;
mod units;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    // A program chooses its process-wide TLS provider; the library never does.
    ticketlock::install_tls_provider();
    match cli::Cli::try_parse() {
        Ok(cli) => app::run(cli),
        Err(e) => exit::usage(&e),
    }
}
