//! Test hygiene: a missing redis-server is one visible line per test
//! binary (not swallowed by the harness), and no temp folder outlives a
//! test run, not even that of a server a test binary keeps in a static.
//!
//! Both are checked by running this binary again as a child, with the
//! helpers below (ignored in a normal run: they only make sense there).

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ticketlock_test_support::RedisServer;

const OUT_ENV: &str = "TICKETLOCK_HYGIENE_OUT";

fn keep_a_server_in_a_static() {
    static SERVER: OnceLock<Option<RedisServer>> = OnceLock::new();
    if let Some(server) = SERVER.get_or_init(RedisServer::start)
        && let Ok(out) = std::env::var(OUT_ENV)
    {
        std::fs::write(out, server.dir().to_str().unwrap()).unwrap();
    }
}

#[test]
#[ignore = "a helper: run in a child process by the tests of this file"]
fn helper_a_server_in_a_static() {
    keep_a_server_in_a_static();
}

#[test]
#[ignore = "a helper: run in a child process by the tests of this file"]
fn helper_another_test_needing_redis() {
    let _ = RedisServer::start();
}

fn this_binary(helpers: &[&str]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(helpers)
        .args(["--ignored", "--exact", "--test-threads=1"]);
    c
}

#[test]
fn a_missing_redis_server_shows_one_line_per_test_binary() {
    let empty = tempfile::tempdir().unwrap();
    let out = this_binary(&[
        "helper_a_server_in_a_static",
        "helper_another_test_needing_redis",
    ])
    .env("PATH", empty.path())
    .env_remove("CI")
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("skipping")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("need redis-server") && lines[0].contains("hygiene"),
        "{}",
        lines[0]
    );
    // Under CI=true the same is a failure.
    let out = this_binary(&["helper_another_test_needing_redis"])
        .env("PATH", empty.path())
        .env("CI", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_server_kept_in_a_static_leaves_no_folder_behind() {
    let Some(_probe) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("server-dir");
    let out = this_binary(&["helper_a_server_in_a_static"])
        .env(OUT_ENV, &record)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server_dir = std::fs::read_to_string(&record).expect("the helper started a server");
    let server_dir = std::path::Path::new(&server_dir);
    // The watchdog polls once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server_dir.exists() {
        assert!(
            Instant::now() < deadline,
            "{} outlived its test process by 10 s",
            server_dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
