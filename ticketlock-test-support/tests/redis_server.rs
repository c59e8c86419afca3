//! The test server itself: start, restart, pause, TLS, ACL users.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ticketlock_test_support::{RedisOptions, RedisServer};

/// Sends raw RESP bytes on a fresh connection and returns the `replies`
/// one-line replies they get.
fn raw(server: &RedisServer, frames: &str, replies: usize) -> String {
    let mut stream = TcpStream::connect((server.host(), server.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(frames.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 512];
    while got.iter().filter(|&&b| b == b'\n').count() < replies {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "server closed the connection");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

#[test]
fn start_answers_ping_on_its_own_port() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    assert_eq!(server.host(), "127.0.0.1");
    assert_ne!(server.port(), 6379);
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert!(server.tls_files().is_none());
    assert_eq!(raw(&server, "*1\r\n$4\r\nPING\r\n", 1), "+PONG\r\n");
    assert_eq!(server.cli(&["PING"]), "PONG");
    assert_eq!(server.ping(Duration::from_secs(5)), Ok(()));
    // It is this server, configured as asked: no persistence, data in its temp dir.
    assert_eq!(
        server.cli(&["CONFIG", "GET", "dir"]),
        format!("dir\n{}", server.dir().canonicalize().unwrap().display())
    );
    assert_eq!(server.cli(&["CONFIG", "GET", "save"]), "save");
    assert_eq!(
        server.cli(&["CONFIG", "GET", "appendonly"]),
        "appendonly\nno"
    );
    assert!(server.log().contains("Ready to accept connections"));
}

#[test]
fn servers_are_isolated_and_drop_cleans_up() {
    let (Some(a), Some(b)) = (RedisServer::start(), RedisServer::start()) else {
        return;
    };
    assert_ne!(a.port(), b.port());
    a.cli(&["SET", "k", "from-a"]);
    assert_eq!(b.cli(&["EXISTS", "k"]), "0");

    let dir = a.dir().to_path_buf();
    let port = a.port();
    drop(a);
    assert!(!dir.exists(), "temp dir {} left behind", dir.display());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn cli_reports_errors() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let err = server.try_cli(&["NOSUCHCOMMAND"]).unwrap_err();
    assert!(err.starts_with("ERR unknown command"), "{err}");
    let panicked = std::panic::catch_unwind(|| server.cli(&["NOSUCHCOMMAND"])).unwrap_err();
    let message = panicked.downcast_ref::<String>().unwrap();
    assert!(message.contains("ERR unknown command"), "{message}");
    assert!(message.contains("--- redis-server log"), "{message}");
}

#[test]
fn kill_then_restart_keeps_the_port() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let port = server.port();
    let first_pid = server.pid().unwrap();
    server.cli(&["SET", "k", "v"]);

    server.kill();
    assert_eq!(server.pid(), None);
    assert!(server.ping(Duration::from_millis(500)).is_err());

    server.restart();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid().unwrap(), first_pid);
    assert_eq!(server.ping(Duration::from_secs(5)), Ok(()));
    // Without appendonly nothing survives.
    assert_eq!(server.cli(&["EXISTS", "k"]), "0");

    // Restarting a running server works too.
    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(server.cli(&["PING"]), "PONG");
}

#[test]
fn appendonly_data_survives_kill_and_restart() {
    let Some(mut server) = RedisServer::start_with(RedisOptions {
        appendonly: true,
        ..Default::default()
    }) else {
        return;
    };
    server.cli(&["SET", "lock:k", "written-before-kill"]);
    server.kill();
    server.restart();
    assert_eq!(server.cli(&["GET", "lock:k"]), "written-before-kill");
}

#[test]
fn pause_stops_answers_and_resume_brings_them_back() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    server.pause();
    let started = Instant::now();
    let err = server.ping(Duration::from_millis(300)).unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");

    server.resume();
    assert_eq!(server.ping(Duration::from_secs(5)), Ok(()));
}

#[test]
fn password_is_required_and_used_by_cli() {
    let Some(server) = RedisServer::start_with(RedisOptions {
        password: Some("s3cret".into()),
        ..Default::default()
    }) else {
        return;
    };
    assert_eq!(server.password(), Some("s3cret"));
    assert!(raw(&server, "*1\r\n$4\r\nPING\r\n", 1).starts_with("-NOAUTH"));
    assert_eq!(
        raw(
            &server,
            "*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*1\r\n$4\r\nPING\r\n",
            2
        ),
        "+OK\r\n+PONG\r\n"
    );
    assert_eq!(server.cli(&["PING"]), "PONG");
}

#[test]
fn acl_user_can_auth_with_its_rules() {
    let Some(mut server) = RedisServer::start_with(RedisOptions {
        password: Some("admin-pw".into()),
        acl_users: vec![
            "user locker on >locker-pw ~lock:* &* +@all".into(),
            "reader on >reader-pw ~* +get".into(),
        ],
        ..Default::default()
    }) else {
        return;
    };
    assert_eq!(
        raw(
            &server,
            "*3\r\n$4\r\nAUTH\r\n$6\r\nlocker\r\n$9\r\nlocker-pw\r\n",
            1
        ),
        "+OK\r\n"
    );
    assert!(
        raw(
            &server,
            "*3\r\n$4\r\nAUTH\r\n$6\r\nlocker\r\n$5\r\nwrong\r\n",
            1
        )
        .starts_with("-WRONGPASS")
    );
    let as_locker = ["--user", "locker", "--pass", "locker-pw"];
    assert_eq!(
        server.cli(&[&as_locker[..], &["SET", "lock:a", "1"]].concat()),
        "OK"
    );
    let denied = server
        .try_cli(&[&as_locker[..], &["SET", "other", "1"]].concat())
        .unwrap_err();
    assert!(denied.starts_with("NOPERM"), "{denied}");
    let denied = server
        .try_cli(&[
            "--user",
            "reader",
            "--pass",
            "reader-pw",
            "SET",
            "lock:a",
            "2",
        ])
        .unwrap_err();
    assert!(denied.starts_with("NOPERM"), "{denied}");

    // Users live in memory only: restart makes them again.
    server.restart();
    assert_eq!(server.cli(&[&as_locker[..], &["PING"]].concat()), "PONG");
}

