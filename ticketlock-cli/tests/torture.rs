//! The torture scenarios: `ticketlock torture` (P processes × T tasks on K
//! conversations) against a `redis-server` of the test's own, with faults
//! injected by the test (Redis killed and restarted, stalled, connections
//! dropped) or by the torture itself (workers killed, sections outliving
//! their lease). Each scenario asserts what is guaranteed under its fault;
//! the torture's checker asserts the rest (no overlap, ticket order,
//! fencing, every message once, bounded waits, recovery, no panic).
//!
//! Short forms run in the default `cargo test`, one at a time, a few
//! seconds each. Long forms and repetitions, by environment:
//! - `TICKETLOCK_TORTURE_SECS=60`: each run lasts 60 s (faults scale);
//! - `TICKETLOCK_TORTURE_RUNS=10`: each scenario runs 10 times;
//! - `TICKETLOCK_TORTURE_FIGURES=FILE`: each run appends its figures to
//!   FILE as one JSON line (`scenario`, `run`, `faults_by_test`, `report`).
//!
//! e.g. `TICKETLOCK_TORTURE_RUNS=10 TICKETLOCK_TORTURE_FIGURES=/tmp/f.jsonl
//! cargo test -p ticketlock-cli --test torture -- --test-threads 1`.

use std::fs::{File, OpenOptions};
use std::future::IntoFuture as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use ticketlock::{Error, LockStore, LockStoreConfig};
use ticketlock_test_support::{FaultProxy, RedisOptions, RedisServer};

/// One torture at a time: they share two cores, and their timing bounds
/// assume the machine is not running four of them at once.
static SERIAL: Mutex<()> = Mutex::new(());

const TASKS: u64 = 4;

macro_rules! server {
    ($options:expr) => {
        match RedisServer::start_with($options) {
            Some(s) => s,
            None => return,
        }
    };
}

/// CLOCK_MONOTONIC in ns: the torture's clock, for the fault log.
fn now_ns() -> u64 {
    let ts =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

fn env_number(name: &str) -> Option<f64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// Runs `body` on a new server (given the run's duration in seconds) once,
/// or TICKETLOCK_TORTURE_RUNS times, one torture at a time; records
/// figures. Skips when redis-server is not installed (outside CI).
fn scenario(
    name: &str,
    short_secs: f64,
    options: RedisOptions,
    mut body: impl FnMut(&mut RedisServer, f64) -> Outcome,
) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let secs = env_number("TICKETLOCK_TORTURE_SECS").unwrap_or(short_secs);
    let runs = env_number("TICKETLOCK_TORTURE_RUNS").map_or(1, |n| n as u32);
    for run in 0..runs {
        let Some(mut server) = RedisServer::start_with(options.clone()) else {
            return;
        };
        let outcome = body(&mut server, secs);
        let line = serde_json::json!({
            "scenario": name,
            "run": run,
            "faults_by_test": outcome.faults,
            "report": outcome.report,
        });
        eprintln!("torture figures: {line}");
        if let Ok(path) = std::env::var("TICKETLOCK_TORTURE_FIGURES") {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            writeln!(f, "{line}").unwrap();
        }
    }
}

/// What one run gave: its report and the faults the test injected.
struct Outcome {
    report: Value,
    faults: u64,
}

/// A torture run in progress.
struct Torture {
    child: Child,
    fault_log: File,
    fault_path: PathBuf,
    started: Instant,
    secs: f64,
    faults: u64,
}

impl Torture {
    /// Starts `ticketlock torture --json` on `server` for `secs` seconds;
    /// `query` is added to the URL (e.g. `socket_timeout=0.5`).
    fn start(server: &RedisServer, query: &str, secs: f64, args: &[&str]) -> Torture {
        Torture::start_on(server, &server.url(), query, secs, args)
    }

