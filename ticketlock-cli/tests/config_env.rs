//! The store from the environment (`TICKETLOCK_REDIS`,
//! `TICKETLOCK_ENDPOINTS`, `TICKETLOCK_POSTGRES`), the password kept out of the URL
//! (`TICKETLOCK_REDIS_PASSWORD`, `--password-file`), credentials errors
//! that name the user, and endpoints.yml typos that are not silent.

#[path = "support/cli.rs"]
mod cli;

use std::process::Output;

use ticketlock_test_support::{PostgresServer, RedisOptions, RedisServer};

use cli::{assert_one_error_line, text, ticketlock};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn list(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = ticketlock();
    c.env_remove("TICKETLOCK_REDIS")
        .env_remove("TICKETLOCK_ENDPOINTS")
        .env_remove("TICKETLOCK_REDIS_PASSWORD")
        .env_remove("TICKETLOCK_POSTGRES")
        .arg("list")
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run ticketlock")
}

/// `list` found the store and it is empty: status 0, "no records".
fn assert_reached(out: &Output, url_shown: &str) {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_one_error_line(out, &["list: no records", url_shown]);
}

#[test]
fn the_store_comes_from_ticketlock_redis_and_a_flag_wins_over_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let shown = format!("127.0.0.1:{}/0", server.port());
    assert_reached(&list(&[("TICKETLOCK_REDIS", &url)], &[]), &shown);
    let elsewhere = format!("redis://127.0.0.1:{}/0", closed_port());
    assert_reached(
        &list(&[("TICKETLOCK_REDIS", &elsewhere)], &["--redis", &url]),
        &shown,
    );
    // Without flag or variable there is no store: usage.
    assert_eq!(list(&[], &[]).status.code(), Some(64));
}

