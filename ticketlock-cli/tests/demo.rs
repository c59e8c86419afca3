//! `ticketlock demo`, run as a program.

use std::process::{Command, Output};

fn demo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ticketlock"))
        .arg("demo")
        .args(args)
        .env_remove("TICKET_LOCK_LIFETIME")
        .env_remove("TICKETLOCK_REDIS")
        .env_remove("TICKETLOCK_ENDPOINTS")
        .env_remove("TICKETLOCK_REDIS_PASSWORD")
        .env_remove("TICKETLOCK_POSTGRES")
        .env_remove("RUST_LOG")
        .output()
        .expect("run ticketlock")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_small_run_ends_with_one_verified_summary_line() {
    let out = demo(&[
        "--conversations",
        "20",
        "--messages",
        "15",
        "--workers",
        "4",
        "--seed",
        "3",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let line = lines[0];
    assert!(
        line.starts_with("demo: 300 messages, 20 conversations, 4 workers, in-memory: "),
        "{line}"
    );
    assert!(line.contains(" msg/s, wait p50 "), "{line}");
    assert!(line.ends_with(", order verified"), "{line}");
}

#[test]
fn json_output_is_one_object_with_the_facts() {
    let out = demo(&[
        "--conversations",
        "5",
        "--messages",
        "40",
        "--workers",
        "6",
        "--work-us",
        "50",
        "--seed",
        "11",
        "--json",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!(v["messages"], 200);
    assert_eq!(v["handled"], 200);
    assert_eq!(v["conversations"], 5);
    assert_eq!(v["messages_per_conversation"], 40);
    assert_eq!(v["workers"], 6);
    assert_eq!(v["work_us"], 50);
    assert_eq!(v["store"], "in-memory");
    assert_eq!(v["seed"], 11);
    assert_eq!(v["verified"], true);
    assert_eq!(v["violations"], 0);
    assert_eq!(v["first_violations"], serde_json::json!([]));
    assert!(v["throughput_msg_per_s"].as_f64().unwrap() > 0.0);
    let (p50, p99) = (
        v["wait_p50_us"].as_u64().unwrap(),
        v["wait_p99_us"].as_u64().unwrap(),
    );
    assert!(p50 <= p99 && p99 <= v["wait_max_us"].as_u64().unwrap());
}

/// A lifetime far below the handling time lets a waiter in while the holder
/// is still inside: the demo must say so and fail.
#[test]
fn leases_shorter_than_the_work_are_caught() {
    let out = demo(&[
        "--conversations",
        "1",
        "--messages",
        "8",
        "--workers",
        "4",
        "--work-us",
        "100000",
        "--lifetime",
        "0.02",
        "--json",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!(v["verified"], false);
    assert!(v["violations"].as_u64().unwrap() > 0);
    let kinds: Vec<&str> = v["first_violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"lease_lost"), "{kinds:?}");
    assert!(
        kinds.contains(&"double_entry") && kinds.contains(&"overlap"),
        "{kinds:?}"
    );
}

#[test]
fn violations_are_listed_on_stderr_and_the_line_says_not_verified() {
    let out = demo(&[
        "--conversations",
        "1",
        "--messages",
        "4",
        "--workers",
        "2",
        "--work-us",
        "60000",
        "--lifetime",
        "0.01",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("NOT verified: "), "{stdout}");
    assert!(stdout.contains("repeat with --seed "), "{stdout}");
    assert!(
        stderr.contains("ticketlock: demo: violation: conversation 0: "),
        "{stderr}"
    );
}

#[test]
fn bad_sizes_are_usage_errors() {
    for args in [
        &["--workers", "0"][..],
        &["--messages", "x"],
        &["--conversations", "100000", "--messages", "1000"],
        &["--lifetime", "0"],
    ] {
        let out = demo(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.starts_with("ticketlock: "), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}
