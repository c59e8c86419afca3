//! `ticketlock completions SHELL` and `ticketlock man`: shell completion
//! scripts and a man page, made from the command-line definition itself
//! (clap_complete, clap_mangen), so that they never fall behind it.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::exit;

/// Options of `ticketlock completions`.
#[derive(Debug, Args)]
#[command(after_help = "Install, e.g.: bash: `ticketlock completions bash > \
                        ~/.local/share/bash-completion/completions/ticketlock`; zsh: into a \
                        directory of $fpath as `_ticketlock`; fish: `ticketlock completions fish > \
                        ~/.config/fish/completions/ticketlock.fish`.")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL", value_parser = ["bash", "zsh", "fish", "elvish", "powershell"])]
    pub shell: String,
}

/// Options of `ticketlock man`.
#[derive(Debug, Args)]
#[command(
    after_help = "Read it with `ticketlock man | man -l -`, or install it as \
                        ticketlock.1 in a man1 directory."
)]
pub struct ManArgs {
    /// The page of this subcommand (e.g. `run`) instead of the main page.
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,
}

/// Prints the completion script for the shell.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let shell: Shell = args
        .shell
        .parse()
        .map_err(|e| exit::coded(exit::USAGE, format!("completions: {e}")))?;
    let mut cmd = Cli::command();
    // Made in memory: clap_complete panics when its writer fails (a closed
    // pipe, as in `| head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "ticketlock", &mut script);
    write_out(&script)
}

/// Writes to stdout; a reader that went away (`| head`) is no error.
fn write_out(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Prints a man page (roff).
pub fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    cmd.build();
    let page = match &args.subcommand {
        None => cmd,
        Some(name) => {
            let Some(sub) = cmd.find_subcommand(name) else {
                let names: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
                return Err(exit::coded(
                    exit::USAGE,
                    format!(
                        "man: no subcommand {name:?}; the subcommands are {}",
                        names.join(", ")
                    ),
                ));
            };
            // `ticketlock-run(1)`, as git and cargo name theirs.
            sub.clone()
                .display_name(format!("ticketlock-{}", sub.get_name()))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out)?;
    write_out(&out)
}