    /// [`Torture::start`] with the workers connecting to `base` (e.g. a
    /// proxy in front of `server`).
    fn start_on(
        server: &RedisServer,
        base: &str,
        query: &str,
        secs: f64,
        args: &[&str],
    ) -> Torture {
        let fault_path = server.dir().join(format!("faults-{}", now_ns()));
        let fault_log = File::create(&fault_path).unwrap();
        let url = format!("{base}/0?key_prefix=torture&{query}");
        let child = Command::new(env!("CARGO_BIN_EXE_ticketlock"))
            .arg("torture")
            .args(["--redis", &url, "--json", "--tasks", &TASKS.to_string()])
            .args(["--duration", &secs.to_string()])
            // Twice the default allowance per hand-over: the machine running
            // the tests may be busy with other work.
            .args(["--stall-slack", "1"])
            .arg("--fault-log")
            .arg(&fault_path)
            .args(args)
            .env_remove("TICKET_LOCK_LIFETIME")
            .env_remove("TICKETLOCK_REDIS")
            .env_remove("TICKETLOCK_ENDPOINTS")
            .env_remove("TICKETLOCK_REDIS_PASSWORD")
            .env_remove("TICKETLOCK_POSTGRES")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ticketlock torture");
        Torture {
            child,
            fault_log,
            fault_path,
            started: Instant::now(),
            secs,
            faults: 0,
        }
    }

    /// Notes a fault event in the torture's fault log.
    fn mark(&mut self, what: &str, name: &str) {
        writeln!(self.fault_log, "{} {what} {name}", now_ns()).unwrap();
        self.fault_log.flush().unwrap();
    }

    /// Seconds since the start.
    fn at(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Sleeps until `secs` after the start.
    fn sleep_until(&self, secs: f64) {
        let left = secs - self.at();
        if left > 0.0 {
            thread::sleep(Duration::from_secs_f64(left));
        }
    }

    /// Waits for the report; the exit status must agree with its verdict.
    fn finish(self, server: &RedisServer) -> Outcome {
        let limit = Duration::from_secs_f64(self.secs + 90.0);
        let pid = self.child.id();
        let (tx, rx) = mpsc::channel();
        let child = self.child;
        thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(limit) {
            Ok(out) => out.expect("wait for ticketlock torture"),
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!("the torture did not finish within {limit:?}");
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "no JSON report ({e}); status {:?}\nstdout: {stdout}\nstderr: {stderr}\n\
                 redis log:\n{}",
                out.status,
                server.log()
            )
        });
        let verified = report["verified"] == true;
        assert_eq!(
            out.status.code(),
            Some(if verified { 0 } else { 1 }),
            "{stderr}"
        );
        let _ = std::fs::remove_file(&self.fault_path);
        Outcome {
            report,
            faults: self.faults,
        }
    }
}

