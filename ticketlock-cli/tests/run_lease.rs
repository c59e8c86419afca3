//! `ticketlock run` when its lease is lost while the command runs: the
//! command is told (SIGTERM, SIGKILL, or not at all with `--on-lost
//! ignore`) and `run` exits 75 or the `-E` status. Also `-n` and `--hold`,
//! which need a store shared between processes.
//!
//! A lease is lost here by removing the record (`ticketlock clear`) while
//! `run` holds it with a one-second lifetime: its next renewal (a third of
//! a lifetime later) finds the ticket gone.

#[path = "support/cli.rs"]
mod cli;

use std::io::{BufRead as _, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use cli::{Proc, Store, text, ticketlock, tl};
use ticketlock_test_support::RedisServer;

/// Waits for a go file (at most 10 s), then says so. Traps SIGTERM.
const TRAPS_TERM: &str = r#"
trap 'echo got-TERM; exit 9' TERM
echo ready
i=0; while [ ! -e "$1" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
echo finished
"#;

/// The lines a reader gives, as they come.
fn lines_of(reader: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn next(lines: &mpsc::Receiver<String>, what: &str) -> String {
    lines
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("no line: {what}: {e}"))
}

struct Holder {
    proc: Proc,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

/// `ticketlock run --lifetime 1 ARGS conv -- sh -c TRAPS_TERM go`, once its
/// command said "ready".
fn hold(url: &str, args: &[&str], go: &std::path::Path) -> Holder {
    let mut proc = Proc::spawn(
        ticketlock()
            .args(["run", "--redis", url, "--lifetime", "1"])
            .args(args)
            .args(["conv", "--", "sh", "-c", TRAPS_TERM, "section"])
            .arg(go)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdout = lines_of(proc.child().stdout.take().unwrap());
    let stderr = lines_of(proc.child().stderr.take().unwrap());
    assert_eq!(next(&stdout, "the command started"), "ready");
    Holder {
        proc,
        stdout,
        stderr,
    }
}

fn clear(url: &str) {
    let out = tl(&["clear", "--redis", url, "conv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

fn rest(lines: &mpsc::Receiver<String>) -> Vec<String> {
    lines.iter().collect()
}

#[test]
fn a_lost_lease_sends_sigterm_to_the_command_and_run_exits_75() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let dir = tempfile::tempdir().unwrap();
    let mut holder = hold(&url, &[], &dir.path().join("go"));
    clear(&url);
    assert_eq!(
        next(&holder.stdout, "the command was signalled"),
        "got-TERM"
    );
    let status = holder.proc.wait_for(Duration::from_secs(10));
    assert_eq!(status.code(), Some(75));
    let stderr = rest(&holder.stderr).join("\n");
    assert!(
        stderr.contains("the lease of conversation \"conv\" (ticket 0) was lost")
            && stderr.contains("sending SIGTERM"),
        "{stderr}"
    );
    assert!(stderr.contains("ended (status 9)"), "{stderr}");
}

#[test]
fn conflict_exit_code_replaces_75_for_a_lost_lease() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let dir = tempfile::tempdir().unwrap();
    let mut holder = hold(&url, &["-E", "42"], &dir.path().join("go"));
    clear(&url);
    assert_eq!(
        next(&holder.stdout, "the command was signalled"),
        "got-TERM"
    );
    assert_eq!(
        holder.proc.wait_for(Duration::from_secs(10)).code(),
        Some(42)
    );
}

#[test]
fn on_lost_ignore_lets_the_command_finish_and_still_exits_75() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let mut holder = hold(&url, &["--on-lost", "ignore"], &go);
    clear(&url);
    let warning = loop {
        let line = next(&holder.stderr, "the loss was reported");
        if line.contains("was lost") {
            break line;
        }
    };
    assert!(
        warning.contains("was lost") && warning.contains("--on-lost ignore"),
        "{warning}"
    );
    // Well past the grace of --on-lost term would have been, had it applied.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&go, "").unwrap();
    assert_eq!(next(&holder.stdout, "the command finished"), "finished");
    assert_eq!(
        holder.proc.wait_for(Duration::from_secs(10)).code(),
        Some(75)
    );
    assert!(rest(&holder.stdout).is_empty());
}

#[test]
fn a_command_that_ignores_sigterm_gets_sigkill_after_the_grace() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let mut proc = Proc::spawn(
        ticketlock()
            .args([
                "run",
                "--redis",
                &url,
                "--lifetime",
                "1",
                "--on-lost-grace",
                "0.2",
            ])
            .args([
                "conv",
                "-c",
                "trap '' TERM; echo ready; i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; echo survived",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdout = lines_of(proc.child().stdout.take().unwrap());
    assert_eq!(next(&stdout, "the command started"), "ready");
    clear(&url);
    let out = proc.output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("sending SIGKILL"), "{stderr}");
    assert!(stderr.contains("ended (status 137)"), "{stderr}");
    assert!(!rest(&stdout).contains(&"survived".to_string()));
}

#[test]
fn nonblock_fails_at_once_on_a_held_lock_with_the_conflict_code() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let store = Store::connect(&url);
    let mut holder = Proc::spawn(
        ticketlock()
            .args(["run", "--redis", &url, "--hold", "conv"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdout = lines_of(holder.child().stdout.take().unwrap());
    let line = next(&stdout, "the holder printed its ticket");
    let token: u64 = line
        .strip_prefix("ticket=0 fencing_token=")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .expect("a fencing token");
    assert!(token > 0);
    assert_eq!(store.live_tickets("conv"), [0]);

    for (args, code) in [(&["-n"][..], 75), (&["--nonblock", "-E", "3"], 3)] {
        let out = ticketlock()
            .args(["run", "--redis", &url])
            .args(args)
            .args(["conv", "--", "echo", "entered"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "it entered");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("is held (-n/--nonblock"), "{stderr}");
    }
    assert_eq!(store.live_tickets("conv"), [0], "-n left a ticket");

    // --hold lets go at SIGTERM, with status 0, and removes its ticket.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(holder.wait_for(Duration::from_secs(10)).code(), Some(0));
    assert_eq!(store.record("conv"), None);
    // A free lock is taken at once, and left free (an acquire timeout of
    // zero must not bound the issue's own round trip).
    for flag in [&["-n"][..], &["--timeout", "0"]] {
        let out = ticketlock()
            .args(["run", "--redis", &url])
            .args(flag)
            .args(["conv", "--", "echo", "entered"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{flag:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "entered\n");
        assert_eq!(store.record("conv"), None, "{flag:?} left a ticket");
    }
}

#[test]
fn a_timeout_leaves_no_ticket_behind_even_when_short() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let store = Store::connect(&url);
    let mut holder = Proc::spawn(
        ticketlock()
            .args(["run", "--redis", &url, "--hold", "conv"])
            .stdout(Stdio::piped()),
    );
    let stdout = lines_of(holder.child().stdout.take().unwrap());
    next(&stdout, "the holder printed its ticket");
    for timeout in ["0.001", "0.01"] {
        let out = tl(&[
            "run",
            "--redis",
            &url,
            "--timeout",
            timeout,
            "conv",
            "--",
            "true",
        ]);
        assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("(--timeout)"), "{stderr}");
        assert_eq!(
            store.live_tickets("conv"),
            [0],
            "--timeout {timeout} left a ticket"
        );
    }
    drop(holder);
}

#[test]
fn hold_exits_with_the_conflict_code_when_its_lease_is_lost() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let mut holder = Proc::spawn(
        ticketlock()
            .args(["run", "--redis", &url, "--lifetime", "1", "--hold", "conv"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdout = lines_of(holder.child().stdout.take().unwrap());
    next(&stdout, "the holder printed its ticket");
    clear(&url);
    let out = holder.output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(75));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("was lost"), "{stderr}");
}

/// A store that stops answering: after a whole lifetime without a renewal
/// the lease has surely ended there, and `run` stops the command then,
/// without waiting for the store to come back.
#[test]
fn a_lifetime_without_a_renewal_counts_as_lost() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0?socket_timeout=0.3", server.url());
    let dir = tempfile::tempdir().unwrap();
    let mut holder = hold(&url, &[], &dir.path().join("go"));
    server.pause();
    let paused = std::time::Instant::now();
    let line = next(&holder.stdout, "the command was signalled");
    let after = paused.elapsed();
    server.resume();
    assert_eq!(line, "got-TERM");
    // Within the lifetime (1 s) of the last renewal that was sent, and no
    // later than one renewal period (1/3 s) plus slack past that.
    assert!(
        after <= Duration::from_millis(1800),
        "signalled {after:?} after the pause"
    );
    assert_eq!(
        holder.proc.wait_for(Duration::from_secs(10)).code(),
        Some(75)
    );
    let stderr = rest(&holder.stderr).join("\n");
    assert!(
        stderr.contains("no renewal reached the store for a whole lifetime (1.0 s)"),
        "{stderr}"
    );
}