#[test]
fn bad_acl_rule_fails_the_start_with_the_rule_named() {
    let started = std::panic::catch_unwind(|| {
        RedisServer::start_with(RedisOptions {
            acl_users: vec!["user broken on ~x +nosuchcommand".into()],
            ..Default::default()
        })
    });
    match started {
        Ok(None) => {}
        Ok(Some(_)) => panic!("a rule redis refuses was accepted"),
        Err(panic) => {
            let message = panic.downcast_ref::<String>().unwrap();
            assert!(
                message.contains("ACL rule \"user broken on ~x +nosuchcommand\" was refused"),
                "{message}"
            );
            assert!(message.contains("--- redis-server log"), "{message}");
        }
    }
}

#[test]
fn extra_args_come_last_and_override() {
    let Some(server) = RedisServer::start_with(RedisOptions {
        extra_args: vec!["--maxclients".into(), "17".into()],
        ..Default::default()
    }) else {
        return;
    };
    assert_eq!(
        server.cli(&["CONFIG", "GET", "maxclients"]),
        "maxclients\n17"
    );
}

#[test]
fn tls_server_answers_clients_trusting_its_ca_only() {
    let Some(server) = RedisServer::start_with(RedisOptions {
        tls: true,
        ..Default::default()
    }) else {
        return;
    };
    assert_eq!(
        server.url(),
        format!("rediss://127.0.0.1:{}", server.port())
    );
    let tls = server.tls_files().expect("tls files").clone();
    for path in [
        &tls.ca_cert,
        &tls.client_cert,
        &tls.other_ca_cert,
        &tls.other_client_cert,
    ] {
        assert!(
            fs::read_to_string(path)
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
    }
    for path in [&tls.client_key, &tls.server_key, &tls.other_client_key] {
        assert!(
            fs::read_to_string(path)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
    }
    assert_eq!(server.cli(&["PING"]), "PONG");
    assert_eq!(server.ping(Duration::from_secs(5)), Ok(()));

    let cli = |ca: &Path, cert: Option<(&Path, &Path)>| {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &server.port().to_string(), "-e"])
            .args(["--tls", "--cacert"])
            .arg(ca);
        if let Some((cert, key)) = cert {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let out = cmd.arg("PING").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        (out.status.success(), stdout, stderr)
    };
    // Client certificates are optional, but one from a stranger CA is refused.
    assert_eq!(
        cli(&tls.ca_cert, None),
        (true, "PONG".into(), String::new())
    );
    assert_eq!(
        cli(&tls.ca_cert, Some((&tls.client_cert, &tls.client_key))),
        (true, "PONG".into(), String::new())
    );
    let (ok, stdout, _) = cli(
        &tls.ca_cert,
        Some((&tls.other_client_cert, &tls.other_client_key)),
    );
    assert!(!ok && stdout.is_empty(), "{stdout}");
    let log = server.log();
    assert!(log.contains("certificate verify failed"), "{log}");
    // A client trusting only the other CA refuses the server.
    let (ok, stdout, stderr) = cli(&tls.other_ca_cert, None);
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
    // Plain RESP on the TLS port gets no PONG.
    let mut plain = TcpStream::connect((server.host(), server.port())).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    plain.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut buf = [0; 64];
    let got = plain.read(&mut buf).unwrap_or(0);
    assert!(!buf[..got].starts_with(b"+PONG"));
}

#[test]
fn tls_server_restarts_with_same_certificates() {
    let Some(mut server) = RedisServer::start_with(RedisOptions {
        tls: true,
        password: Some("pw".into()),
        ..Default::default()
    }) else {
        return;
    };
    let ca = fs::read(&server.tls_files().unwrap().ca_cert).unwrap();
    server.kill();
    server.restart();
    assert_eq!(fs::read(&server.tls_files().unwrap().ca_cert).unwrap(), ca);
    assert_eq!(server.cli(&["PING"]), "PONG");
}

/// Whether `pid` has exited (gone, or a zombie nobody reaped).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_server_never_outlives_its_test_process() {
    // A server owned by a static is never dropped. Child mode: start one,
    // forget it, and exit; the parent checks that it goes too.
    if std::env::var_os("TICKETLOCK_WATCHDOG_CHILD").is_some() {
        let server = RedisServer::start().expect("redis-server");
        println!("pid {}", server.pid().unwrap());
        std::mem::forget(server);
        std::process::exit(0);
    }
    if RedisServer::start().is_none() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_server_never_outlives_its_test_process",
            "--nocapture",
        ])
        .env("TICKETLOCK_WATCHDOG_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .unwrap_or_else(|| panic!("no pid from the child: {stdout}"))
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !exited(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server {pid} outlived its test process"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