fn n(report: &Value, path: &str) -> u64 {
    let mut v = report;
    for key in path.split('.') {
        v = &v[key];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{path} is not a count in {report}"))
}

fn f(report: &Value, path: &str) -> f64 {
    let mut v = report;
    for key in path.split('.') {
        v = &v[key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {report}"))
}

/// How many calls failed with `unavailable`: lock attempts (retried) and
/// releases.
fn unavailable_seen(report: &Value) -> u64 {
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    count(&report["retries"]["unavailable"])
        + count(&report["failed"]["unavailable"])
        + count(&report["leases"]["release_errors"]["unavailable"])
}

fn total(report: &Value, map: &str) -> u64 {
    report[map]
        .as_object()
        .unwrap_or_else(|| panic!("{map} is not a map in {report}"))
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

/// What holds under every fault: the checker found nothing (no
/// unexplained overlap, ticket order, fencing, every message once or
/// reported, bounded waits, recovery), nothing panicked or crashed, and
/// real work was done (a floor far below what a busy two-core machine
/// does: throughput is not what these tests are about).
fn assert_sound(report: &Value, min_sections: u64) {
    assert!(
        report["verified"] == true,
        "violations: {:#}",
        report["first_violations"]
    );
    for zero in [
        "panics",
        "crashed_workers",
        "hung_workers",
        "garbled_lines",
        "silent_losses",
        "duplicates",
        "order_violations",
        "fencing_violations",
        "overlaps.unexplained",
        "downstream.rejected_while_held",
        "stalls.over_bound",
        "recovery.not_recovered",
    ] {
        assert_eq!(n(report, zero), 0, "{zero}: {report}");
    }
    assert!(
        n(report, "sections") >= min_sections,
        "only {} sections: {report}",
        n(report, "sections")
    );
    // Only a killed worker leaves a section it entered unfinished.
    assert!(
        n(report, "sections") - n(report, "handled") <= n(report, "lost_with_killed_processes"),
        "{report}"
    );
}

/// Every message of the run was handled: no failure, no retry, no overlap.
fn assert_exact(report: &Value) {
    assert_eq!(total(report, "failed"), 0, "{report}");
    assert_eq!(n(report, "messages"), n(report, "handled"), "{report}");
    assert_eq!(n(report, "overlaps.witness"), 0, "{report}");
    assert_eq!(n(report, "overlaps.intervals"), 0, "{report}");
    assert_eq!(n(report, "leases.lost_at_release"), 0, "{report}");
    assert_eq!(n(report, "downstream.rejected"), 0, "{report}");
}

#[test]
fn no_faults_every_message_once_in_ticket_order() {
    scenario("no_faults", 3.0, RedisOptions::default(), |server, secs| {
        let run = Torture::start(server, "socket_timeout=1", secs, &[]);
        let outcome = run.finish(server);
        let r = &outcome.report;
        assert_sound(r, (secs * 20.0) as u64);
        assert_exact(r);
        assert_eq!(total(r, "retries"), 0, "{r}");
        assert_eq!(n(r, "workers"), 3);
        // A verified run with nothing given up leaves no files behind.
        assert!(r["dir"].is_null(), "{r}");
        outcome
    });
}

/// Messages given up (here: one attempt each, with a 20 ms acquire timeout
/// behind 50 ms sections) are an outcome the checker accepts, but the run's
/// directory is kept for a post-mortem, its events naming every failure.
#[test]
fn messages_given_up_keep_the_runs_files() {
    scenario("given_up", 1.5, RedisOptions::default(), |server, secs| {
        let run = Torture::start(
            server,
            "socket_timeout=1",
            secs,
            &[
                "--conversations",
                "1",
                "--acquire-timeout",
                "0.02",
                "--max-attempts",
                "1",
                "--work-min-ms",
                "50",
                "--work-max-ms",
                "60",
            ],
        );
        let outcome = run.finish(server);
        let r = &outcome.report;
        assert_eq!(r["verified"], true, "{r}");
        let failed = n(r, "failed.timeout");
        assert!(failed > 0, "{r}");
        let dir = PathBuf::from(r["dir"].as_str().unwrap_or_else(|| panic!("no dir: {r}")));
        let events = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
        let fails = events
            .lines()
            .filter(|l| l.contains(r#""e":"fail""#) && l.contains(r#""kind":"timeout""#))
            .count() as u64;
        assert_eq!(fails, failed, "{r}");
        std::fs::remove_dir_all(&dir).unwrap();
        outcome
    });
}

/// (a) Workers killed with SIGKILL at random moments, half of them inside
/// a section: their unfinished messages are lost with them (at most one per
/// task), everybody else's are exact, and no conversation stays blocked
/// longer than a lifetime after the last death (checked per stall).
#[test]
fn sigkill_of_holders_and_waiters() {
    scenario("sigkill", 4.0, RedisOptions::default(), |server, secs| {
        let kills = (secs as u64).max(4);
        let run = Torture::start(
            server,
            "socket_timeout=1",
            secs,
            &[
                "--kills",
                &kills.to_string(),
                "--work-min-ms",
                "2",
                "--work-max-ms",
                "20",
            ],
        );
        let outcome = run.finish(server);
        let r = &outcome.report;
        assert_sound(r, (secs * 10.0) as u64);
        assert_eq!(n(r, "kills.total"), kills, "{r}");
        assert!(n(r, "kills.holders") >= 1, "no holder was killed: {r}");
        assert!(n(r, "lost_with_killed_processes") <= kills * TASKS, "{r}");
        // Survivors: nothing failed, nothing was retried, nothing overlapped.
        assert_eq!(total(r, "failed"), 0, "{r}");
        assert_eq!(total(r, "retries"), 0, "{r}");
        assert_eq!(
            n(r, "overlaps.witness") + n(r, "overlaps.intervals"),
            0,
            "{r}"
        );
        assert_eq!(n(r, "workers"), 3 + kills, "each victim is replaced");
        // Blocked at most a lifetime (1 s) and a hand-over after a death.
        assert!(f(r, "stalls.max_after_death_us") < 1_500_000.0, "{r}");
        outcome
    });
}

/// The native layout (`?layout=native`), no faults: every message once,
/// in ticket order, no overlap.
#[test]
fn native_layout_no_faults_every_message_once_in_ticket_order() {
    scenario(
        "native_no_faults",
        3.0,
        RedisOptions::default(),
        |server, secs| {
            let run = Torture::start(server, "socket_timeout=1&layout=native", secs, &[]);
            let outcome = run.finish(server);
            let r = &outcome.report;
            assert_sound(r, (secs * 20.0) as u64);
            assert_exact(r);
            assert_eq!(total(r, "retries"), 0, "{r}");
            outcome
        },
    );
}

/// The native layout with holders and waiters killed: a killed holder
/// blocks at most its lifetime, a killed waiter at most the shorter of its
/// lifetime and the claim window of the grant pushed to nobody, and the
/// survivors see no overlap and no failure.
#[test]
fn native_layout_sigkill_of_holders_and_waiters() {
    scenario(
        "native_sigkill",
        4.0,
        RedisOptions::default(),
        |server, secs| {
            let kills = (secs as u64).max(4);
            let run = Torture::start(
                server,
                "socket_timeout=1&layout=native",
                secs,
                &[
                    "--kills",
                    &kills.to_string(),
                    "--work-min-ms",
                    "2",
                    "--work-max-ms",
                    "20",
                ],
            );
            let outcome = run.finish(server);
            let r = &outcome.report;
            assert_sound(r, (secs * 10.0) as u64);
            assert_eq!(n(r, "kills.total"), kills, "{r}");
            assert_eq!(total(r, "failed"), 0, "{r}");
            assert_eq!(
                n(r, "overlaps.witness") + n(r, "overlaps.intervals"),
                0,
                "{r}"
            );
            assert_eq!(n(r, "workers"), 3 + kills, "each victim is replaced");
            // A provisional grant lasts at most the lifetime (1 s) too.
            assert!(f(r, "stalls.max_after_death_us") < 1_500_000.0, "{r}");
            outcome
        },
    );
}

/// Kills Redis and restarts it on the same port every ~1.3 s of the run.
fn restart_redis_repeatedly(run: &mut Torture, server: &mut RedisServer, data_loss: bool) {
    let mut at = 0.8;
    while at + 1.5 < run.secs {
        run.sleep_until(at);
        run.mark("begin", "redis-down");
        run.faults += 1;
        server.kill();
        if data_loss {
            run.mark("at", "data-loss");
        }
        thread::sleep(Duration::from_millis(250));
        server.restart();
        run.mark("end", "redis-down");
        at = run.at() + 1.3;
    }
}

/// Long sections (50-600 ms, lifetime 2 s), so that holders are in the
/// middle of their work when Redis goes away and comes back.
const STRADDLING: [&str; 6] = [
    "--lifetime",
    "2",
    "--work-min-ms",
    "50",
    "--work-max-ms",
    "600",
];

/// (b) Redis killed and restarted without persistence: the records are
/// gone. Clients get `unavailable` and recover in the same process; ticket
/// order and fencing tokens keep increasing (a new record's epoch is the
/// server time). Exclusion can break for a holder whose record vanished
/// while it was inside: such overlaps are measured (explained by data
/// loss, never within one record), and the stale holder's downstream write
/// is refused when the new holder wrote first.
#[test]
fn redis_restart_without_persistence() {
    scenario(
        "redis_restart_no_persistence",
        4.0,
        RedisOptions::default(),
        |server, secs| {
            let mut run = Torture::start(server, "socket_timeout=0.5", secs, &STRADDLING);
            restart_redis_repeatedly(&mut run, server, true);
            let outcome = run.finish(server);
            let r = &outcome.report;
            assert_sound(r, (secs * 2.0) as u64);
            // Calls are retried on fresh connections within a socket
            // timeout, which usually spans the restart: clients rarely see
            // `unavailable` at all.
            assert_eq!(total(r, "failed"), 0, "every message recovered: {r}");
            assert_eq!(n(r, "workers"), 3, "no process was restarted");
            assert!(n(r, "recovery.checked") >= 3, "{r}");
            assert_eq!(n(r, "injected.data-loss"), outcome.faults, "{r}");
            // Every holder inside at a data loss learns it at its release
            // (the call is retried on a fresh connection until Redis
            // answers): expired, never a bare unavailable.
            assert!(n(r, "sections_across_faults") > 0, "no holder inside: {r}");
            assert!(n(r, "leases.lost_at_release") > 0, "{r}");
            assert_eq!(total(&r["leases"], "release_errors"), 0, "{r}");
            // Overlaps only across the data loss (the checker refuses others);
            // a refused downstream write only from a holder that lost its lease.
            assert_eq!(n(r, "overlaps.explained_by_lease_overrun"), 0, "{r}");
            outcome
        },
    );
}

/// (b) The same with `appendonly yes` (fsync always): the records survive,
/// so nothing overlaps, although holders were inside when Redis died;
/// clients get `unavailable` while it is down and recover in the same
/// process.
#[test]
fn redis_restart_with_persistence() {
    let options = RedisOptions {
        appendonly: true,
        ..Default::default()
    };
    scenario("redis_restart_appendonly", 4.0, options, |server, secs| {
        let mut run = Torture::start(server, "socket_timeout=0.5", secs, &STRADDLING);
        restart_redis_repeatedly(&mut run, server, false);
        let outcome = run.finish(server);
        let r = &outcome.report;
        assert_sound(r, (secs * 2.0) as u64);
        assert_eq!(total(r, "failed"), 0, "{r}");
        // The records survived: every release found its ticket.
        assert_eq!(n(r, "leases.lost_at_release"), 0, "{r}");
        assert!(
            n(r, "sections_across_faults") > 0,
            "no holder was inside at a restart: {r}"
        );
        assert_eq!(
            n(r, "overlaps.witness") + n(r, "overlaps.intervals"),
            0,
            "{r}"
        );
        assert_eq!(n(r, "downstream.rejected"), 0, "{r}");
        assert_eq!(n(r, "workers"), 3);
        assert!(n(r, "recovery.checked") >= 3, "{r}");
        outcome
    });
}

/// (c) Redis stalled (SIGSTOP) for 2.5 socket timeouts, then resumed:
/// calls fail with `unavailable` within the socket timeout, nothing
/// overlaps, and every process recovers by itself.
#[test]
fn redis_stalled_past_the_socket_timeout() {
    scenario(
        "redis_stall",
        4.0,
        RedisOptions::default(),
        |server, secs| {
            let mut run = Torture::start(server, "socket_timeout=0.5", secs, &[]);
            let mut at = 0.8;
            while at + 2.0 < run.secs {
                run.sleep_until(at);
                run.mark("begin", "redis-stop");
                run.faults += 1;
                server.pause();
                thread::sleep(Duration::from_millis(1250));
                server.resume();
                run.mark("end", "redis-stop");
                // Time to recover (a lifetime, a socket timeout) before the
                // next stall, so that each recovery is seen on its own.
                at = run.at() + 2.0;
            }
            let outcome = run.finish(server);
            let r = &outcome.report;
            assert_sound(r, (secs * 10.0) as u64);
            assert!(unavailable_seen(r) > 0, "no client saw the stall: {r}");
            assert_eq!(total(r, "failed"), 0, "{r}");
            assert_eq!(
                n(r, "overlaps.witness") + n(r, "overlaps.intervals"),
                0,
                "{r}"
            );
            assert!(n(r, "recovery.checked") >= 3, "{r}");
            outcome
        },
    );
}

/// (d) The server drops every client connection (CLIENT KILL TYPE normal,
/// then TYPE pubsub), again and again: commands in flight are retried on a
/// fresh connection, wake-ups lost with the subscription are made up for,
/// and nothing overlaps or fails.
#[test]
fn client_connections_dropped_by_the_server() {
    scenario(
        "client_kill",
        3.0,
        RedisOptions::default(),
        |server, secs| {
            let mut run = Torture::start(server, "socket_timeout=0.5", secs, &[]);
            let mut at = 0.5;
            let mut kind = 0;
            while at + 1.0 < run.secs {
                run.sleep_until(at);
                let name = ["normal", "pubsub"][kind % 2];
                run.mark("at", &format!("client-kill-{name}"));
                run.faults += 1;
                let killed = server.cli(&["CLIENT", "KILL", "TYPE", name]);
                assert!(killed.parse::<u64>().is_ok(), "CLIENT KILL said {killed:?}");
                kind += 1;
                at += 0.3;
            }
            let outcome = run.finish(server);
            let r = &outcome.report;
            assert_sound(r, (secs * 10.0) as u64);
            assert_eq!(total(r, "failed"), 0, "{r}");
            assert_eq!(
                n(r, "overlaps.witness") + n(r, "overlaps.intervals"),
                0,
                "{r}"
            );
            assert!(n(r, "injected.client-kill-pubsub") >= 1, "{r}");
            outcome
        },
    );
}

/// Sections of 20 ms (lifetime 3 s, socket timeout 1 s) on 3
/// conversations, as in issue 9's measurement.
const SHORT_SECTIONS: [&str; 8] = [
    "--lifetime",
    "3",
    "--work-min-ms",
    "20",
    "--work-max-ms",
    "20",
    "--conversations",
    "3",
];

/// Checks issue 9's figures under connection faults: nothing failed or was
/// lost (every message handled once), no release failed but at most
/// `unavailable_releases` with `Unavailable` (a link slow enough that a
/// fresh connection and the requests queued on it outlast the retry
/// window), at least 95% of the messages entered on their first try, and
/// no conversation stalled longer than one socket timeout plus one retry
/// (another socket timeout) and a hand-over (0.5 s).
fn assert_connection_faults_absorbed(r: &Value, socket_timeout_s: f64, unavailable_releases: u64) {
    let errors = total(&r["leases"], "release_errors");
    let unavailable = r["leases"]["release_errors"]["unavailable"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(errors, unavailable, "only Unavailable: {r}");
    assert!(unavailable <= unavailable_releases, "{r}");
    assert_eq!(total(r, "failed"), 0, "{r}");
    assert_eq!(n(r, "messages"), n(r, "handled"), "{r}");
    assert_eq!(
        n(r, "overlaps.witness") + n(r, "overlaps.intervals"),
        0,
        "{r}"
    );
    assert_eq!(n(r, "leases.lost_at_release"), 0, "{r}");
    let retried = total(r, "retries");
    assert!(
        retried * 20 <= n(r, "messages"),
        "{retried} retries for {} messages: fewer than 95% on the first try: {r}",
        n(r, "messages")
    );
    let bound = 2_000_000.0 * socket_timeout_s + 500_000.0;
    assert!(f(r, "stalls.max_us") < bound, "stall over {bound} us: {r}");
}

/// (d') Every client connection killed every 0.2-0.3 s (CLIENT KILL TYPE
/// normal; pub/sub connections too): calls whose connection died are
/// retried on a fresh one and answer what their first attempt did, so
/// sections complete on their first try.
#[test]
fn connections_killed_every_quarter_second() {
    scenario(
        "client_kill_quarter_second",
        4.0,
        RedisOptions::default(),
        |server, secs| {
            let mut run = Torture::start(server, "socket_timeout=1", secs, &SHORT_SECTIONS);
            let mut at = 0.4;
            let mut i = 0u32;
            while at + 0.5 < run.secs {
                run.sleep_until(at);
                run.mark("at", "client-kill-normal");
                run.faults += 1;
                let killed = server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
                assert!(killed.parse::<u64>().is_ok(), "CLIENT KILL said {killed:?}");
                if i % 4 == 3 {
                    server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
                }
                i += 1;
                at = run.at() + 0.2 + f64::from(i * 37 % 100) / 1000.0;
            }
            let outcome = run.finish(server);
            let r = &outcome.report;
            assert_sound(r, (secs * 10.0) as u64);
            assert_connection_faults_absorbed(r, 1.0, 0);
            assert!(n(r, "injected.client-kill-normal") >= 8, "{r}");
            outcome
        },
    );
}

/// (f) The workers reach Redis through a proxy that adds 50-200 ms to
/// every request and drops a connection (one of the workers' command or
/// pub/sub connections, at random) every 0.3-0.6 s.
#[test]
fn a_slow_proxy_that_drops_connections() {
    scenario(
        "proxy_latency_and_drops",
        5.0,
        RedisOptions::default(),
        |server, secs| {
            let proxy = FaultProxy::start(server.port());
            proxy.set_latency(Duration::from_millis(50), Duration::from_millis(200));
            let base = format!("redis://127.0.0.1:{}", proxy.port());
            let mut run =
                Torture::start_on(server, &base, "socket_timeout=1", secs, &SHORT_SECTIONS);
            let mut at = 0.6;
            let mut i = 0u32;
            while at + 0.6 < run.secs {
                run.sleep_until(at);
                run.mark("at", "proxy-drop");
                run.faults += 1;
                proxy.drop_one_connection();
                i += 1;
                at = run.at() + 0.3 + f64::from(i * 71 % 300) / 1000.0;
            }
            let outcome = run.finish(server);
            let r = &outcome.report;
            assert_sound(r, (secs * 2.0) as u64);
            // At most one release in ten sections `Unavailable`.
            assert_connection_faults_absorbed(r, 1.0, n(r, "sections") / 10);
            assert!(proxy.counts().0 >= 5, "{:?}", proxy.counts());
            outcome
        },
    );
}

/// (e) Sections that run 1.5 lifetimes without renewing: each one's guard
/// learns it lost the lock (is_held false, renew and release `expired`);
/// the holders that enter after its lease ran out overlap it (explained by
/// the overrun, never earlier than a lifetime after it entered), and the
/// downstream store refuses its write when a newer holder wrote first.
#[test]
fn holders_past_their_lifetime_are_told_and_fenced() {
    scenario(
        "lease_overrun",
        3.0,
        RedisOptions::default(),
        |server, secs| {
            let run = Torture::start(
                server,
                "socket_timeout=1",
                secs,
                &["--overrun-percent", "5", "--lifetime", "0.5"],
            );
            let outcome = run.finish(server);
            let r = &outcome.report;
            assert_sound(r, (secs * 10.0) as u64);
            let overruns = n(r, "leases.overruns");
            assert!(overruns > 0, "{r}");
            assert_eq!(n(r, "leases.overruns_detected"), overruns, "{r}");
            assert_eq!(n(r, "leases.lost_at_release"), overruns, "{r}");
            assert!(n(r, "overlaps.explained_by_lease_overrun") > 0, "{r}");
            assert!(
                n(r, "downstream.rejected_stale") > 0,
                "no stale write refused: {r}"
            );
            assert_eq!(
                n(r, "downstream.rejected"),
                n(r, "downstream.rejected_stale"),
                "{r}"
            );
            outcome
        },
    );
}

/// A downstream store guarding itself with fencing tokens: it keeps the
/// highest token written per conversation and refuses lower ones.
#[derive(Default)]
struct Downstream {
    highest: std::collections::HashMap<String, u64>,
}

impl Downstream {
    fn write(&mut self, conversation: &str, token: u64) -> Result<(), u64> {
        let highest = self.highest.entry(conversation.to_string()).or_default();
        if token <= *highest {
            return Err(*highest);
        }
        *highest = token;
        Ok(())
    }
}

async fn connect(server: &RedisServer) -> LockStore {
    let url = format!("{}/0?socket_timeout=1", server.url());
    LockStore::create(LockStoreConfig::from_url(&url).unwrap())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
}

/// (e), step by step, with two processes' worth of stores: the holder that
/// slept past its lifetime is told at every turn, and its late write is
/// refused downstream because the next holder's token is higher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_past_its_lifetime_learns_it_and_its_stale_write_is_fenced() {
    let server = server!(RedisOptions::default());
    let (a_store, b_store) = (connect(&server).await, connect(&server).await);
    let lifetime = Duration::from_millis(300);
    let mut downstream = Downstream::default();

    let a = a_store.lock("c").lifetime(lifetime).await.unwrap();
    let entered = Instant::now();
    assert!(a.is_held().await.unwrap());
    let b = tokio::spawn(async move {
        let g = b_store
            .lock("c")
            .lifetime(Duration::from_secs(10))
            .wait_time(Duration::from_secs(3600))
            .await;
        (g, Instant::now(), b_store)
    });
    // `a` works for 1.5 lifetimes without renewing.
    tokio::time::sleep(lifetime * 3 / 2).await;
    let (b, b_entered, _b_store) = b.await.unwrap();
    let b = b.unwrap();
    let waited = b_entered - entered;
    assert!(
        waited >= lifetime && waited < lifetime + Duration::from_millis(200),
        "b entered {waited:?} after a, whose lifetime is {lifetime:?}"
    );
    assert!(b.fencing_token() > a.fencing_token());
    downstream.write("c", b.fencing_token()).unwrap();

    // `a` learns it, by every means it has.
    assert!(!a.is_held().await.unwrap());
    assert!(a.is_lost());
    assert!(matches!(
        a.renew().await,
        Err(Error::Expired { ticket: 0, .. })
    ));
    // Its write, attempted anyway, is refused: b's token is higher.
    assert_eq!(
        downstream.write("c", a.fencing_token()),
        Err(b.fencing_token())
    );
    assert!(matches!(a.release().await, Err(Error::Expired { .. })));
    // b's lease was not disturbed by a's late calls.
    assert!(b.is_held().await.unwrap());
    b.release().await.unwrap();
}

/// A holder past its lifetime with nobody after it still learns it lost
/// the lease (strict leases); nobody newer wrote, so its write is accepted,
/// and the next holder's token is above its.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overrun_with_nobody_waiting_is_still_reported() {
    let server = server!(RedisOptions::default());
    let store = connect(&server).await;
    let mut downstream = Downstream::default();
    let lifetime = Duration::from_millis(100);
    let a = store.lock("c").lifetime(lifetime).await.unwrap();
    let a_token = a.fencing_token();
    tokio::time::sleep(lifetime * 2).await;
    assert!(!a.is_held().await.unwrap());
    assert!(matches!(a.renew().await, Err(Error::Expired { .. })));
    downstream.write("c", a.fencing_token()).unwrap();
    assert!(matches!(a.release().await, Err(Error::Expired { .. })));
    let next = store.lock("c").await.unwrap();
    assert!(next.fencing_token() > a_token);
    downstream.write("c", next.fencing_token()).unwrap();
    next.release().await.unwrap();
}

/// Retries `op` while it fails with a transient error (the store is
/// reconnecting), for at most 5 s.
async fn until_ok<T, F: std::future::Future<Output = ticketlock::Result<T>>>(
    mut op: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// (b), step by step: Redis without persistence loses a holder's record.
/// A second holder then gets in at once (exclusion is broken: the first
/// one is still inside), with a higher fencing token (the new record's
/// epoch is the server time), so the downstream store refuses the first
/// holder's late write; the first holder learns it lost the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_loss_lets_a_second_holder_in_and_fencing_refuses_the_first() {
    let mut server = server!(RedisOptions::default());
    let (a_store, b_store) = (connect(&server).await, connect(&server).await);
    let mut downstream = Downstream::default();
    let long = Duration::from_secs(60);
    let a = a_store.lock("c").lifetime(long).await.unwrap();
    server.kill();
    server.restart();
    let b = until_ok(|| b_store.lock("c").lifetime(long).timeout(long).into_future()).await;
    assert_eq!(b.ticket(), 0, "a new record");
    assert_ne!(b.ticket_id().epoch, a.ticket_id().epoch);
    assert!(b.fencing_token() > a.fencing_token());
    downstream.write("c", b.fencing_token()).unwrap();
    assert!(
        !until_ok(|| a.is_held()).await,
        "a's ticket 0 taken for b's"
    );
    assert_eq!(
        downstream.write("c", a.fencing_token()),
        Err(b.fencing_token())
    );
    assert!(matches!(a.release().await, Err(Error::Expired { .. })));
    assert!(b.is_held().await.unwrap(), "a's release touched b's ticket");
    b.release().await.unwrap();
}

/// Bad options are refused with one clear line and the usage status,
/// before any worker starts.
#[test]
fn bad_torture_options_are_usage_errors() {
    for (args, needle) in [
        (
            &["--work-max-ms", "2000"][..],
            "--work-max-ms 2000 is not below the lifetime",
        ),
        (
            &["--work-min-ms", "9", "--work-max-ms", "3"],
            "--work-min-ms 9 is above --work-max-ms 3",
        ),
        (&["--processes", "0"], "--processes"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ticketlock"))
            .env_remove("TICKETLOCK_REDIS")
            .env_remove("TICKETLOCK_ENDPOINTS")
            .arg("torture")
            .args(["--redis", "redis://127.0.0.1:1/0"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.starts_with("ticketlock: "), "{stderr}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    // Without a shared store there is nothing to torture.
    let out = Command::new(env!("CARGO_BIN_EXE_ticketlock"))
        .env_remove("TICKETLOCK_REDIS")
        .env_remove("TICKETLOCK_ENDPOINTS")
        .args(["torture", "--duration", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("needs a store shared by its processes"),
        "{stderr}"
    );
    // An unreachable Redis: the store's error, with its status.
    let out = Command::new(env!("CARGO_BIN_EXE_ticketlock"))
        .env_remove("TICKETLOCK_REDIS_PASSWORD")
        .env_remove("TICKETLOCK_POSTGRES")
        .args([
            "torture",
            "--redis",
            "redis://127.0.0.1:1/0?socket_timeout=1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// The subcommand is listed in the top-level help (the README advertises
/// it), and documented in its own.
#[test]
fn torture_is_listed_in_the_top_level_help_and_has_its_own() {
    let top = Command::new(env!("CARGO_BIN_EXE_ticketlock"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&top.stdout).contains("torture"));
    let own = Command::new(env!("CARGO_BIN_EXE_ticketlock"))
        .args(["torture", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&own.stdout);
    assert_eq!(own.status.code(), Some(0));
    for needle in [
        "--kills",
        "--fault-log",
        "--overrun-percent",
        "RELIABILITY.md",
    ] {
        assert!(help.contains(needle), "{needle} not in {help}");
    }
    assert!(
        !help.contains("--deadline-ns"),
        "internal options shown: {help}"
    );
}
