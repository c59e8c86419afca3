//! Every configuration mistake a user can make, one test each: `ticketlock
//! run` exits non-zero, within the socket timeout, with exactly one
//! `ticketlock: ...` line on stderr naming the problem and the fix, never a
//! panic, and without running the command.

#[path = "support/cli.rs"]
mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use support::{text, ticketlock};
use ticketlock_test_support::{RedisOptions, RedisServer};

/// How long a mistake found before any connection may take to report
/// (a debug binary on a busy 2-core machine).
const AT_ONCE: Duration = Duration::from_secs(3);

macro_rules! server {
    ($options:expr) => {
        match RedisServer::start_with($options) {
            Some(s) => s,
            None => return,
        }
    };
}

/// `ticketlock run STORE_ARGS c -- sh -c 'echo ran'`, timed.
fn run(store_args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let mut cmd = ticketlock();
    cmd.arg("run")
        .args(store_args)
        .args(["c", "--", "sh", "-c", "echo ran"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().expect("run ticketlock");
    (out, started.elapsed())
}

/// `run` with an endpoints file holding `yaml`.
fn run_with_file(dir: &Path, yaml: &[u8]) -> (Output, Duration) {
    let file = dir.join("endpoints.yml");
    std::fs::write(&file, yaml).unwrap();
    run(&["--endpoints", file.to_str().unwrap()], &[])
}

/// Refused with `code`: one line on stderr holding every needle, no panic,
/// the command not run, and reported within `within`.
fn assert_refused((out, took): &(Output, Duration), code: i32, within: Duration, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.starts_with("ticketlock: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    assert!(
        out.stdout.is_empty(),
        "the command ran: {}",
        text(&out.stdout)
    );
    assert!(*took < within, "took {took:?}: {stderr}");
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A port with nothing listening on it.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_unknown_store_type_names_the_supported_ones() {
    let dir = tempdir();
    assert_refused(
        &run_with_file(dir.path(), b"lock_store:\n  type: mongo\n"),
        78,
        AT_ONCE,
        &[
            "lock_store.type",
            "\"mongo\" is not a supported lock store type",
            "write in_memory, redis, concurrent_redis or postgresql",
        ],
    );
}

#[test]
fn a_bad_port_says_which_ports_exist() {
    let dir = tempdir();
    for port in ["0", "70000", "abc", "-1", "6379.5"] {
        let yaml = format!("lock_store:\n  type: redis\n  port: {port}\n");
        assert_refused(
            &run_with_file(dir.path(), yaml.as_bytes()),
            78,
            AT_ONCE,
            &["lock_store.port", "line 3", "from 1 to 65535"],
        );
    }
    for url in [
        "redis://127.0.0.1:0",
        "redis://127.0.0.1:70000",
        "redis://127.0.0.1:abc",
    ] {
        assert_refused(
            &run(&["--redis", url], &[]),
            78,
            AT_ONCE,
            &["`url`", "1 to 65535"],
        );
    }
}

#[test]
fn url_and_host_together_say_keep_only_host() {
    let dir = tempdir();
    assert_refused(
        &run_with_file(
            dir.path(),
            b"lock_store:\n  type: redis\n  url: a.example\n  host: b.example\n",
        ),
        78,
        AT_ONCE,
        &[
            "lock_store.url",
            "both url and host are set",
            "keep only host",
        ],
    );
}

#[test]
fn malformed_yaml_names_the_line_and_column() {
    let dir = tempdir();
    for (yaml, line) in [
        (&b"lock_store:\n  type: redis\n   port: 1\n"[..], "line 3"),
        (b"lock_store: [type: redis\n", "line 2"),
        (b"lock_store:\n\ttype: redis\n", "line 2"),
        (
            b"lock_store:\n  type: redis\n  type: redis\n",
            "duplicated key",
        ),
    ] {
        let (out, took) = run_with_file(dir.path(), yaml);
        assert_refused(&(out, took), 78, AT_ONCE, &[line]);
    }
}

#[test]
fn a_missing_endpoints_file_is_named_with_the_reason() {
    let dir = tempdir();
    let missing = dir.path().join("nope.yml");
    let shown = missing.to_str().unwrap();
    assert_refused(
        &run(&["--endpoints", shown], &[]),
        78,
        AT_ONCE,
        &[
            shown,
            "cannot read the endpoints file",
            "No such file",
            "check the path",
        ],
    );
}

/// Unreadable: a directory, and a file that is not UTF-8 text. (Permission
/// bits cannot make a file unreadable here: the tests run as root in CI.)
#[test]
fn an_unreadable_endpoints_file_is_named_with_the_reason() {
    let dir = tempdir();
    let shown = dir.path().to_str().unwrap();
    assert_refused(
        &run(&["--endpoints", shown], &[]),
        78,
        AT_ONCE,
        &[shown, "cannot read the endpoints file", "directory"],
    );
    assert_refused(
        &run_with_file(dir.path(), b"lock_store:\n  host: \xff\xfe\n"),
        78,
        AT_ONCE,
        &["endpoints.yml", "valid UTF-8", "a readable UTF-8 text file"],
    );
}

#[test]
fn a_wrong_url_scheme_lists_the_forms() {
    assert_refused(
        &run(&["--redis", "http://127.0.0.1:6379"], &[]),
        78,
        AT_ONCE,
        &["unsupported scheme \"http\"", "redis://", "rediss://"],
    );
    // A URL where Rasa's `url` setting wants a host name.
    let dir = tempdir();
    assert_refused(
        &run_with_file(
            dir.path(),
            b"lock_store:\n  type: redis\n  url: redis://127.0.0.1:6379\n",
        ),
        78,
        AT_ONCE,
        &["lock_store.url", "host name alone", "write the host here"],
    );
}

#[test]
fn a_negative_or_zero_lifetime_is_bad_usage_naming_the_option() {
    for args in [
        &["--lifetime", "-5"][..],
        &["--lifetime=-5"],
        &["--lifetime", "-0.5"],
    ] {
        let mut all = vec!["--allow-memory"];
        all.extend_from_slice(args);
        assert_refused(
            &run(&all, &[]),
            64,
            AT_ONCE,
            &["'--lifetime <SECS>'", "non-negative number", "--help"],
        );
    }
    assert_refused(
        &run(&["--allow-memory", "--lifetime", "0"], &[]),
        64,
        AT_ONCE,
        &["'--lifetime <SECS>'", "greater than zero"],
    );
    assert_refused(
        &run(&["--allow-memory", "--timeout", "-1"], &[]),
        64,
        AT_ONCE,
        &["'--timeout <SECS>'", "non-negative number"],
    );
}

#[test]
fn a_non_integer_ticket_lock_lifetime_is_a_configuration_error() {
    let server = server!(RedisOptions::default());
    let url = format!("{}/1", server.url());
    for value in ["1.5", "-3", "abc", "60s", "1e3"] {
        assert_refused(
            &run(&["--redis", &url], &[("TICKET_LOCK_LIFETIME", value)]),
            78,
            AT_ONCE,
            &[
                "TICKET_LOCK_LIFETIME",
                &format!("{value:?}"),
                "whole number of seconds",
            ],
        );
    }
}

#[test]
fn an_unreachable_server_is_unavailable_within_the_socket_timeout() {
    // Nothing listening: refused at once.
    let port = free_port();
    assert_refused(
        &run(
            &[
                "--redis",
                &format!("redis://127.0.0.1:{port}/1?socket_timeout=1"),
            ],
            &[],
        ),
        69,
        AT_ONCE,
        &[
            &format!("127.0.0.1:{port}"),
            "Connection refused",
            "check that the server is up",
        ],
    );
    // Something listening that never answers: given up after socket_timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempdir();
    let yaml = format!(
        "lock_store:\n  type: redis\n  host: 127.0.0.1\n  port: {port}\n  socket_timeout: 1\n"
    );
    let refused = run_with_file(dir.path(), yaml.as_bytes());
    assert_refused(
        &refused,
        69,
        Duration::from_millis(2500),
        &[&format!("127.0.0.1:{port}"), "timed out", "reachable"],
    );
    assert!(refused.1 >= Duration::from_millis(900), "{:?}", refused.1);
    // Each cause once on the line.
    let stderr = text(&refused.0.stderr);
    assert_eq!(stderr.matches("timed out").count(), 1, "{stderr}");
}

#[test]
fn a_wrong_password_is_a_configuration_error_that_does_not_show_it() {
    let server = server!(RedisOptions {
        password: Some("the-right-one".into()),
        ..Default::default()
    });
    let url = format!(
        "redis://:Wr0ng-Passw0rd@127.0.0.1:{}/1?socket_timeout=1",
        server.port()
    );
    for verbose in [&[][..], &["-vvv"]] {
        let mut cmd = ticketlock();
        cmd.args(verbose)
            .args(["run", "--redis", &url, "c", "--", "sh", "-c", "echo ran"]);
        let started = Instant::now();
        let out = cmd.output().unwrap();
        let took = started.elapsed();
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("Wr0ng-Passw0rd"), "{stderr}");
        assert!(!stderr.contains("the-right-one"), "{stderr}");
        if verbose.is_empty() {
            assert_refused(
                &(out, took),
                78,
                AT_ONCE,
                &[
                    "lock_store.password",
                    "refused the credentials",
                    "check username and password",
                ],
            );
        } else {
            // Logs on, the error is still the last line.
            assert_eq!(out.status.code(), Some(78), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert!(
                stderr.lines().last().unwrap().starts_with("ticketlock: "),
                "{stderr}"
            );
        }
    }
    // From the endpoints file, and with no password at all.
    let dir = tempdir();
    for password in ["  password: Wr0ng-Passw0rd\n", ""] {
        let yaml = format!(
            "lock_store:\n  type: redis\n  host: 127.0.0.1\n  port: {}\n{password}",
            server.port()
        );
        let refused = run_with_file(dir.path(), yaml.as_bytes());
        assert!(!text(&refused.0.stderr).contains("Wr0ng-Passw0rd"));
        assert_refused(&refused, 78, AT_ONCE, &["lock_store.password"]);
    }
}

#[test]
fn tls_with_a_wrong_ca_names_ssl_ca_certs() {
    let server = server!(RedisOptions {
        tls: true,
        ..Default::default()
    });
    let certs = server.tls_files().unwrap();
    let url = |ca: &Path| {
        format!(
            "rediss://127.0.0.1:{}/1?socket_timeout=2&ssl_ca_certs={}",
            server.port(),
            ca.display()
        )
    };
    // The right CA works, so the refusal below is the CA's doing.
    let (ok, _) = run(&["--redis", &url(&certs.ca_cert)], &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout), "ran\n");
    assert_refused(
        &run(&["--redis", &url(&certs.other_ca_cert)], &[]),
        78,
        AT_ONCE,
        &[
            "lock_store.ssl_ca_certs",
            "UnknownIssuer",
            "give the CA that signed it",
        ],
    );
    // A CA file that does not exist.
    assert_refused(
        &run(&["--redis", &url(Path::new("/nonexistent/ca.pem"))], &[]),
        78,
        AT_ONCE,
        &["lock_store.ssl_ca_certs", "/nonexistent/ca.pem", "PEM file"],
    );
}

#[test]
fn tls_and_plain_mixed_up_fail_within_the_socket_timeout() {
    let tls = server!(RedisOptions {
        tls: true,
        ..Default::default()
    });
    let plain = server!(RedisOptions::default());
    // Plain to a TLS port, and TLS to a plain port: unavailable, with a
    // hint at the TLS setting.
    let plain_to_tls = format!("redis://127.0.0.1:{}/1?socket_timeout=1", tls.port());
    let tls_to_plain = format!(
        "rediss://127.0.0.1:{}/1?socket_timeout=1&ssl_ca_certs={}",
        plain.port(),
        tls.tls_files().unwrap().ca_cert.display()
    );
    for (url, hint) in [
        (plain_to_tls, "if the server requires TLS, use rediss://"),
        (
            tls_to_plain,
            "if the server does not speak TLS, use redis://",
        ),
    ] {
        assert_refused(
            &run(&["--redis", &url], &[]),
            69,
            Duration::from_millis(2500),
            &["lock store unavailable", hint],
        );
    }
}

/// Not a mistake of the user's but of a flood: a full queue is refused at
/// once with 75 (retry later), and the record is left as it was.
#[test]
fn a_full_queue_exits_75_and_leaves_the_record_alone() {
    let server = server!(RedisOptions::default());
    let far = 4_000_000_000.5_f64;
    let tickets: Vec<String> = (0..ticketlock::DEFAULT_MAX_QUEUE_LEN)
        .map(|n| {
            serde_json::to_string(&format!("{{\"number\": {n}, \"expires\": {far}}}")).unwrap()
        })
        .collect();
    let record = format!(
        "{{\"conversation_id\": \"c\", \"tickets\": [{}]}}",
        tickets.join(", ")
    );
    support::resp_set(server.port(), 1, b"lock:c", record.as_bytes());
    let url = format!("{}/1", server.url());
    assert_refused(
        &run(&["--redis", &url], &[]),
        75,
        AT_ONCE,
        &[
            "conversation \"c\"",
            "is full (1000 tickets)",
            "retry later",
        ],
    );
    assert_eq!(server.cli(&["-n", "1", "GET", "lock:c"]), record);
}
