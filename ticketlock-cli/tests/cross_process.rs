//! Locks across processes: `ticketlock run` processes against a
//! redis-server of the test's own.
//!
//! Critical sections are shell commands that record what they see: each
//! makes a witness directory on entry (mkdir fails if another section is
//! inside: an overlap) and appends its entry and exit to a log.

#[path = "support/cli.rs"]
mod cli;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cli::{Proc, Store, assert_one_error_line, lines, text, ticketlock, wait_until};
use ticketlock_test_support::RedisServer;

/// A critical section. `$1`: name, `$2`: log, `$3`: witness dir, `$4`: a
/// file to wait for before leaving (waits at most 10 s), or `-` to leave
/// after a short pause.
const SECTION: &str = r#"
if ! mkdir "$3" 2>/dev/null; then echo "overlap $1" >> "$2"; fi
echo "enter $1 $TICKETLOCK_TICKET $TICKETLOCK_FENCING_TOKEN" >> "$2"
if [ "$4" = - ]; then
  sleep 0.02
else
  i=0; while [ ! -e "$4" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
fi
rmdir "$3"
echo "exit $1" >> "$2"
"#;

fn section(url: &str, id: &str, name: &str, dir: &Path, go: &str) -> Proc {
    Proc::spawn(
        ticketlock()
            .args([
                "run", "--redis", url, id, "--", "sh", "-c", SECTION, "section", name,
            ])
            .arg(dir.join("log"))
            .arg(dir.join("witness"))
            .arg(go)
            .stderr(Stdio::piped()),
    )
}

/// An entry in the log: name, ticket, fencing token.
#[derive(Debug)]
struct Entry {
    name: String,
    ticket: u64,
    token: u64,
}

/// Checks that the log is a sequence of enter/exit pairs, one section at a
/// time, and returns the entries in order.
fn entries(log: &[String]) -> Vec<Entry> {
    assert!(
        !log.iter().any(|l| l.starts_with("overlap")),
        "sections overlapped:\n{}",
        log.join("\n")
    );
    assert_eq!(log.len() % 2, 0, "{}", log.join("\n"));
    log.chunks(2)
        .map(|pair| {
            let enter: Vec<&str> = pair[0].split(' ').collect();
            assert_eq!(enter.len(), 4, "{pair:?}");
            assert_eq!(enter[0], "enter", "{pair:?}");
            assert_eq!(
                pair[1],
                format!("exit {}", enter[1]),
                "another entered: {pair:?}"
            );
            Entry {
                name: enter[1].to_string(),
                ticket: enter[2].parse().expect("a ticket number"),
                token: enter[3].parse().expect("a fencing token"),
            }
        })
        .collect()
}

fn assert_tokens_increase(entries: &[Entry]) {
    for w in entries.windows(2) {
        assert!(
            w[1].token > w[0].token,
            "fencing token did not increase: {w:?}"
        );
    }
}

#[test]
fn processes_enter_one_at_a_time_in_the_order_they_queued() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let store = Store::connect(&url);
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let go_arg = go.to_str().unwrap();

    let holder = section(&url, "conv", "H", dir.path(), go_arg);
    let log = dir.path().join("log");
    wait_until("the holder entered", Duration::from_secs(10), || {
        lines(&log).iter().any(|l| l.starts_with("enter H "))
    });
    // Queued one at a time: each starts only when the previous one's ticket
    // is in the record, so the queue order is P1..P6.
    let mut waiters = Vec::new();
    for i in 1..=6 {
        waiters.push(section(&url, "conv", &format!("P{i}"), dir.path(), "-"));
        wait_until(&format!("P{i} is queued"), Duration::from_secs(10), || {
            store.live_tickets("conv").len() == i + 1
        });
    }
    std::fs::write(&go, "").unwrap();
    for p in std::iter::once(holder).chain(waiters) {
        let out = p.output(Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }

    let entries = entries(&lines(&log));
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["H", "P1", "P2", "P3", "P4", "P5", "P6"]);
    let tickets: Vec<u64> = entries.iter().map(|e| e.ticket).collect();
    assert_eq!(tickets, [0, 1, 2, 3, 4, 5, 6]);
    assert_tokens_increase(&entries);
    assert_eq!(
        store.record("conv"),
        None,
        "the last release removes the record"
    );
}

