//! Runs a parsed command line: logging, the async runtime, the subcommand.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
use crate::{bench, demo, exec, exit, migrate, records, shell, torture};

/// Runs the subcommand and turns its outcome into the process's exit code;
/// an error is reported as one `ticketlock: <message>` line on stderr.
pub fn run(cli: Cli) -> ExitCode {
    init_logging(cli.verbose);
    let json = cli.command.json();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return exit::report(&exit::coded(
                exit::SOFTWARE,
                format!("cannot start the async runtime: {e}"),
            ));
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Run(args) => exec::run(args).await,
            Command::Inspect(args) => records::inspect::run(args).await,
            Command::List(args) => records::list::run(args).await,
            Command::Clear(args) => records::clear::run(args).await,
            Command::Bench(args) => bench::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Migrate(args) => migrate::run(args).await,
            Command::Torture(args) => torture::run(args).await,
            Command::Completions(args) => shell::completions(&args),
            Command::Man(args) => shell::man(&args),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            if json && !crate::json::error_printed() {
                let object = crate::json::ErrorObject::of(&e);
                println!("{}", serde_json::json!({ "error": object }));
            }
            exit::report(&e)
        }
    }
}

/// Logs to stderr. `-v` sets the level for everything; without it
/// `RUST_LOG` does, and without that only errors show: what a user must
/// know (a lost lease, a config warning) is printed as a `ticketlock:` line
/// of its own, and the library's warnings (one per failed renewal) would
/// bury it.
fn init_logging(verbose: u8) {
    let filter = match verbose {
        0 => match std::env::var("RUST_LOG") {
            Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
                eprintln!("ticketlock: ignoring RUST_LOG={spec:?}: {e}; logging errors only");
                EnvFilter::new("error")
            }),
            _ => EnvFilter::new("error"),
        },
        1 => EnvFilter::new("info"),
        2 => EnvFilter::new("debug"),
        _ => EnvFilter::new("trace"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