#[test]
fn the_store_comes_from_ticketlock_endpoints() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("endpoints.yml");
    let yaml = format!(
        "lock_store:\n  type: redis\n  host: 127.0.0.1\n  port: {}\n  db: 3\n",
        server.port()
    );
    std::fs::write(&file, yaml).unwrap();
    let out = list(&[("TICKETLOCK_ENDPOINTS", file.to_str().unwrap())], &[]);
    assert_reached(&out, &format!("127.0.0.1:{}/3", server.port()));
    // Both variables: which one is meant is unclear.
    let out = list(
        &[
            ("TICKETLOCK_ENDPOINTS", file.to_str().unwrap()),
            ("TICKETLOCK_REDIS", "redis://127.0.0.1:1/0"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(78));
    assert_one_error_line(&out, &["both TICKETLOCK_ENDPOINTS and TICKETLOCK_REDIS"]);
}

#[test]
fn the_store_comes_from_ticketlock_postgres_and_a_flag_wins_over_it() {
    // Refused before any server is needed: two variables, or another scheme.
    let out = list(
        &[
            ("TICKETLOCK_REDIS", "redis://127.0.0.1:1/0"),
            ("TICKETLOCK_POSTGRES", "postgresql://u@127.0.0.1:1/db"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert_one_error_line(&out, &["both TICKETLOCK_REDIS and TICKETLOCK_POSTGRES"]);
    let out = list(&[("TICKETLOCK_POSTGRES", "redis://127.0.0.1:1/0")], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert_one_error_line(&out, &["TICKETLOCK_POSTGRES", "not a postgresql:// URL"]);

    let Some(server) = PostgresServer::start() else {
        return;
    };
    let shown = format!("postgresql 127.0.0.1:{}/postgres", server.port());
    assert_reached(
        &list(&[("TICKETLOCK_POSTGRES", &server.url())], &[]),
        &shown,
    );
    let elsewhere = format!("postgresql://u@127.0.0.1:{}/db", closed_port());
    assert_reached(
        &list(
            &[("TICKETLOCK_POSTGRES", &elsewhere)],
            &["--postgres", &server.url()],
        ),
        &shown,
    );
}

#[test]
fn the_password_comes_from_a_variable_or_a_file_and_a_refusal_names_the_user() {
    let Some(server) = RedisServer::start_with(RedisOptions {
        password: Some("sekrit".into()),
        acl_users: vec!["locker on >lockerpw ~* &* +@all".into()],
        ..Default::default()
    }) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}/0", server.port());
    let shown = format!("127.0.0.1:{}/0", server.port());
    assert_reached(
        &list(
            &[("TICKETLOCK_REDIS_PASSWORD", "sekrit")],
            &["--redis", &url],
        ),
        &shown,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "sekrit\n").unwrap();
    let with_file = ["--redis", &url, "--password-file", file.to_str().unwrap()];
    assert_reached(&list(&[], &with_file), &shown);
    // The file wins over the variable.
    assert_reached(
        &list(&[("TICKETLOCK_REDIS_PASSWORD", "wrong")], &with_file),
        &shown,
    );

    let out = list(
        &[("TICKETLOCK_REDIS_PASSWORD", "wrong")],
        &["--redis", &url],
    );
    assert_eq!(out.status.code(), Some(78));
    assert_one_error_line(&out, &["refused the credentials of the default user"]);
    assert!(!text(&out.stderr).contains("()"), "{}", text(&out.stderr));
    let user_url = format!("redis://locker@127.0.0.1:{}/0", server.port());
    let out = list(
        &[("TICKETLOCK_REDIS_PASSWORD", "wrong")],
        &["--redis", &user_url],
    );
    assert_eq!(out.status.code(), Some(78));
    assert_one_error_line(&out, &["refused the credentials of user \"locker\""]);
    assert_reached(
        &list(
            &[("TICKETLOCK_REDIS_PASSWORD", "lockerpw")],
            &["--redis", &user_url],
        ),
        &shown,
    );
}

#[test]
fn a_misspelt_endpoints_setting_warns_with_a_suggestion_and_strict_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("endpoints.yml");
    // `prot` for `port`: the port stays the default. A closed port is
    // named too, so that nothing is reached either way.
    let yaml = format!(
        "lock_store:\n  type: redis\n  host: 127.0.0.1\n  port: {}\n  prot: 1\n  socket_timeout: 1\n",
        closed_port()
    );
    std::fs::write(&file, yaml).unwrap();
    let out = list(&[], &["--endpoints", file.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    let warning = stderr
        .lines()
        .find(|l| l.contains("lock_store.prot"))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(
        warning.starts_with("ticketlock: warning: ") && warning.contains("did you mean `port`?"),
        "{warning}"
    );
    assert_eq!(out.status.code(), Some(69), "{stderr}");

    let out = list(&[], &["--endpoints", file.to_str().unwrap(), "--strict"]);
    assert_eq!(out.status.code(), Some(78));
    assert_one_error_line(
        &out,
        &["lock_store.prot", "did you mean `port`?", "--strict"],
    );
}

#[test]
fn help_names_the_variables() {
    let out = ticketlock().args(["run", "--help"]).output().unwrap();
    let help = text(&out.stdout);
    for name in [
        "TICKETLOCK_REDIS",
        "TICKETLOCK_POSTGRES",
        "--postgres",
        "TICKETLOCK_ENDPOINTS",
        "TICKETLOCK_REDIS_PASSWORD",
        "--password-file",
        "--strict",
    ] {
        assert!(help.contains(name), "{name} not in run --help");
    }
}

#[test]
fn torture_workers_get_the_password_file_too() {
    let Some(server) = RedisServer::start_with(RedisOptions {
        password: Some("sekrit".into()),
        ..Default::default()
    }) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "sekrit\n").unwrap();
    let url = format!("redis://127.0.0.1:{}/0", server.port());
    let out = ticketlock()
        .env_remove("TICKETLOCK_REDIS_PASSWORD")
        .env_remove("TICKETLOCK_POSTGRES")
        .args(["torture", "--redis", &url, "--password-file"])
        .arg(&file)
        .args([
            "--processes",
            "2",
            "--tasks",
            "2",
            "--duration",
            "0.5",
            "--json",
        ])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
    assert_eq!(report["crashed_workers"], 0, "{report}");
    assert!(report["sections"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn an_ignored_url_setting_warns_on_one_line_and_strict_refuses_it() {
    let url = format!(
        "redis://127.0.0.1:{}/0?ssl_ca_certs=/nowhere/ca.pem&socket_timeout=1",
        closed_port()
    );
    let out = list(&[], &["--redis", &url]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("ticketlock: warning: the Redis URL: ")
                && l.contains("TLS is off")),
        "{stderr}"
    );
    let out = list(&[], &["--redis", &url, "--strict"]);
    assert_eq!(out.status.code(), Some(78));
    assert_one_error_line(&out, &["TLS is off", "--strict"]);
}
