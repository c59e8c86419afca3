//! `ticketlock torture --postgres` against a PostgreSQL server of the
//! test's own, with faults injected by the test (the server killed and
//! restarted, connections terminated with `pg_terminate_backend`) or by
//! the torture (workers killed, sections outliving their lease); and a
//! `ticketlock run` holder frozen with SIGSTOP past its lease. The
//! torture's checker asserts what every run must keep (no unexplained
//! overlap, ticket order, fencing, every message once, bounded waits).
//!
//! Short forms, a few seconds each, one at a time;
//! `TICKETLOCK_TORTURE_SECS=60` makes each run longer.

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use ticketlock::{LockStore, LockStoreConfig};
use ticketlock_test_support::PostgresServer;

/// One torture at a time (two shared cores).
static SERIAL: Mutex<()> = Mutex::new(());

fn secs(short: f64) -> f64 {
    std::env::var("TICKETLOCK_TORTURE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(short)
}

/// CLOCK_MONOTONIC in ns: the torture's clock, for the fault log.
fn now_ns() -> u64 {
    let ts =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// The fault log the torture reads (`<ns> <begin|end|at> <name>` lines).
struct FaultLog(std::fs::File, std::path::PathBuf);

impl FaultLog {
    fn new() -> FaultLog {
        let path = std::env::temp_dir().join(format!("ticketlock-pg-faults-{}", now_ns()));
        FaultLog(std::fs::File::create(&path).unwrap(), path)
    }

    fn mark(&mut self, what: &str, name: &str) {
        use std::io::Write as _;
        writeln!(self.0, "{} {what} {name}", now_ns()).unwrap();
        self.0.flush().unwrap();
    }
}

impl Drop for FaultLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.1);
    }
}

fn start(server: &PostgresServer, secs: f64, args: &[&str]) -> Child {
    start_logged(server, secs, args, None)
}

fn start_logged(
    server: &PostgresServer,
    secs: f64,
    args: &[&str],
    faults: Option<&FaultLog>,
) -> Child {
    let url = format!("{}&socket_timeout=1", server.url());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ticketlock"));
    if let Some(f) = faults {
        cmd.arg("torture").arg("--fault-log").arg(&f.1);
    } else {
        cmd.arg("torture");
    }
    cmd.args(["--postgres", &url, "--json", "--tasks", "4"])
        .args(["--duration", &secs.to_string(), "--stall-slack", "1"])
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
        .expect("run ticketlock torture")
}

/// Waits for the report; the exit status must agree with its verdict.
fn finish(child: Child, secs: f64, server: &PostgresServer) -> Value {
    let limit = Duration::from_secs_f64(secs + 90.0);
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(limit) else {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        panic!("the torture did not finish within {limit:?}");
    };
    let out = out.expect("wait for ticketlock torture");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); status {:?}\nstdout: {stdout}\nstderr: {stderr}\nlog:\n{}",
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
    eprintln!("torture figures: {report}");
    report
}

fn n(report: &Value, path: &str) -> u64 {
    let mut v = report;
    for key in path.split('.') {
        v = &v[key];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{path} is not a count in {report}"))
}

fn total(report: &Value, map: &str) -> u64 {
    report[map]
        .as_object()
        .unwrap_or_else(|| panic!("{map} is not a map in {report}"))
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

/// What holds under every fault (as in the Redis tortures).
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
    assert!(n(report, "sections") >= min_sections, "{report}");
}

macro_rules! server {
    () => {
        match PostgresServer::start() {
            Some(s) => s,
            None => return,
        }
    };
}

#[test]
fn no_faults_every_message_once_in_ticket_order() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = server!();
    let secs = secs(3.0);
    let r = finish(start(&server, secs, &[]), secs, &server);
    assert_sound(&r, (secs * 20.0) as u64);
    assert_eq!(total(&r, "failed"), 0, "{r}");
    assert_eq!(n(&r, "messages"), n(&r, "handled"), "{r}");
    assert_eq!(
        n(&r, "overlaps.witness") + n(&r, "overlaps.intervals"),
        0,
        "{r}"
    );
    assert_eq!(total(&r, "retries"), 0, "{r}");
}

#[test]
fn sigkill_of_holders_and_waiters() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = server!();
    let secs = secs(4.0);
    let kills = (secs as u64).max(4);
    let args = [
        "--kills",
        &kills.to_string(),
        "--work-min-ms",
        "2",
        "--work-max-ms",
        "20",
    ];
    let r = finish(start(&server, secs, &args), secs, &server);
    assert_sound(&r, (secs * 10.0) as u64);
    assert_eq!(n(&r, "kills.total"), kills, "{r}");
    assert_eq!(total(&r, "failed"), 0, "{r}");
    assert_eq!(
        n(&r, "overlaps.witness") + n(&r, "overlaps.intervals"),
        0,
        "{r}"
    );
}