#[test]
fn many_processes_on_two_conversations_never_overlap() {
    const PROCESSES: usize = 6;
    const SECTIONS: usize = 15;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let dir = tempfile::tempdir().unwrap();
    for c in 0..2 {
        std::fs::create_dir(dir.path().join(format!("c{c}"))).unwrap();
    }
    // Each process runs SECTIONS sections, alternating conversations; a
    // failed `run` is logged.
    let body = r#"
k=$1; shift
i=0
while [ $i -lt "$SECTIONS" ]; do
  c=$(( (i + k) % 2 ))
  "$TL" run --redis "$URL" "conv$c" -- sh -c "$SECTION" section "p$k" "$DIR/c$c/log" "$DIR/c$c/witness" - \
    || echo "run failed with status $?" >> "$DIR/errors"
  i=$((i+1))
done
"#;
    let started = Instant::now();
    let loops: Vec<Proc> = (0..PROCESSES)
        .map(|k| {
            Proc::spawn(
                std::process::Command::new("sh")
                    .args(["-c", body, "loop"])
                    .arg(k.to_string())
                    .env("TL", env!("CARGO_BIN_EXE_ticketlock"))
                    .env("URL", &url)
                    .env("DIR", dir.path())
                    .env("SECTION", SECTION)
                    .env("SECTIONS", SECTIONS.to_string())
                    .env_remove("TICKET_LOCK_LIFETIME")
                    .env_remove("TICKETLOCK_REDIS")
                    .env_remove("TICKETLOCK_ENDPOINTS")
                    .env_remove("TICKETLOCK_REDIS_PASSWORD")
                    .env_remove("TICKETLOCK_POSTGRES")
                    .env_remove("RUST_LOG"),
            )
        })
        .collect();
    for mut p in loops {
        assert!(p.wait_for(Duration::from_secs(60)).success());
    }
    let elapsed = started.elapsed();
    let errors = lines(&dir.path().join("errors"));
    assert!(errors.is_empty(), "{errors:?}");
    let mut done = 0;
    for c in 0..2 {
        let entries = entries(&lines(&dir.path().join(format!("c{c}/log"))));
        assert_tokens_increase(&entries);
        done += entries.len();
    }
    assert_eq!(done, PROCESSES * SECTIONS, "every section ran, once");
    eprintln!("{done} sections in {elapsed:?}");
}

/// Reads the child's stdout on a thread and timestamps each line as it
/// arrives.
fn timestamped_lines(child: &mut Proc) -> mpsc::Receiver<(Instant, String)> {
    let stdout = child.child().stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(unix)]
