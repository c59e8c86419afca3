//! A ticketlock process and a process using Rasa's lock store share one
//! conversation on one Redis: they take turns, in both directions, and each
//! reads the other's records.
//!
//! The Rasa side is `rasa/rasa_lock_store.py`, a standard-library port of
//! Rasa 3.6's Redis lock store (its logic and record format, step by step).
//! It needs `python3`: without it these tests are skipped with a message,
//! except under `CI=true`, where that is a failure.

#[path = "support/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cli::{Proc, Store, lines, text, ticketlock, tl, wait_until};
use serde_json::Value;
use ticketlock::TicketLock;
use ticketlock_test_support::RedisServer;

const PYTHON: &str = "python3";

/// Whether python3 can be run; panics under CI=true when it cannot.
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

/// The Rasa port against `server`, database 1 (Rasa's default).
fn rasa(server: &RedisServer) -> Command {
    let mut c = Command::new(PYTHON);
    c.arg(port_script())
        .args(["--host", "127.0.0.1", "--port", &server.port().to_string()])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("TICKET_LOCK_LIFETIME")
        .env_remove("TICKETLOCK_REDIS")
        .env_remove("TICKETLOCK_ENDPOINTS")
        .env_remove("TICKETLOCK_REDIS_PASSWORD")
        .env_remove("TICKETLOCK_POSTGRES");
    c
}