/// The server killed (SIGKILL) and restarted again and again while holders
/// are inside: committed leases survive, so nothing overlaps; clients get
/// `unavailable` meanwhile and recover in the same process.
#[test]
fn server_killed_and_restarted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = server!();
    let secs = secs(4.0);
    let args = [
        "--lifetime",
        "2",
        "--work-min-ms",
        "50",
        "--work-max-ms",
        "600",
    ];
    let mut log = FaultLog::new();
    let child = start_logged(&server, secs, &args, Some(&log));
    let started = Instant::now();
    let mut at = 0.8;
    let mut restarts = 0;
    while at + 1.5 < secs {
        thread::sleep(Duration::from_secs_f64(
            (at - started.elapsed().as_secs_f64()).max(0.0),
        ));
        log.mark("begin", "postgres-down");
        server.kill();
        thread::sleep(Duration::from_millis(250));
        server.restart();
        log.mark("end", "postgres-down");
        restarts += 1;
        at = started.elapsed().as_secs_f64() + 1.3;
    }
    let r = finish(child, secs, &server);
    assert!(restarts >= 1);
    assert_sound(&r, (secs * 2.0) as u64);
    assert_eq!(total(&r, "failed"), 0, "{r}");
    assert_eq!(
        n(&r, "overlaps.witness") + n(&r, "overlaps.intervals"),
        0,
        "{r}"
    );
    assert_eq!(n(&r, "downstream.rejected"), 0, "{r}");
    assert_eq!(n(&r, "workers"), 3, "no process was restarted");
}

/// Every connection of every worker (the listening ones included)
/// terminated by `pg_terminate_backend`, again and again.
#[test]
fn connections_terminated_by_the_server() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = server!();
    let secs = secs(3.0);
    let mut log = FaultLog::new();
    let child = start_logged(&server, secs, &[], Some(&log));
    let started = Instant::now();
    let mut terminated = 0u64;
    while started.elapsed().as_secs_f64() + 1.0 < secs {
        thread::sleep(Duration::from_millis(300));
        log.mark("at", "terminate-backends");
        terminated += server
            .psql(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'ticketlock') t",
            )
            .parse::<u64>()
            .unwrap();
    }
    let r = finish(child, secs, &server);
    assert!(terminated >= 3, "{terminated}");
    assert!(n(&r, "injected.terminate-backends") >= 3, "{r}");
    assert_sound(&r, (secs * 10.0) as u64);
    assert_eq!(total(&r, "failed"), 0, "{r}");
    assert_eq!(
        n(&r, "overlaps.witness") + n(&r, "overlaps.intervals"),
        0,
        "{r}"
    );
}

/// Sections that run past their lease are told, and their late writes are
/// refused downstream (fencing tokens from the sequence).
#[test]
fn holders_past_their_lifetime_are_told_and_fenced() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = server!();
    let secs = secs(3.0);
    let args = ["--overrun-percent", "5", "--lifetime", "0.5"];
    let r = finish(start(&server, secs, &args), secs, &server);
    assert_sound(&r, (secs * 10.0) as u64);
    let overruns = n(&r, "leases.overruns");
    assert!(overruns > 0, "{r}");
    assert_eq!(n(&r, "leases.overruns_detected"), overruns, "{r}");
    assert!(n(&r, "downstream.rejected_stale") > 0, "{r}");
    assert_eq!(
        n(&r, "downstream.rejected"),
        n(&r, "downstream.rejected_stale"),
        "{r}"
    );
}

/// A `ticketlock run` holder frozen with SIGSTOP past its lease: another
/// process enters once the lease ran out (not before), with a greater
/// fencing token, and the frozen holder's ticket is gone when it wakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_frozen_past_its_lease_lets_the_next_one_in() {
    let server = match PostgresServer::start() {
        Some(s) => s,
        None => return,
    };
    let url = format!("{}&socket_timeout=1", server.url());
    let store = LockStore::create(LockStoreConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    let holder = Command::new(env!("CARGO_BIN_EXE_ticketlock"))
        .args([
            "run",
            "--postgres",
            &url,
            "--lifetime",
            "1",
            "frozen",
            "--",
            "sleep",
            "4",
        ])
        .env_remove("TICKET_LOCK_LIFETIME")
        .env_remove("TICKETLOCK_REDIS")
        .env_remove("TICKETLOCK_ENDPOINTS")
        .env_remove("TICKETLOCK_REDIS_PASSWORD")
        .env_remove("TICKETLOCK_POSTGRES")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let first_token = loop {
        if let Some(lock) = store.get_lock("frozen").await.unwrap()
            && lock.tickets().len() == 1
        {
            break server.psql("SELECT fences[1] FROM ticketlock_conversations");
        }
        assert!(
            Instant::now() < deadline,
            "the run command never held the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pid = Pid::from_raw(holder.id() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let frozen = Instant::now();
    let g = store
        .lock("frozen")
        .timeout(Duration::from_secs(5))
        .await
        .expect("the next holder enters once the frozen lease ran out");
    let waited = frozen.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "entered {waited:?} after the freeze, before the 1 s lease could run out"
    );
    assert!(
        g.fencing_token() > first_token.parse::<u64>().unwrap(),
        "{} after {first_token}",
        g.fencing_token()
    );
    kill(pid, Signal::SIGCONT).unwrap();
    assert!(
        g.is_held().await.unwrap(),
        "the woken holder did not take the lock back"
    );
    let out = holder.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lost"),
        "the frozen holder must learn its lease was lost: {stderr}"
    );
    g.release().await.unwrap();
}
