//! TEMP(lead): `ticketlock bench` as a program of its own, until the `Bench`
//! subcommand is in `main.rs`; delete it then.
//!
//! `cargo run --release -p ticketlock-cli --example bench -- --workload handoff`

use clap::Parser;

#[path = "../src"]
mod src {
    pub mod bench;
}

/// Measures ticketlock against its baselines.
#[derive(Parser, Debug)]
#[command(name = "ticketlock-bench")]
struct Cli {
    #[command(flatten)]
    args: src::bench::BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    src::bench::run(Cli::parse().args).await
}
