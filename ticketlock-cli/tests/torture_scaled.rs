//! The torture suite on a local Redis Cluster (3 primaries, 3 replicas) and
//! a local Sentinel group (1 primary, 2 replicas, 3 sentinels), started by
//! the tests: every message handled once, in ticket order, no overlap, no
//! fencing violation; and on a Sentinel group whose primary is killed in
//! the middle of the run, in safe mode (`min_replicas_ack=1`), with the
//! failover window given to the checker.

use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde_json::Value;
use ticketlock_test_support::{RedisCluster, SentinelGroup};

/// One deployment at a time: they are heavy on two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn n(report: &Value, path: &str) -> u64 {
    path.split('.')
        .fold(report, |v, k| &v[k])
        .as_u64()
        .unwrap_or_else(|| panic!("{path} missing in {report}"))
}

fn total(report: &Value, map: &str) -> u64 {
    report[map]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// Runs `ticketlock torture` for 3 s on the store at `url` and checks the
/// report.
fn torture(url: &str) {
    let child = start(url, 3.0, None, None);
    check(
        child.wait_with_output().expect("run ticketlock torture"),
        true,
    );
}

/// Starts `ticketlock torture` for `secs` on the store at `url`.
/// With `dir`, the run's files, worker logs and `events.jsonl` are kept
/// there.
fn start(
    url: &str,
    secs: f64,
    fault_log: Option<&std::path::Path>,
    dir: Option<&std::path::Path>,
) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ticketlock"));
    cmd.args(["torture", "--redis", url, "--json", "--tasks", "4"])
        .args(["--duration", &secs.to_string(), "--stall-slack", "1"])
        .env_remove("TICKET_LOCK_LIFETIME")
        .env_remove("TICKETLOCK_REDIS")
        .env_remove("TICKETLOCK_ENDPOINTS")
        .env_remove("TICKETLOCK_REDIS_PASSWORD")
        .env_remove("TICKETLOCK_POSTGRES")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(log) = fault_log {
        cmd.arg("--fault-log").arg(log);
    }
    if let Some(dir) = dir {
        cmd.arg("--dir").arg(dir);
    }
    cmd.spawn().expect("run ticketlock torture")
}

/// CLOCK_MONOTONIC in ns: the torture's clock, for the fault log.
fn now_ns() -> u64 {
    let ts =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// Checks a torture's report: sound (the checker's verdict: no overlap,
/// order or fencing violation, nothing lost silently) and, if `exact`,
/// every message handled.
fn check(out: std::process::Output, exact: bool) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stderr}"));
    eprintln!("torture figures: {report}");
    assert_eq!(report["verified"], true, "{:#}", report["first_violations"]);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for zero in [
        "panics",
        "crashed_workers",
        "hung_workers",
        "silent_losses",
        "duplicates",
        "order_violations",
        "fencing_violations",
        "overlaps.unexplained",
        "overlaps.witness",
        "overlaps.intervals",
        "downstream.rejected",
    ] {
        assert_eq!(n(&report, zero), 0, "{zero}: {report}");
    }
    assert_eq!(total(&report, "failed"), 0, "{report}");
    if exact {
        assert_eq!(n(&report, "messages"), n(&report, "handled"), "{report}");
    }
    assert!(n(&report, "sections") >= 100, "{report}");
    report
}

#[test]
fn torture_on_a_cluster() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    let endpoints = cluster.endpoints().join(",");
    let first = cluster.endpoints()[0].clone();
    torture(&format!(
        "redis://{first}/0?deployment_mode=cluster&endpoints={endpoints}&key_prefix=torture&socket_timeout=2"
    ));
}

#[test]
fn torture_on_a_sentinel_group() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(group) = SentinelGroup::start() else {
        return;
    };
    let endpoints = group.endpoints().join(",");
    let first = group.endpoints()[0].clone();
    torture(&format!(
        "redis://{first}/0?deployment_mode=sentinel&endpoints={endpoints}&sentinel_service={}&key_prefix=torture&socket_timeout=2",
        group.service()
    ));
}

/// The primary of a Sentinel group killed 1.5 s into an 8 s run, in safe
/// mode: the store follows the failover without a restart, and nothing
/// overlaps, fails or goes back (fencing), as the checker verifies with
/// the failover as a fault window (from the kill until the sentinels name
/// the new primary).
#[test]
fn torture_through_a_sentinel_failover() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut group) = SentinelGroup::start() else {
        return;
    };
    let endpoints = group.endpoints().join(",");
    let first = group.endpoints()[0].clone();
    let url = format!(
        "redis://{first}/0?deployment_mode=sentinel&endpoints={endpoints}&sentinel_service={}\
         &key_prefix=torture&socket_timeout=2&min_replicas_ack=1&min_replicas_ack_timeout=0.5",
        group.service()
    );
    let log_path = std::env::temp_dir().join(format!("ticketlock-failover-{}", now_ns()));
    let mut log = std::fs::File::create(&log_path).unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let child = start(&url, 8.0, Some(&log_path), Some(run_dir.path()));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let old = group.primary();
    use std::io::Write as _;
    writeln!(log, "{} begin failover", now_ns()).unwrap();
    log.flush().unwrap();
    group.server_mut(old).kill();
    let new = group.wait_for_failover(old);
    writeln!(log, "{} end failover", now_ns()).unwrap();
    log.flush().unwrap();
    eprintln!(
        "failover from server {old} to {new} done {:?} into the run",
        started.elapsed()
    );
    // Not exact: a message still being retried at the end of the run is
    // neither handled nor failed (seen once in five runs).
    let out = child.wait_with_output().expect("run ticketlock torture");
    let failed = serde_json::from_slice::<Value>(&out.stdout).map_or(1, |r| total(&r, "failed"));
    if failed != 0 || !out.status.success() {
        eprintln!(
            "{}\n--- the group ---{}",
            failed_messages(run_dir.path()),
            group.logs()
        );
    }
    let report = check(out, false);
    assert_eq!(n(&report, "injected.failover"), 1, "{report}");
    assert!(n(&report, "recovery.checked") >= 3, "{report}");
    let _ = std::fs::remove_file(&log_path);
}

/// For a failed run: every event of each message given up, and the
/// warnings of the worker logs, from the run's directory.
fn failed_messages(dir: &std::path::Path) -> String {
    let events: Vec<Value> = std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let name = |e: &Value| (e["worker"].clone(), e["task"].clone(), e["msg"].clone());
    let mut text = String::from("--- events of the messages given up ---\n");
    for fail in events.iter().filter(|e| e["e"] == "fail") {
        for e in events.iter().filter(|e| name(e) == name(fail)) {
            text.push_str(&format!("{e}\n"));
        }
    }
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    for path in logs {
        text.push_str(&format!("--- warnings in {} ---\n", path.display()));
        for line in std::fs::read_to_string(&path).unwrap_or_default().lines() {
            if line.contains("WARN") || line.contains("ERROR") {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}
