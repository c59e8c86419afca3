//! `ticketlock bench --workload depth` on a Redis of its own: the lines it
//! prints, the hand-offs it made, the plot it draws, and `--layout`.

#[path = "support/cli.rs"]
mod support;

use serde_json::Value;
use ticketlock_test_support::RedisServer;

use support::{text, tl};

fn url(server: &RedisServer) -> String {
    format!("{}/0", server.url().trim_end_matches('/'))
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    text(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn the_depth_workload_reports_each_depth_and_the_idle_queue_and_plots_them() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("depth.svg");
    let out = tl(&[
        "bench",
        "--store",
        "redis",
        "--redis",
        &url(&server),
        "--workload",
        "depth",
        "--depths",
        "1,5",
        "--rounds",
        "25",
        "--repeat",
        "2",
        "--idle-seconds",
        "0.2",
        "--json",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out.stdout);
    // Per run: a line per depth, then the idle window of the deepest;
    // then the same as medians.
    let shape: Vec<(String, String, u64)> = lines
        .iter()
        .map(|v| {
            (
                v["kind"].as_str().unwrap().to_owned(),
                v["phase"].as_str().unwrap().to_owned(),
                v["waiters"].as_u64().unwrap(),
            )
        })
        .collect();
    let row = |kind: &str, phase: &str, w: u64| (kind.to_owned(), phase.to_owned(), w);
    assert_eq!(
        shape,
        [
            row("run", "handoff", 1),
            row("run", "handoff", 5),
            row("run", "idle", 5),
            row("run", "handoff", 1),
            row("run", "handoff", 5),
            row("run", "idle", 5),
            row("median", "handoff", 1),
            row("median", "handoff", 5),
            row("median", "idle", 5),
        ]
    );
    for v in &lines {
        assert_eq!(v["workload"], "depth");
        assert_eq!(v["store"], "redis");
        assert_eq!(v["layout"], "rasa");
        if v["phase"] == "idle" {
            assert_eq!(v["idle_us"].as_u64().unwrap() / 100_000, 2, "{v}");
            assert!(v["redis_cpu_pct"].as_f64().unwrap() >= 0.0, "{v}");
            continue;
        }
        // Exactly the hand-offs asked for, one holder at a time.
        assert_eq!(
            (v["rounds"].as_u64(), v["handoffs"].as_u64()),
            (Some(25), Some(25)),
            "{v}"
        );
        assert_eq!(v["max_holders"], 1, "{v}");
        for field in [
            "handoffs_per_s",
            "handoff_p50_us",
            "handoff_p99_us",
            "redis_cpu_per_handoff_us",
            "redis_cpu_pct",
            "baseline_handoffs_per_s",
            "ratio",
            "ping_p50_us",
            "elapsed_us",
        ] {
            assert!(v[field].is_number(), "{field} in {v}");
        }
        assert!(
            v["baseline"].as_str().unwrap().starts_with("SET NX PX"),
            "{v}"
        );
        // Durations are whole microseconds.
        assert!(
            v["handoff_p50_us"].is_u64() && v["elapsed_us"].is_u64(),
            "{v}"
        );
    }
    assert_eq!(lines[0]["ratio_to_depth_1"], 1.0);
    assert!(lines[1]["ratio_to_depth_1"].is_number());
    assert_eq!(lines[6]["runs"], 2);

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.contains("ticketlock, rasa layout"), "{svg}");
    assert!(!svg.contains("native layout"), "{svg}");
    assert!(svg.contains("SET NX PX spin lock"), "{svg}");

    // No record and no baseline key is left (request entries expire by
    // themselves).
    let left: Vec<String> = server
        .cli(&["KEYS", "*"])
        .lines()
        .filter(|k| !k.is_empty() && !k.starts_with('{'))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_table_names_the_layout_the_baseline_and_one_round_trip() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let out = tl(&[
        "bench",
        "--store",
        "redis",
        "--redis",
        &url(&server),
        "--workload",
        "depth",
        "--depths",
        "2",
        "--rounds",
        "10",
        "--repeat",
        "1",
        "--idle-seconds",
        "0",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.starts_with("workload depth, store redis, layout rasa, 10 hand-offs per depth"),
        "{table}"
    );
    assert!(table.contains("one round trip (PING) p50"), "{table}");
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.trim_start().starts_with("2 "))
        .unwrap_or_else(|| panic!("no row for 2 waiters: {table}"))
        .split_whitespace()
        .collect();
    assert_eq!(&row[..2], ["2", "10"], "{table}");
    assert!(!table.contains("idle:"), "{table}");
}

/// `--layout native` is the library's to accept: until it knows the
/// setting, the bench fails with its error naming the setting (exit
/// status, one line, no panic); once it does, the lines say `native`.
#[test]
fn the_native_layout_is_asked_for_in_the_url() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let out = tl(&[
        "bench",
        "--store",
        "redis",
        "--redis",
        &url(&server),
        "--workload",
        "depth",
        "--layout",
        "native",
        "--depths",
        "1",
        "--rounds",
        "5",
        "--repeat",
        "1",
        "--idle-seconds",
        "0",
        "--json",
    ]);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    if out.status.success() {
        let lines = json_lines(&out.stdout);
        assert!(lines.iter().all(|v| v["layout"] == "native"), "{lines:?}");
        assert!(lines.iter().any(|v| v["handoffs"] == 5), "{lines:?}");
    } else {
        assert!(
            stderr.starts_with("ticketlock: --layout native: "),
            "{stderr}"
        );
        assert!(stderr.contains("\"layout\""), "{stderr}");
        let error = json_lines(&out.stdout);
        assert_eq!(error.len(), 1, "{error:?}");
        assert!(
            error[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("layout")
        );
    }
}

/// `--layout both` measures each layout in the same runs, against the same
/// baselines: one median line per layout with the same baseline figures
/// (or, until the library knows layouts, its error about the setting).
#[test]
fn both_layouts_share_the_runs_baselines() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let out = tl(&[
        "bench",
        "--store",
        "redis",
        "--redis",
        &url(&server),
        "--workload",
        "throughput",
        "--messages",
        "100",
        "--concurrency",
        "4",
        "--repeat",
        "1",
        "--layout",
        "both",
        "--json",
    ]);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    if !out.status.success() {
        assert!(
            stderr.starts_with("ticketlock: --layout native: "),
            "{stderr}"
        );
        return;
    }
    let lines = json_lines(&out.stdout);
    let medians: Vec<&Value> = lines.iter().filter(|v| v["kind"] == "median").collect();
    let layouts: Vec<&Value> = medians.iter().map(|v| &v["layout"]).collect();
    assert_eq!(layouts, ["rasa", "native"], "{lines:?}");
    for field in ["baseline_cycles_per_s", "setnx_cycles_per_s"] {
        assert_eq!(medians[0][field], medians[1][field], "{field}: {lines:?}");
    }
}
