//! A mixed fleet on one conversation: three `ticketlock run` loops and one
//! process using Rasa's lock store (polling every 20 ms) take turns as
//! fast as they can.
//!
//! Rasa rewrites the whole record from what it read (GET, change, SET), so
//! its stale writes drop tickets of ours or bring released ones back. Our
//! scripts keep our own queue beside the record and repair it: two of our
//! sections never overlap and none of ours fails. Overlaps that involve
//! the Rasa process cannot be prevented from our side; they are counted
//! and printed, not asserted (RELIABILITY.md, "Mixed fleets").
//!
//! The Rasa side is `rasa/rasa_lock_store.py` (see `rasa_interop.rs`). It
//! needs `python3`: without it the test is skipped with a message, except
//! under `CI=true`, where that is a failure.

#[path = "support/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use cli::{Proc, lines, text, ticketlock};
use ticketlock_test_support::RedisServer;

const PYTHON: &str = "python3";

/// Sections each of our processes runs.
const TURNS: usize = 20;
const OURS: usize = 3;

fn python_available() -> bool {
    let found = Command::new(PYTHON)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("python3 is not installed, and CI=true makes that a failure: install python3");
        }
        eprintln!("skipping: python3 not installed (needed to run the Rasa lock store port)");
    }
    found
}

fn port_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rasa/rasa_lock_store.py")
}

/// One section: from its entry to its exit, in ns since the epoch (one
/// clock for every process of the test).
#[derive(Debug, Clone)]
struct Section {
    who: String,
    enter: u128,
    exit: u128,
}

impl Section {
    fn rasa(&self) -> bool {
        self.who.starts_with("rasa")
    }
}

/// The sections of the log: `enter WHO ... NS` then `exit WHO NS`.
fn sections(log: &[String]) -> Vec<Section> {
    let mut open: Vec<(String, u128)> = Vec::new();
    let mut done = Vec::new();
    for line in log {
        let words: Vec<&str> = line.split(' ').collect();
        match words[..] {
            ["enter", who, .., ns] => open.push((who.to_owned(), ns.parse().unwrap())),
            ["exit", who, ns] => {
                let i = open
                    .iter()
                    .position(|(w, _)| w == who)
                    .unwrap_or_else(|| panic!("exit without entry: {line}"));
                let (who, enter) = open.remove(i);
                done.push(Section {
                    who,
                    enter,
                    exit: ns.parse().unwrap(),
                });
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "sections never left: {open:?}");
    done
}

/// The pairs of sections of different processes that were inside together.
fn overlaps(sections: &[Section]) -> Vec<(Section, Section)> {
    let mut found = Vec::new();
    for (i, a) in sections.iter().enumerate() {
        for b in &sections[i + 1..] {
            if a.who != b.who && a.enter < b.exit && b.enter < a.exit {
                found.push((a.clone(), b.clone()));
            }
        }
    }
    found
}

#[test]
fn three_of_ours_and_a_rasa_process_polling_every_20_ms_never_overlap_among_ours() {
    if !python_available() {
        return;
    }
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let stop = dir.path().join("stop");
    // Rasa's database (1). Its tickets live 10 s: it cannot renew.
    let url = format!("{}/1", server.url());
    let rasa = Proc::spawn(
        Command::new(PYTHON)
            .arg(port_script())
            .args(["--host", "127.0.0.1", "--port", &server.port().to_string()])
            .args(["turns", "conv", "--name", "rasa", "--lifetime", "10"])
            .args(["--wait-time", "0.02", "--inside", "0.01", "--log"])
            .arg(&log)
            .arg("--stop")
            .arg(&stop)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("TICKET_LOCK_LIFETIME")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );

    // Each of ours: `ticketlock run` TURNS times in a row. A Rasa release
    // publishes nothing, so our waiters look every 50 ms too.
    let ours: Vec<_> = (0..OURS)
        .map(|p| {
            let (url, log) = (url.clone(), log.clone());
            thread::spawn(move || {
                let (mut failed, mut repairs) = (Vec::new(), 0);
                for turn in 0..TURNS {
                    let out = Proc::spawn(
                        ticketlock()
                            .args(["run", "--redis", &url, "--lifetime", "3"])
                            .args(["--wait-time", "0.05", "--timeout", "20", "conv"])
                            .args(["--", "sh", "-c"])
                            .arg(
                                r#"echo "enter $1 $TICKETLOCK_TICKET $(date +%s%N)" >> "$2"
sleep 0.01
echo "exit $1 $(date +%s%N)" >> "$2""#,
                            )
                            .args(["section", &format!("ours{p}")])
                            .arg(&log)
                            .env("RUST_LOG", "ticketlock=warn")
                            .stdout(Stdio::piped())
                            .stderr(Stdio::piped()),
                    )
                    .output(Duration::from_secs(30));
                    repairs += text(&out.stderr)
                        .matches("repaired it from our own queue")
                        .count();
                    if out.status.code() != Some(0) {
                        failed.push(format!(
                            "ours{p} turn {turn}: {:?} {}",
                            out.status.code(),
                            text(&out.stderr).trim()
                        ));
                    }
                }
                (failed, repairs)
            })
        })
        .collect();
    let (mut failed, mut repairs) = (Vec::new(), 0);
    for t in ours {
        let (f, r) = t.join().expect("a driver thread");
        failed.extend(f);
        repairs += r;
    }
    std::fs::write(&stop, "").unwrap();
    let out = rasa.output(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "rasa: {}", text(&out.stderr));

    let log = lines(&log);
    let sections = sections(&log);
    let overlaps = overlaps(&sections);
    let (mixed, among_ours): (Vec<_>, Vec<_>) =
        overlaps.iter().partition(|(a, b)| a.rasa() || b.rasa());
    let ours_done = sections.iter().filter(|s| !s.rasa()).count();
    let rasa_done = sections.iter().filter(|s| s.rasa()).count();
    let rasa_failed = log.iter().filter(|l| l.starts_with("failed rasa")).count();
    // Recorded, not asserted: what the Rasa process did to us.
    eprintln!(
        "mixed fleet: {ours_done} sections of ours, {rasa_done} of Rasa ({rasa_failed} Rasa \
         LockErrors); records repaired {repairs} times; overlaps among ours {}, involving Rasa {}",
        among_ours.len(),
        mixed.len()
    );
    assert!(
        among_ours.is_empty(),
        "two of ours inside together: {among_ours:#?}\n{}",
        log.join("\n")
    );
    assert!(failed.is_empty(), "sections of ours failed: {failed:#?}");
    assert_eq!(ours_done, OURS * TURNS, "{}", log.join("\n"));
    assert!(
        rasa_done > 0,
        "the Rasa process never entered: {}",
        log.join("\n")
    );
}