/// Runs the Rasa port to completion; panics unless it succeeds.
fn rasa_output(server: &RedisServer, args: &[&str]) -> String {
    let out = rasa(server).args(args).output().expect("run python3");
    assert!(
        out.status.success(),
        "rasa port {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Our URL for Rasa's database: 1 (a URL's default is 0).
fn url(server: &RedisServer) -> String {
    format!("{}/1", server.url())
}

#[derive(Clone, Copy, Debug)]
enum Side {
    Rasa,
    Ours,
}

/// A process holding `conv` for a critical section that logs its entry and
/// exit and waits for `go` before leaving.
fn holder(server: &RedisServer, side: Side, name: &str, dir: &Path, go: &Path) -> Proc {
    let (log, witness) = (dir.join("log"), dir.join("witness"));
    let mut cmd = match side {
        Side::Rasa => {
            // Its ticket lives 30 s (it cannot renew), and it looks every 50 ms.
            let mut c = rasa(server);
            c.args(["hold", "conv", "--name", name, "--lifetime", "30"])
                .args(["--wait-time", "0.05", "--log"])
                .arg(&log)
                .arg("--witness")
                .arg(&witness)
                .arg("--go")
                .arg(go);
            c
        }
        Side::Ours => {
            // A Rasa release publishes nothing: a waiter of ours sees it at
            // its next look, every 100 ms. Lifetime 2 s (renewed): Rasa's
            // unlocked rewrites can put a released ticket of ours back (its
            // defect 2), and it must not block the test for long.
            let mut c = ticketlock();
            c.args(["run", "--redis", &url(server), "--lifetime", "2"])
                .args(["--wait-time", "0.1", "conv", "--", "sh", "-c"])
                .arg(
                    r#"if ! mkdir "$3" 2>/dev/null; then echo "overlap $1" >> "$2"; fi
echo "enter $1 $TICKETLOCK_TICKET" >> "$2"
i=0; while [ ! -e "$4" ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done
rmdir "$3"
echo "exit $1" >> "$2""#,
                )
                .args(["section", name])
                .arg(&log)
                .arg(&witness)
                .arg(go);
            c
        }
    };
    Proc::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()))
}

#[test]
fn rasa_and_ticketlock_processes_take_turns_in_both_directions() {
    if !python_available() {
        return;
    }
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = Store::connect(&url(&server));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let sides = [
        Side::Rasa,
        Side::Ours,
        Side::Rasa,
        Side::Ours,
        Side::Ours,
        Side::Rasa,
        Side::Rasa,
        Side::Ours,
    ];
    let names: Vec<String> = sides
        .iter()
        .enumerate()
        .map(|(i, side)| format!("{side:?}{i}"))
        .collect();
    let go = |i: usize| dir.path().join(format!("go{i}"));

    // Each process is started while the previous one holds, and that one is
    // let go only once the newcomer's ticket is in the record: so every
    // newcomer waits behind a holder of the other side (or its own).
    let mut procs = vec![holder(&server, sides[0], &names[0], dir.path(), &go(0))];
    wait_until(
        &format!("{} entered", names[0]),
        Duration::from_secs(10),
        || {
            lines(&log)
                .iter()
                .any(|l| l.starts_with(&format!("enter {} ", names[0])))
        },
    );
    for i in 1..sides.len() {
        procs.push(holder(&server, sides[i], &names[i], dir.path(), &go(i)));
        wait_until(
            &format!("{} is queued", names[i]),
            Duration::from_secs(10),
            || store.live_tickets("conv").len() == 2,
        );
        std::fs::write(go(i - 1), "").unwrap();
        wait_until(
            &format!("{} entered", names[i]),
            Duration::from_secs(10),
            || {
                lines(&log)
                    .iter()
                    .any(|l| l.starts_with(&format!("enter {} ", names[i])))
            },
        );
    }
    std::fs::write(go(sides.len() - 1), "").unwrap();
    for (p, name) in procs.into_iter().zip(&names) {
        let out = p.output(Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        assert!(out.stderr.is_empty(), "{name}: {}", text(&out.stderr));
    }

    // One at a time, each entering after the previous one's exit.
    let log = lines(&log);
    assert!(
        !log.iter().any(|l| l.starts_with("overlap")),
        "{}",
        log.join("\n")
    );
    let expected: Vec<String> = names
        .iter()
        .flat_map(|n| [format!("enter {n} "), format!("exit {n}")])
        .collect();
    assert_eq!(log.len(), expected.len(), "{}", log.join("\n"));
    for (line, prefix) in log.iter().zip(&expected) {
        assert!(line.starts_with(prefix.as_str()), "{}", log.join("\n"));
    }
    assert_eq!(
        store.record("conv"),
        None,
        "the last one out removes the record"
    );
}

/// `record` without our trailing fields: `epoch`, and `last_issued` when
/// written (only when the queue does not tell it).
fn without_our_fields(raw: &str, lock: &TicketLock) -> String {
    let epoch = format!(", \"epoch\": {}}}", lock.epoch().expect("epoch"));
    let rest = raw
        .strip_suffix(&epoch)
        .unwrap_or_else(|| panic!("{raw:?} does not end with {epoch:?}"));
    let last_issued = lock.last_issued().expect("last_issued");
    let highest = lock.tickets().map(|t| t.number).max();
    let field = format!(", \"last_issued\": {last_issued}");
    let rasa = if highest.is_some_and(|h| h >= last_issued) {
        assert!(
            !rest.ends_with(&field),
            "{raw:?} repeats the queue's last_issued"
        );
        rest
    } else {
        rest.strip_suffix(&field)
            .unwrap_or_else(|| panic!("{raw:?} does not end with {field:?}"))
    };
    format!("{rasa}}}")
}

#[test]
fn our_records_are_what_rasa_writes_byte_for_byte() {
    if !python_available() {
        return;
    }
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = Store::connect(&url(&server));
    // Ids that Python escapes: quotes, backslash, control characters,
    // non-ASCII (as \u escapes, surrogate pairs beyond the BMP), `/`.
    let ids = [
        "c1",
        "say \"hi\" \\ back/slash",
        "line\nbreak\ttab\u{1}",
        "é中😀",
        "*?[x]:{}",
    ];
    for id in ids {
        // Three tickets, one released: lifetimes with fractions, so that
        // `expires` needs Python's float repr.
        let lock_store = store.lock_store();
        let numbers: Vec<u64> = (0..3)
            .map(|i| {
                store
                    .block_on(
                        lock_store.issue_ticket(id, Some(Duration::from_micros(30_123_457 + i))),
                    )
                    .expect("issue a ticket")
            })
            .collect();
        store
            .block_on(lock_store.finish_serving(id, numbers[1]))
            .expect("release a ticket");
        let raw = String::from_utf8(store.raw(id).expect("a record")).unwrap();
        let ours = TicketLock::from_json(raw.as_bytes()).unwrap();
        assert_eq!(ours.tickets().len(), 2, "{raw}");

        // Python reads it (json.loads + TicketLock.from_dict) and writes it
        // back (TicketLock.dumps): the same bytes, but for our two fields.
        let python = rasa_output(&server, &["roundtrip", id]);
        assert_eq!(python, without_our_fields(&raw, &ours), "id {id:?}");
    }
}

#[test]
fn records_written_by_rasa_read_back_exactly() {
    if !python_available() {
        return;
    }
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = Store::connect(&url(&server));
    // Written by Rasa's save_lock: an expired ticket, then two live ones.
    rasa_output(
        &server,
        &[
            "write",
            "é\"1",
            "4:1000000000.123",
            "5:4102444800.7471275",
            "6:4102444801.0",
        ],
    );
    let expected = r#"{"conversation_id": "\u00e9\"1", "tickets": ["{\"number\": 4, \"expires\": 1000000000.123}", "{\"number\": 5, \"expires\": 4102444800.7471275}", "{\"number\": 6, \"expires\": 4102444801.0}"]}"#;
    let raw = String::from_utf8(store.raw("é\"1").expect("Rasa's record")).unwrap();
    assert_eq!(raw, expected);
    // Our reader takes it, and our writer would write the same bytes.
    let lock = TicketLock::from_json(raw.as_bytes()).unwrap();
    assert_eq!(lock.dumps(), raw);

    let out = tl(&["inspect", "--redis", &url(&server), "é\"1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["conversation_id"], "é\"1");
    assert_eq!(v["raw"], expected);
    assert_eq!(v["now_serving"], 5);
    assert_eq!(v["last_issued"], 6);
    assert_eq!(v["epoch"], Value::Null);
    let tickets: Vec<(u64, f64, &str)> = v["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["number"].as_u64().unwrap(),
                t["expires"].as_f64().unwrap(),
                t["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tickets,
        [
            (4, 1_000_000_000.123, "expired"),
            (5, 4_102_444_800.747_127_5, "serving"),
            (6, 4_102_444_801.0, "waiting")
        ]
    );

    // A ticket we issue into Rasa's record follows Rasa's numbering, and
    // Rasa's next ticket follows ours.
    let ours = store
        .block_on(store.lock_store().issue_ticket("é\"1", None))
        .unwrap();
    assert_eq!(ours, 7);
    let theirs = rasa_output(&server, &["issue", "é\"1", "--lifetime", "60"]);
    assert_eq!(theirs.trim(), "8");
    let record = store.record("é\"1").unwrap();
    let numbers: Vec<u64> = record.tickets().map(|t| t.number).collect();
    assert_eq!(numbers, [5, 6, 7, 8], "Rasa dropped the expired ticket 4");
}
