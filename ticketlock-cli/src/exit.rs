//! Exit codes (sysexits.h where one fits) and the one-line error report.

use std::fmt;
use std::process::ExitCode;

/// Bad usage: unknown option, missing argument, conflicting flags.
pub const USAGE: u8 = 64;
/// A stored record could not be read.
pub const DATA: u8 = 65;
/// The lock store could not be reached.
pub const UNAVAILABLE: u8 = 69;
/// An internal failure of this program (e.g. no async runtime).
pub const SOFTWARE: u8 = 70;
/// Try again later: the acquire timeout passed, the ticket was lost, or the
/// conversation's queue was full.
pub const TEMPFAIL: u8 = 75;
/// The configuration (endpoints file, URL, `TICKET_LOCK_LIFETIME`) is wrong.
pub const CONFIG: u8 = 78;
/// The command exists but could not be executed (as in the shells).
pub const CANNOT_EXECUTE: u8 = 126;
/// The command was not found (as in the shells).
pub const NOT_FOUND: u8 = 127;
/// Anything else: the demo found a violation, or an unclassified error.
pub const FAILURE: u8 = 1;

/// An error that carries its own exit code; its message is the whole line.
#[derive(Debug)]
pub struct Coded {
    pub code: u8,
    /// The JSON error object's `kind`, when the code alone does not say it.
    pub kind: Option<&'static str>,
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// An error with exit code `code`.
pub fn coded(code: u8, message: impl Into<String>) -> anyhow::Error {
    Coded {
        code,
        kind: None,
        message: message.into(),
    }
    .into()
}

/// An error with exit code `code` and JSON `kind`.
pub fn coded_kind(code: u8, kind: &'static str, message: impl Into<String>) -> anyhow::Error {
    Coded {
        code,
        kind: Some(kind),
        message: message.into(),
    }
    .into()
}

/// The JSON error object's `kind` for `e`.
pub fn kind_of_error(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if let Some(Coded { kind: Some(k), .. }) = cause.downcast_ref::<Coded>() {
            return k;
        }
    }
    kind_of(code_of(e))
}

/// The exit code for an error: its own if it has one, else by the kind of
/// the library error in its chain.
pub fn code_of(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.code;
        }
        if let Some(e) = cause.downcast_ref::<ticketlock::Error>() {
            return code_of_lock_error(e);
        }
    }
    FAILURE
}

fn code_of_lock_error(e: &ticketlock::Error) -> u8 {
    use ticketlock::Error as E;
    match e {
        // A full queue drains as its holders finish: retry later, as for a
        // timeout (69 would send the operator looking for a dead server).
        E::Timeout { .. } | E::Expired { .. } | E::QueueFull { .. } => TEMPFAIL,
        E::Unavailable { .. } => UNAVAILABLE,
        E::Config { .. } => CONFIG,
        E::InvalidId { .. } => USAGE,
        E::CorruptRecord { .. } => DATA,
        _ => FAILURE,
    }
}

/// The `kind` of the JSON error object for an exit status.
pub fn kind_of(code: u8) -> &'static str {
    match code {
        USAGE => "usage",
        DATA => "corrupt_record",
        UNAVAILABLE => "unavailable",
        SOFTWARE => "software",
        TEMPFAIL => "conflict",
        CONFIG => "config",
        CANNOT_EXECUTE => "cannot_execute",
        NOT_FOUND => "command_not_found",
        _ => "failure",
    }
}

/// Prints `ticketlock: <message>` on stderr and gives the exit code.
pub fn report(e: &anyhow::Error) -> ExitCode {
    eprintln!("ticketlock: {}", chain_line(e));
    ExitCode::from(code_of(e))
}

/// The error and its causes on one line, each cause once: the library's
/// messages already quote their source (and redis's errors repeat theirs),
/// which `{:#}` would print two or three times over.
pub fn chain_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    // One line, whatever a cause holds (a parser's multi-line report).
    if line.contains('\n') {
        line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    line
}

