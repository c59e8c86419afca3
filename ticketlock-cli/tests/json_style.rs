//! One JSON style for every `--json` (README, "JSON output"): durations
//! are whole microseconds named `*_us`, other fractions rounded to 3
//! decimals, `list` and `inspect` agree on `tickets`, `clear --json`
//! exists, and a failure prints `{"error": {...}}` on stdout.

#[path = "support/cli.rs"]
mod cli;

use serde_json::{Value, json};
use ticketlock_test_support::RedisServer;

use cli::{assert_one_error_line, text, tl};

/// Walks `v` and checks the style of every field.
fn assert_house_style(v: &Value, path: &str) {
    match v {
        Value::Object(map) => {
            for (k, inner) in map {
                let at = format!("{path}.{k}");
                if !k.ends_with("_per_s") {
                    assert!(
                        !k.ends_with("_s") && !k.ends_with("_ms"),
                        "{at}: a duration not in microseconds"
                    );
                }
                if k.ends_with("_us") {
                    let ok = |x: &Value| x.is_i64() || x.is_u64() || x.is_null();
                    let fine = match inner {
                        Value::Array(items) => items.iter().all(ok),
                        x => ok(x),
                    };
                    assert!(fine, "{at} = {inner}: not whole microseconds");
                }
                if k.ends_with("_ms") || k.ends_with("_us") || k.ends_with("_s") {
                    assert!(!inner.is_object(), "{at}: durations are not nested objects");
                }
                if k == "expires" || k == "now" {
                    continue; // timestamps, as stored
                }
                assert_house_style(inner, &at);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                assert_house_style(inner, &format!("{path}[{i}]"));
            }
        }
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap();
            assert!(
                ((f * 1000.0).round() / 1000.0 - f).abs() < 1e-9,
                "{path} = {f}: not rounded to 3 decimals"
            );
        }
        _ => {}
    }
}

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn demo_json_follows_the_style() {
    let out = tl(&[
        "demo",
        "--conversations",
        "4",
        "--messages",
        "20",
        "--workers",
        "4",
        "--work-us",
        "50",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = &json_lines(&out)[0];
    assert_house_style(v, "demo");
    for key in [
        "lifetime_us",
        "elapsed_us",
        "wait_p50_us",
        "wait_p99_us",
        "wait_max_us",
    ] {
        assert!(v[key].is_u64(), "{key} in {v}");
    }
    assert_eq!(v["lifetime_us"], 60_000_000);
}

#[test]
fn bench_postgres_json_is_one_object_per_line_in_the_style() {
    let Some(server) = ticketlock_test_support::PostgresServer::start() else {
        return;
    };
    let out = tl(&[
        "bench",
        "--postgres",
        &server.url(),
        "--messages",
        "50",
        "--concurrency",
        "4",
        "--repeat",
        "1",
        "--rounds",
        "5",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    for v in &lines {
        assert_house_style(v, "bench --postgres");
        assert_eq!(v["store"], "postgres", "{v}");
    }
    let kinds: Vec<(String, String)> = lines
        .iter()
        .map(|v| {
            (
                v["kind"].as_str().unwrap().to_string(),
                v["workload"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("run", "throughput"),
        ("median", "throughput"),
        ("median", "handoff"),
        ("median", "queue_depth"),
        ("median", "queue_depth"),
        ("median", "queue_depth"),
    ]
    .iter()
    .map(|(k, w)| (k.to_string(), w.to_string()))
    .collect();
    assert_eq!(kinds, expected);
    let run = &lines[0];
    assert!(run["cycles_per_s"].as_f64().unwrap() > 0.0, "{run}");
    assert!(
        run["baseline_cycles_per_s"].as_f64().unwrap() > 0.0,
        "{run}"
    );
    assert!(lines[2]["handoff_p50_us"].is_u64(), "{}", lines[2]);
    let depths: Vec<u64> = lines[3..]
        .iter()
        .map(|v| v["depth"].as_u64().unwrap())
        .collect();
    assert_eq!(depths, vec![1, 100, 1000]);
    assert_eq!(lines[3]["cost_vs_depth_1"], 1.0);
}

#[test]
fn bench_json_follows_the_style_and_names_waits_as_demo_does() {
    let out = tl(&[
        "bench",
        "--workload",
        "contended",
        "--messages",
        "2000",
        "--concurrency",
        "4",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    assert!(!lines.is_empty());
    for v in &lines {
        assert_house_style(v, "bench");
        assert!(v["wait_p50_us"].is_u64(), "{v}");
    }
}

#[test]
fn a_usage_failure_under_json_prints_the_error_object() {
    // No store for `list`: usage (64).
    let out = tl(&["list", "--json"]);
    assert_eq!(out.status.code(), Some(64));
    let v = &json_lines(&out)[0];
    assert_eq!(v["error"]["exit_code"], 64, "{v}");
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no store given")
    );
    assert_one_error_line(&out, &["no store given"]);
    // A flag clap refuses, too.
    let out = tl(&["list", "--json", "--limit", "0"]);
    assert_eq!(out.status.code(), Some(64));
    let v = &json_lines(&out)[0];
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("--limit"),
        "{v}"
    );
}

fn url(server: &RedisServer) -> String {
    format!("{}/0", server.url())
}

#[test]
fn an_unreachable_store_under_json_prints_the_error_object() {
    // A closed port of the loopback: nothing answers.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/0?socket_timeout=1");
    for args in [
        &["list", "--redis", &url, "--json"][..],
        &["inspect", "--redis", &url, "c1", "--json"],
        &["clear", "--redis", &url, "c1", "--json"],
    ] {
        let out = tl(args);
        assert_eq!(out.status.code(), Some(69), "{args:?}");
        let v = &json_lines(&out)[0];
        assert_eq!(v["error"]["kind"], "unavailable", "{args:?}: {v}");
        assert_eq!(v["error"]["exit_code"], 69, "{args:?}: {v}");
    }
}

#[test]
fn list_and_inspect_agree_on_tickets_and_clear_speaks_json() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = url(&server);
    let record = r#"{"conversation_id": "c1", "tickets": ["{\"number\": 0, \"expires\": 1000000000.25}", "{\"number\": 1, \"expires\": 4102444800.5}"]}"#;
    server.cli(&["SET", "lock:c1", record]);

    let inspect = tl(&["inspect", "--redis", &url, "c1", "--json"]);
    assert_eq!(inspect.status.code(), Some(0), "{}", text(&inspect.stderr));
    let inspect = &json_lines(&inspect)[0];
    assert_house_style(inspect, "inspect");
    let list = tl(&["list", "--redis", &url, "--json"]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
    let list = &json_lines(&list)[0];
    assert_house_style(list, "list");
    // The same array of the same ticket objects (remaining_us aside, read
    // a moment apart).
    let strip = |v: &Value| -> Vec<Value> {
        v["tickets"]
            .as_array()
            .expect("tickets is an array")
            .iter()
            .map(|t| {
                let mut t = t.clone();
                t.as_object_mut().unwrap().remove("remaining_us");
                t
            })
            .collect()
    };
    assert_eq!(strip(inspect), strip(list));
    assert_eq!(strip(list)[1]["status"], "serving");
    assert_eq!(list["live"], 1);
    assert!(inspect["tickets"][0]["remaining_us"].as_i64().unwrap() < 0);

    let out = tl(&["clear", "--redis", &url, "c1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        json_lines(&out),
        [json!({"removed": 1, "keys": ["lock:c1"]})]
    );
    let out = tl(&["clear", "--redis", &url, "c1", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_lines(&out)[0]["error"]["kind"], "no_record");
    server.cli(&["SET", "lock:c2", record.replace("c1", "c2").as_str()]);
    let out = tl(&["clear", "--redis", &url, "--all", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        json_lines(&out),
        [json!({"removed": 1, "keys": ["lock:c2"]})]
    );
}

#[test]
fn torture_json_follows_the_style() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let out = tl(&[
        "torture",
        "--redis",
        &url(&server),
        "--processes",
        "1",
        "--tasks",
        "2",
        "--conversations",
        "1",
        "--duration",
        "0.5",
        "--json",
    ]);
    // The style is the point here, not the verdict (a loaded machine may
    // flag a stall): the figures are printed either way.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        text(&out.stderr)
    );
    let v = &json_lines(&out)[0];
    assert_house_style(v, "torture");
    for key in [
        "wait_p50_us",
        "wait_p99_us",
        "wait_max_us",
        "lifetime_us",
        "duration_us",
    ] {
        assert!(v[key].is_u64(), "{key} in {v}");
    }
}
