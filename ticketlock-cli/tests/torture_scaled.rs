//! The torture suite on a local Redis Cluster (3 primaries, 3 replicas) and
//! a local Sentinel group (1 primary, 2 replicas, 3 sentinels), started by
//! the tests: every message handled once, in ticket order, no overlap, no
//! fencing violation. Faults on these deployments (a primary killed) are
//! covered by the library's `redis_failover` tests.

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
    let out = Command::new(env!("CARGO_BIN_EXE_ticketlock"))
        .args(["torture", "--redis", url, "--json", "--tasks", "4"])
        .args(["--duration", "3", "--stall-slack", "1"])
        .env_remove("TICKET_LOCK_LIFETIME")
        .env_remove("TICKETLOCK_REDIS")
        .env_remove("TICKETLOCK_ENDPOINTS")
        .env_remove("TICKETLOCK_REDIS_PASSWORD")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run ticketlock torture");
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
    assert_eq!(n(&report, "messages"), n(&report, "handled"), "{report}");
    assert!(n(&report, "sections") >= 100, "{report}");
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