/// Reports a command-line parse failure: help and version go to stdout with
/// status 0; real errors to stderr with [`USAGE`] (not clap's 2), as one
/// `ticketlock: <message>` line: clap's message (its indented list of
/// missing arguments joined in), its tips in brackets, without the usage
/// block.
pub fn usage(e: &clap::Error) -> ExitCode {
    if !e.use_stderr() {
        // --help, --version.
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    // `--json` before `--` asks for the error object on stdout too.
    let json = std::env::args()
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    match text.strip_prefix("error: ") {
        Some(message) => {
            let line = one_line(message);
            if json {
                println!("{}", crate::json::error(USAGE, kind_of(USAGE), &line));
            }
            eprintln!("ticketlock: {line}");
        }
        None => {
            // No subcommand given: clap shows the help instead of an error.
            eprint!("{text}");
            if !text.ends_with('\n') {
                eprintln!();
            }
        }
    }
    ExitCode::from(USAGE)
}

/// Clap's rendered error on one line: the first paragraph joined, then each
/// `tip:`; the `Usage:` and "For more information" paragraphs are dropped
/// for a pointer to `--help`.
fn one_line(message: &str) -> String {
    let (first, rest) = message.split_once("\n\n").unwrap_or((message, ""));
    let mut line = first
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    for tip in rest.lines().filter_map(|l| l.trim().strip_prefix("tip: ")) {
        line.push_str(&format!(" ({tip})"));
    }
    line.push_str("; see --help");
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn library_error_kinds_map_to_sysexits() {
        let cases = [
            (
                ticketlock::Error::Timeout {
                    conversation_id: "c".into(),
                    waited: Duration::from_secs(1),
                },
                TEMPFAIL,
            ),
            (
                ticketlock::Error::QueueFull {
                    conversation_id: "c".into(),
                    limit: 1000,
                },
                TEMPFAIL,
            ),
            (
                ticketlock::Error::Unavailable {
                    backend: "redis".into(),
                    message: "refused".into(),
                    source: None,
                },
                UNAVAILABLE,
            ),
            (
                ticketlock::Error::Config {
                    key: "k".into(),
                    message: "m".into(),
                },
                CONFIG,
            ),
            (
                ticketlock::Error::InvalidId {
                    conversation_id: String::new(),
                    message: "empty".into(),
                },
                USAGE,
            ),
        ];
        for (e, code) in cases {
            let e = anyhow::Error::from(e).context("while doing something");
            assert_eq!(code_of(&e), code, "{e:#}");
        }
    }

    #[test]
    fn causes_are_shown_once_on_the_line() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let shown = io.to_string();
        let e = anyhow::Error::from(ticketlock::Error::Unavailable {
            backend: "redis h:1/1".into(),
            message: format!("cannot connect: {shown}"),
            source: Some(Box::new(io)),
        })
        .context("while opening the store");
        let line = chain_line(&e);
        assert_eq!(line.matches(&shown).count(), 1, "{line}");
        assert!(
            line.starts_with("while opening the store: lock store unavailable"),
            "{line}"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_line(&plain), "outer: inner");
    }

    #[test]
    fn clap_errors_are_put_on_one_line() {
        let message = "the following required arguments were not provided:\n  <CONVERSATION_ID>\n  <COMMAND>...\n\nUsage: ticketlock run <CONVERSATION_ID> <COMMAND>...\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(message),
            "the following required arguments were not provided: <CONVERSATION_ID> <COMMAND>...; see --help"
        );
        let message = "unexpected argument '--lifetme' found\n\n  tip: a similar argument exists: '--lifetime'\n  tip: to pass '--lifetme' as a value, use '-- --lifetme'\n\nUsage: x\n";
        assert_eq!(
            one_line(message),
            "unexpected argument '--lifetme' found (a similar argument exists: '--lifetime') \
             (to pass '--lifetme' as a value, use '-- --lifetme'); see --help"
        );
    }

    #[test]
    fn coded_errors_keep_their_code_and_others_are_failures() {
        assert_eq!(code_of(&coded(NOT_FOUND, "x")), NOT_FOUND);
        assert_eq!(code_of(&anyhow::anyhow!("plain")), FAILURE);
    }
}
