//! Holders and waiters frozen by SIGSTOP: `ticketlock run` processes on a
//! `redis-server` of the test's own. A frozen holder stops renewing, so its
//! lease ends within a lifetime and the next holder enters then (never
//! earlier), with a higher fencing token; a frozen waiter stops keeping
//! its ticket alive, so it drops out of the queue within a lifetime. (What
//! `run` does with its command when it wakes past its lease is `run`'s
//! business, tested with it.)

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ticketlock::{LockStore, LockStoreConfig};
use ticketlock_test_support::RedisServer;

const LIFETIME_S: f64 = 1.0;

fn url(server: &RedisServer) -> String {
    format!("{}/0?socket_timeout=1", server.url())
}

/// `ticketlock run` on `conversation` with a one-second lifetime, printing
/// its fencing token and then sleeping `secs`.
fn run(server: &RedisServer, conversation: &str, secs: f64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ticketlock"))
        .args(["run", "--redis", &url(server), "--lifetime"])
        .arg(LIFETIME_S.to_string())
        .args(["--wait-time", "0.1", conversation, "--", "sh", "-c"])
        .arg(format!("echo $TICKETLOCK_FENCING_TOKEN; sleep {secs}"))
        .env_remove("TICKET_LOCK_LIFETIME")
        .env_remove("TICKETLOCK_REDIS")
        .env_remove("TICKETLOCK_ENDPOINTS")
        .env_remove("TICKETLOCK_REDIS_PASSWORD")
        .env_remove("TICKETLOCK_POSTGRES")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ticketlock run")
}

/// The fencing token the command printed once `run` let it in.
fn token_of(child: &mut Child) -> u64 {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no token from the command: {line:?}"))
}

fn signal(child: &Child, s: Signal) {
    kill(Pid::from_raw(child.id() as i32), s).unwrap();
}

fn end(mut child: Child) {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
    let _ = child.kill();
    let _ = child.wait();
}

async fn store(server: &RedisServer) -> LockStore {
    LockStore::create(LockStoreConfig::from_url(&url(server)).unwrap())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_holder_loses_its_lease_within_a_lifetime_and_is_fenced() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let mut holder = run(&server, "stopped-holder", 30.0);
    let token = token_of(&mut holder);
    signal(&holder, Signal::SIGSTOP);
    let stopped = Instant::now();
    let guard = store
        .lock("stopped-holder")
        .lifetime(Duration::from_secs(5))
        .await
        .unwrap();
    let waited = stopped.elapsed();
    // The last renewal came at most a third of a lifetime before the stop.
    assert!(
        waited >= Duration::from_secs_f64(LIFETIME_S * 2.0 / 3.0 - 0.05),
        "entered {waited:?} after the stop, before the frozen holder's lease ended"
    );
    assert!(
        waited < Duration::from_secs_f64(LIFETIME_S + 0.5),
        "blocked {waited:?} by a frozen holder"
    );
    assert!(guard.fencing_token() > token);
    guard.release().await.unwrap();
    end(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_waiter_drops_out_of_the_queue_within_a_lifetime() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let holder = store
        .lock("stopped-waiter")
        .lifetime(Duration::from_secs(10))
        .await
        .unwrap();
    let waiter = run(&server, "stopped-waiter", 0.0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while store
        .get_lock("stopped-waiter")
        .await
        .unwrap()
        .map_or(0, |l| l.tickets().count())
        < 2
    {
        assert!(Instant::now() < deadline, "the waiter never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&waiter, Signal::SIGSTOP);
    let stopped = Instant::now();
    // Behind the frozen waiter, a third party waits; the holder leaves.
    let third = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .lock("stopped-waiter")
                .wait_time(Duration::from_millis(100))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    holder.release().await.unwrap();
    let g = tokio::time::timeout(Duration::from_secs(3), third)
        .await
        .expect("blocked by the frozen waiter's ticket")
        .unwrap()
        .unwrap();
    let waited = stopped.elapsed();
    assert!(
        waited < Duration::from_secs_f64(LIFETIME_S + 0.5),
        "blocked {waited:?} by a frozen waiter"
    );
    g.release().await.unwrap();
    end(waiter);
}
