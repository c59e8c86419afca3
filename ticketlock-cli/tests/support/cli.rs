//! Shared by the CLI's Redis tests: the binary, a library view of the
//! store, child processes that die with the test, and waiting with a
//! deadline. Included with `#[path]` by each test crate.

#![allow(dead_code)] // each test crate uses a part

use std::io::Write as _;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use ticketlock::{LockStore, LockStoreConfig, TicketLock};

/// The `ticketlock` binary, with the environment variables that change
/// its defaults removed.
pub fn ticketlock() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ticketlock"));
    c.env_remove("TICKET_LOCK_LIFETIME")
        .env_remove("TICKETLOCK_REDIS")
        .env_remove("TICKETLOCK_ENDPOINTS")
        .env_remove("TICKETLOCK_REDIS_PASSWORD")
        .env_remove("TICKETLOCK_POSTGRES")
        .env_remove("RUST_LOG");
    c
}

/// Runs `ticketlock ARGS` to completion.
pub fn tl(args: &[&str]) -> Output {
    ticketlock().args(args).output().expect("run ticketlock")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exactly one line on stderr, `ticketlock: ...`, containing each needle.
pub fn assert_one_error_line(out: &Output, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("ticketlock: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
}

/// Calls `done` every few milliseconds until it is true; panics after
/// `timeout` saying what did not happen.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// A child process killed (and reaped) when dropped, so that a failing
/// test leaves nothing running.
pub struct Proc(Option<Child>);

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc(Some(cmd.spawn().expect("spawn a child process")))
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the child is still owned")
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("the child is still owned").id()
    }

    /// Waits for it to exit, at most `timeout`; panics if it does not.
    pub fn wait_for(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child().try_wait().expect("wait for a child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "child {} still running after {timeout:?}",
                self.id()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for it to exit (at most `timeout`) and collects what it
    /// printed (needs piped stdout and stderr).
    pub fn output(mut self, timeout: Duration) -> Output {
        self.wait_for(timeout);
        let child = self.0.take().expect("the child is still owned");
        child.wait_with_output().expect("collect a child's output")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A library view of the store the binary uses, for reading records.
pub struct Store {
    rt: tokio::runtime::Runtime,
    store: LockStore,
}

impl Store {
    pub fn connect(url: &str) -> Store {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let config = LockStoreConfig::from_url(url).expect("a valid store URL");
        let store = rt
            .block_on(LockStore::create(config))
            .expect("connect to the test's redis-server");
        Store { rt, store }
    }

    pub fn record(&self, id: &str) -> Option<TicketLock> {
        self.rt
            .block_on(self.store.get_lock(id))
            .expect("read a record")
    }

    /// The numbers of the record's live tickets, in queue order.
    pub fn live_tickets(&self, id: &str) -> Vec<u64> {
        self.record(id).map_or_else(Vec::new, |lock| {
            lock.tickets()
                .filter(|t| !t.has_expired())
                .map(|t| t.number)
                .collect()
        })
    }

    pub fn raw(&self, id: &str) -> Option<Vec<u8>> {
        let redis = self.store.as_redis().expect("a redis store");
        self.rt
            .block_on(redis.raw_record(id))
            .expect("read a raw record")
    }

    pub fn lock_store(&self) -> &LockStore {
        &self.store
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// `SET key value` in database `db` over plain RESP: values and keys may be
/// any bytes (redis-cli arguments must be text).
pub fn resp_set(port: u16, db: u32, key: &[u8], value: &[u8]) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis-server");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let db = db.to_string();
    let mut request = Vec::new();
    for command in [&[&b"SELECT"[..], db.as_bytes()][..], &[b"SET", key, value]] {
        request.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
        for arg in command {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
    }
    conn.write_all(&request).expect("send SET");
    let mut reply = Vec::new();
    let mut buf = [0u8; 64];
    while !reply.ends_with(b"+OK\r\n+OK\r\n") {
        let n = std::io::Read::read(&mut conn, &mut buf).expect("read the reply");
        assert!(n > 0, "redis-server closed: {}", text(&reply));
        reply.extend_from_slice(&buf[..n]);
        assert!(!reply.starts_with(b"-"), "SET refused: {}", text(&reply));
    }
}

/// The lines of a log file (empty when it does not exist yet).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
