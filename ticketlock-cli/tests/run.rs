//! `ticketlock run`, run as a program.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};

fn ticketlock() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ticketlock"));
    c.env_remove("TICKET_LOCK_LIFETIME")
        .env_remove("TICKETLOCK_REDIS")
        .env_remove("TICKETLOCK_ENDPOINTS")
        .env_remove("TICKETLOCK_REDIS_PASSWORD")
        .env_remove("TICKETLOCK_POSTGRES")
        .env_remove("RUST_LOG");
    c
}

fn run(args: &[&str]) -> Output {
    ticketlock()
        .arg("run")
        .args(args)
        .output()
        .expect("run ticketlock")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The error is one `ticketlock: ...` line on stderr, and nothing else.
fn assert_one_error_line(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("ticketlock: "), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
}

#[test]
fn the_command_status_is_passed_through() {
    for code in [0, 7, 255] {
        let script = format!("exit {code}");
        let out = run(&["--allow-memory", "c1", "--", "sh", "-c", &script]);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
    }
}

#[test]
fn the_command_may_follow_without_a_double_dash_like_flock() {
    let out = run(&["--allow-memory", "c1", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[test]
fn the_command_sees_the_lock_in_its_environment() {
    let out = run(&[
        "--allow-memory",
        "sender-42",
        "--",
        "sh",
        "-c",
        "echo \"$TICKETLOCK_CONVERSATION_ID|$TICKETLOCK_TICKET|$TICKETLOCK_FENCING_TOKEN\"",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let fields: Vec<&str> = stdout.trim_end().split('|').collect();
    assert_eq!(fields.len(), 3, "{stdout}");
    assert_eq!(fields[0], "sender-42");
    // First ticket of a fresh store.
    assert_eq!(fields[1], "0");
    let token: u64 = fields[2].parse().expect("a numeric fencing token");
    assert!(token > 0, "{stdout}");
}

#[test]
fn a_command_killed_by_a_signal_gives_128_plus_the_signal() {
    let out = run(&["--allow-memory", "c1", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(128 + 9), "{}", text(&out.stderr));
}

#[test]
fn without_a_shared_store_run_refuses_and_says_why() {
    let out = run(&["c1", "--", "sh", "-c", "echo ran"]);
    assert_eq!(out.status.code(), Some(64));
    assert_one_error_line(
        &out,
        "ticketlock: run: no shared store given (--redis/--postgres/--endpoints); the in-memory store only serializes within this process",
    );
    assert_one_error_line(&out, "--allow-memory");
    assert!(
        out.stdout.is_empty(),
        "the command ran: {}",
        text(&out.stdout)
    );
}

#[test]
fn with_allow_memory_it_runs_without_complaint() {
    let out = run(&["--allow-memory", "c1", "--", "sh", "-c", "echo ran"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "ran\n");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn bad_usage_exits_64() {
    for args in [
        &["--allow-memory", "c1"][..],    // no command
        &["--allow-memory"],              // no conversation
        &["--bogus", "c1", "--", "true"], // unknown flag
        &[
            "--redis",
            "redis://localhost",
            "--endpoints",
            "e.yml",
            "c1",
            "--",
            "true",
        ],
        &["--allow-memory", "--lifetime", "0", "c1", "--", "true"],
        &["--allow-memory", "--timeout", "soon", "c1", "--", "true"],
        &["--allow-memory", "", "--", "true"], // empty conversation id
    ] {
        let out = run(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.starts_with("ticketlock: "), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    let out = ticketlock().output().unwrap();
    assert_eq!(out.status.code(), Some(64), "no subcommand");
}

#[test]
fn help_and_version_exit_0() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["demo", "--help"],
        &["--version"],
    ] {
        let out = ticketlock().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn a_bad_lifetime_in_the_environment_is_a_configuration_error() {
    let out = ticketlock()
        .args(["run", "--allow-memory", "c1", "--", "sh", "-c", "echo ran"])
        .env("TICKET_LOCK_LIFETIME", "abc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert_one_error_line(&out, "TICKET_LOCK_LIFETIME");
    assert_one_error_line(&out, "\"abc\"");
    assert!(out.stdout.is_empty());
}

#[test]
fn an_unusable_store_flag_is_a_configuration_error() {
    let out = run(&["--redis", "nonsense", "c1", "--", "true"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert_one_error_line(&out, "not a usable URL");
}

#[test]
fn a_missing_command_exits_127() {
    let out = run(&[
        "--allow-memory",
        "c1",
        "--",
        "no-such-command-ticketlock-test",
    ]);
    assert_eq!(out.status.code(), Some(127));
    assert_one_error_line(&out, "command not found: no-such-command-ticketlock-test");
}

#[test]
fn a_command_that_cannot_be_executed_exits_126() {
    let dir = std::env::temp_dir().join(format!("ticketlock-run-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("not-executable");
    std::fs::write(&file, "#!/bin/sh\necho ran\n").unwrap();
    let out = run(&["--allow-memory", "c1", "--", file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(126));
    assert_one_error_line(&out, "permission denied");
    assert!(out.stdout.is_empty());
}

/// A signal sent to `ticketlock run` reaches the command, and `run` waits
/// for it and exits with its status. (No terminal here: with one, a Ctrl-C
/// reaches the command from the terminal and is not forwarded again; that
/// case is not automated.)
#[cfg(unix)]
fn assert_forwarded(signal: nix::sys::signal::Signal, name: &str) {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;

    // Gives up after about 10 s, so that a lost signal fails the test
    // instead of hanging it.
    let script = format!(
        "trap 'echo got-{name}; exit 3' {name}; echo ready; \
         i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; echo no-signal"
    );
    let mut child = ticketlock()
        .args(["run", "--allow-memory", "c1", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), format!("got-{name}"));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{name}");
}

#[cfg(unix)]
#[test]
fn sigterm_is_forwarded_to_the_command() {
    assert_forwarded(nix::sys::signal::Signal::SIGTERM, "TERM");
}

#[cfg(unix)]
#[test]
fn sigint_from_outside_a_terminal_is_forwarded_to_the_command() {
    assert_forwarded(nix::sys::signal::Signal::SIGINT, "INT");
}

#[test]
fn a_zero_timeout_takes_a_free_lock() {
    let out = run(&[
        "--allow-memory",
        "--timeout",
        "0",
        "c1",
        "--",
        "sh",
        "-c",
        "exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
}

// Exit 75 (--timeout passed) and 69 (store unavailable) need a store shared
// between processes: they come with the Redis store's tests.

/// SIGKILL of `run` takes its command along (PR_SET_PDEATHSIG): nobody
/// renews the lease any more, so the command must not go on inside.
#[cfg(target_os = "linux")]
#[test]
fn sigkill_of_run_kills_its_command() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let mut child = ticketlock()
        .args(["run", "--allow-memory", "c1", "--", "sh", "-c"])
        .arg("echo $$ > \"$1\"; exec sleep 30")
        .arg("section")
        .arg(&pid_file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Gone, or a zombie waiting for whoever adopted it to reap it.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let state = stat.rsplit_once(") ")?.1.chars().next()?;
                Some(state != 'Z' && state != 'X')
            })
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive() {
        if std::time::Instant::now() > deadline {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("the command (pid {pid}) outlived `ticketlock run` by 5 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The id limit is one every entry point honours: an id of the longest
/// accepted length reaches the command in its environment (the kernel
/// refuses a variable past 128 KiB), and a longer one is bad usage, not
/// "Argument list too long".
#[test]
fn the_longest_id_reaches_the_command_and_a_longer_one_is_bad_usage() {
    let longest = "é".repeat(ticketlock::MAX_ID_LEN / 2);
    let out = run(&[
        "--allow-memory",
        &longest,
        "--",
        "sh",
        "-c",
        "printf %s \"$TICKETLOCK_CONVERSATION_ID\" | wc -c",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), ticketlock::MAX_ID_LEN.to_string());
    for len in [ticketlock::MAX_ID_LEN + 1, 131_071] {
        let out = run(&["--allow-memory", &"x".repeat(len), "--", "true"]);
        assert_eq!(out.status.code(), Some(64), "{len}");
        assert_one_error_line(&out, "longer than 64 KiB");
    }
}
