//! Errors that name what to fix: usage errors exit 64 naming the flag,
//! durations as people write them, a server that is not Redis, a
//! directory given as the command, and no log noise by default.

#[path = "support/cli.rs"]
mod cli;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use ticketlock_test_support::RedisServer;

use cli::{Proc, assert_one_error_line, text, ticketlock, tl};

#[test]
fn a_too_short_lifetime_is_bad_usage_naming_the_flag() {
    let out = tl(&[
        "run",
        "--allow-memory",
        "--lifetime",
        "0.001",
        "c",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert_one_error_line(&out, &["--lifetime", "10.0 ms"]);
    assert!(!text(&out.stderr).contains("lock_lifetime"));
}

#[test]
fn bench_with_redis_flags_but_the_memory_store_is_bad_usage() {
    let out = tl(&["bench", "--redis", "redis://127.0.0.1:1/0"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert_one_error_line(&out, &["--redis is only for --store redis"]);
}

#[test]
fn a_directory_as_the_command_is_called_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = tl(&[
        "run",
        "--allow-memory",
        "c",
        "--",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(126));
    assert_one_error_line(&out, &["is a directory"]);
    assert!(!text(&out.stderr).contains("make it executable"));
}

/// A server that answers every connection in HTTP.
fn http_server() -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(false).unwrap();
    let handle = std::thread::spawn(move || {
        // Answers the connections of one command, then stops.
        for _ in 0..3 {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            conn.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut buf = [0u8; 256];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n<html>no</html>\n");
        }
    });
    (port, handle)
}

#[test]
fn a_server_that_is_not_redis_is_one_line_saying_so() {
    let (port, _server) = http_server();
    let out = tl(&[
        "list",
        "--redis",
        &format!("redis://127.0.0.1:{port}/0?socket_timeout=2"),
    ]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert_one_error_line(&out, &["answered, but not as Redis"]);
    assert!(!text(&out.stderr).contains("check that the server is up"));
}

#[test]
fn demo_with_overrun_leases_prints_no_log_lines() {
    let out = tl(&[
        "demo",
        "--conversations",
        "4",
        "--messages",
        "3",
        "--workers",
        "4",
        "--lifetime",
        "0.01",
        "--work-us",
        "20000",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "violations expected: {}",
        text(&out.stderr)
    );
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("WARN"), "{stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with("ticketlock: ")),
        "{stderr}"
    );
}

#[test]
fn a_timeout_names_the_flag_and_a_readable_duration() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let mut holder = Proc::spawn(
        ticketlock()
            .args(["run", "--redis", &url, "--hold", "c"])
            .stdout(Stdio::piped()),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.child().stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("ticket=0 "), "{line}");
    let out = tl(&["run", "--redis", &url, "--timeout", "1", "c", "--", "true"]);
    assert_eq!(out.status.code(), Some(75));
    assert_one_error_line(
        &out,
        &["timed out after 1.0 s (--timeout)", "raise --timeout"],
    );
}

#[test]
fn help_lists_torture_and_every_subcommand() {
    let out = tl(&["--help"]);
    let help = text(&out.stdout);
    for sub in [
        "demo",
        "run",
        "inspect",
        "list",
        "clear",
        "bench",
        "torture",
        "completions",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(sub)),
            "{sub} not in --help:\n{help}"
        );
    }
}

#[test]
fn completions_and_man_pages_are_made_from_the_definition() {
    for (shell, marker) in [
        ("bash", "_ticketlock()"),
        ("zsh", "#compdef ticketlock"),
        ("fish", "complete -c ticketlock"),
    ] {
        let out = tl(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}");
        // The new flags of `run` are completed too.
        assert!(
            script.contains("on-lost") && script.contains("nonblock"),
            "{shell}"
        );
    }
    let out = tl(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(64));

    let out = tl(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = text(&out.stdout);
    assert!(
        page.contains(".TH ticketlock 1") && page.contains("torture"),
        "{page}"
    );
    let out = tl(&["man", "run"]);
    let page = text(&out.stdout);
    assert!(page.contains(".TH ticketlock-run 1"), "{page}");
    assert!(page.contains("conflict\\-exit\\-code"), "{page}");
    assert_eq!(tl(&["man", "nope"]).status.code(), Some(64));
}