#[test]
fn a_holder_killed_with_sigkill_blocks_for_no_longer_than_its_lifetime() {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    use std::os::unix::process::CommandExt as _;

    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let store = Store::connect(&url);
    let lifetime = Duration::from_secs(1);
    // In a process group of its own, so that one signal kills `ticketlock`
    // and its command together.
    let mut holder = Proc::spawn(
        ticketlock()
            .args(["run", "--redis", &url, "--lifetime", "1", "conv", "--"])
            .args(["sh", "-c", "echo held; exec sleep 60"])
            .stdout(Stdio::piped())
            .process_group(0),
    );
    let held = timestamped_lines(&mut holder);
    held.recv_timeout(Duration::from_secs(10))
        .expect("the holder entered");
    // Its wait time is far longer than the test: only the timed wake at the
    // holder's expiry can let it in.
    let mut waiter = Proc::spawn(
        ticketlock()
            .args(["run", "--redis", &url, "--wait-time", "3600", "conv", "--"])
            .args(["echo", "entered"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let entered = timestamped_lines(&mut waiter);
    wait_until("the waiter is queued", Duration::from_secs(10), || {
        store.live_tickets("conv").len() == 2
    });
    // Past a few renewals, so the lease is alive only thanks to them.
    std::thread::sleep(Duration::from_millis(1500));
    let pgid = Pid::from_raw(holder.id() as i32);
    killpg(pgid, Signal::SIGKILL).expect("kill the holder's process group");
    let killed = Instant::now();
    let status = holder.wait_for(Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    let (at, line) = entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the waiter entered");
    assert_eq!(line, "entered");
    let blocked = at.duration_since(killed);
    assert!(
        blocked <= lifetime + Duration::from_millis(300),
        "the conversation stayed blocked {blocked:?} after the holder was killed \
         (lifetime {lifetime:?})"
    );
    eprintln!("blocked {blocked:?} after SIGKILL (lifetime {lifetime:?})");
    let out = waiter.output(Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn redis_killed_while_waiting_is_one_clear_error_and_a_restart_recovers() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0?socket_timeout=1", server.url());
    let store = Store::connect(&url);
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let mut holder = Proc::spawn(
        ticketlock()
            .args(["run", "--redis", &url, "--lifetime", "3", "conv", "--"])
            .args(["sh", "-c", "echo held; i=0; while [ ! -e \"$1\" ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done", "holder"])
            .arg(&go)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    timestamped_lines(&mut holder)
        .recv_timeout(Duration::from_secs(10))
        .expect("the holder entered");
    let waiter = Proc::spawn(
        ticketlock()
            .args(["run", "--redis", &url, "--lifetime", "2", "conv", "--"])
            .args(["echo", "entered"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    wait_until("the waiter is queued", Duration::from_secs(10), || {
        store.live_tickets("conv").len() == 2
    });
    drop(store);

    server.kill();
    let killed = Instant::now();
    let out = waiter.output(Duration::from_secs(10));
    let gave_up = killed.elapsed();
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(
        out.stdout.is_empty(),
        "the waiter entered: {}",
        text(&out.stdout)
    );
    assert_one_error_line(&out, &["lock store unavailable (redis 127.0.0.1:"]);
    // It keeps its ticket through failed looks while the ticket lives (a
    // lifetime, 2 s, after its last look that reached Redis, at most its
    // wait time, 1 s, before the kill), then reports the failure of its
    // last look (a try and a retry: two socket timeouts, 1 s each).
    let bound = Duration::from_secs(4) + Duration::from_millis(500);
    assert!(gave_up <= bound, "the waiter took {gave_up:?} to give up");
    eprintln!("the waiter gave up {gave_up:?} after redis died");

    // Once Redis is back (empty), the holder learns that its lease is gone
    // (a renewal finds the ticket missing, or none succeeded for a whole
    // lifetime): its command is stopped and `run` exits 75.
    server.restart();
    let out = holder.output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the lease of conversation \"conv\" (ticket 0) was lost"),
        "{stderr}"
    );
    assert!(stderr.contains("sending SIGTERM"), "{stderr}");
    assert!(!stderr.contains("could not release"), "{stderr}");

    // And new processes work at once.
    let out = ticketlock()
        .args(["run", "--redis", &url, "conv", "--", "echo", "entered"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "entered\n");
}

#[test]
fn a_timeout_behind_a_holder_exits_75_and_leaves_no_ticket() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let store = Store::connect(&url);
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let holder = section(&url, "conv", "H", dir.path(), go.to_str().unwrap());
    wait_until("the holder holds", Duration::from_secs(10), || {
        store.live_tickets("conv") == [0]
    });

    let started = Instant::now();
    let out = ticketlock()
        .args([
            "run",
            "--redis",
            &url,
            "--timeout",
            "0.3",
            "conv",
            "--",
            "echo",
            "entered",
        ])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "it entered: {}", text(&out.stdout));
    assert_one_error_line(
        &out,
        &["timed out after", "\"conv\"", "the ticket was withdrawn"],
    );
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // Withdrawn at once, not left to expire.
    assert_eq!(store.live_tickets("conv"), [0]);
    let record = store.record("conv").expect("the holder's record");
    assert_eq!(record.tickets().len(), 1, "{record:?}");

    std::fs::write(&go, "").unwrap();
    let out = holder.output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn an_interrupted_waiter_leaves_no_ticket_behind() {
    // The interrupted request withdraws its ticket in the background; `run`
    // must wait for that before it exits, or the ticket holds up the queue
    // until it expires.
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("{}/0", server.url());
    let store = Store::connect(&url);
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let holder = section(&url, "conv", "H", dir.path(), go.to_str().unwrap());
    wait_until("the holder holds", Duration::from_secs(10), || {
        store.live_tickets("conv") == [0]
    });
    let mut waiter = Proc::spawn(
        ticketlock()
            .args(["run", "--redis", &url, "conv", "--", "echo", "entered"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    wait_until("the waiter queued", Duration::from_secs(10), || {
        store.live_tickets("conv") == [0, 1]
    });
    let killed = std::process::Command::new("kill")
        .args(["-INT", &waiter.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = waiter.wait_for(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    // Checked right after the exit: no waiting for the withdrawal.
    assert_eq!(
        store.live_tickets("conv"),
        [0],
        "the interrupted ticket stayed"
    );
    std::fs::write(&go, "").unwrap();
    let out = holder.output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
