//! A TCP proxy on loopback that injects network faults between a client
//! and a server: latency on every chunk, connections dropped on demand or
//! at random intervals, and replies swallowed (the request reaches the
//! server, its answer never reaches the client, and the connection
//! closes: the case a client can only resolve by retrying).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A fault-injecting TCP proxy in front of `127.0.0.1:<upstream>`.
///
/// Runs on a thread of its own (with its own tokio runtime), so sync and
/// async tests can use it alike; it stops when dropped.
///
/// ```
/// use std::time::Duration;
/// use ticketlock_test_support::FaultProxy;
///
/// let proxy = FaultProxy::start(1); // nothing listens on port 1
/// proxy.set_latency(Duration::from_millis(50), Duration::from_millis(200));
/// proxy.drop_every(Some((Duration::from_millis(300), Duration::from_millis(600))));
/// assert_ne!(proxy.port(), 0);
/// ```
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    upstream: u16,
    /// Latency range per chunk, in microseconds.
    latency: Mutex<(u64, u64)>,
    /// Bumped to close every open connection (`None`) or one (`Some(id)`).
    generation: watch::Sender<(u64, Option<u64>)>,
    /// The ids of the open connections.
    live: Mutex<std::collections::BTreeSet<u64>>,
    /// Swallow the next reply (server to client) and close its connection.
    swallow_reply: AtomicBool,
    /// Swallow the reply to the next request containing these bytes.
    swallow_reply_to: Mutex<Option<Vec<u8>>>,
    /// Close every new connection at once (the server looks down).
    down: AtomicBool,
    /// Random intervals between drops of every connection, if any.
    drop_every: Mutex<Option<(Duration, Duration)>>,
    /// Counters for the test's report.
    drops: AtomicU64,
    connections: AtomicU64,
    rng: Mutex<u64>,
}

impl Shared {
    fn random(&self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let mut s = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        // xorshift64*: enough for jitter.
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
        lo + r % (hi - lo + 1)
    }

    fn delay(&self) -> Duration {
        let (lo, hi) = *self.latency.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_micros(self.random(lo, hi))
    }

    fn drop_all(&self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
        self.generation.send_modify(|g| *g = (g.0 + 1, None));
    }

    /// Closes one open connection, chosen at random; false if none is open.
    fn drop_one(&self) -> bool {
        let victim = {
            let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            if live.is_empty() {
                return false;
            }
            let i = self.random(0, live.len() as u64 - 1) as usize;
            live.iter().nth(i).copied()
        };
        self.drops.fetch_add(1, Ordering::Relaxed);
        self.generation.send_modify(|g| *g = (g.0 + 1, victim));
        true
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards each connection to
    /// `127.0.0.1:upstream`, faultlessly until told otherwise.
    pub fn start(upstream: u16) -> FaultProxy {
        let (generation, _) = watch::channel((0, None));
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        let shared = Arc::new(Shared {
            upstream,
            latency: Mutex::new((0, 0)),
            generation,
            live: Mutex::new(std::collections::BTreeSet::new()),
            swallow_reply: AtomicBool::new(false),
            swallow_reply_to: Mutex::new(None),
            down: AtomicBool::new(false),
            drop_every: Mutex::new(None),
            drops: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            rng: Mutex::new(seed),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the proxy");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = stopped => {}
                        () = accept_loop(listener, shared.clone()) => {}
                        () = dropper(shared) => {}
                    }
                });
            })
        };
        FaultProxy {
            port,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Delays every request (client to server chunk) by a random time in
    /// `[min, max]`, so each round trip takes that much longer (order
    /// within a connection is kept).
    pub fn set_latency(&self, min: Duration, max: Duration) {
        *self
            .shared
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (min.as_micros() as u64, max.as_micros() as u64);
    }

    /// Closes every open connection now (both sides).
    pub fn drop_connections(&self) {
        self.shared.drop_all();
    }

    /// Closes one open connection, chosen at random (both sides); false
    /// when none is open.
    pub fn drop_one_connection(&self) -> bool {
        self.shared.drop_one()
    }

    /// Closes one open connection at random intervals in `[min, max]`;
    /// `None` stops.
    pub fn drop_every(&self, range: Option<(Duration, Duration)>) {
        *self
            .shared
            .drop_every
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = range;
    }

    /// The next reply from the server is swallowed and its connection
    /// closed: the request ran, but the client never learns its answer.
    pub fn swallow_next_reply(&self) {
        self.shared.swallow_reply.store(true, Ordering::SeqCst);
    }

    /// While `down`, every connection is closed as soon as it is made (and
    /// the open ones are closed now): the server looks unreachable.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        if down {
            self.shared.drop_all();
        }
    }

    /// The reply to the next request (client to server chunk) that
    /// contains `pattern` is swallowed and its connection closed, whatever
    /// other connections (a subscriber's, say) do meanwhile.
    pub fn swallow_reply_to(&self, pattern: &[u8]) {
        *self
            .shared
            .swallow_reply_to
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(pattern.to_vec());
    }

    /// Whether a reply is still waiting to be swallowed.
    pub fn reply_swallow_pending(&self) -> bool {
        self.shared.swallow_reply.load(Ordering::SeqCst)
            || self
                .shared
                .swallow_reply_to
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
    }

    /// How many times every connection was dropped, and how many
    /// connections were accepted so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.drops.load(Ordering::Relaxed),
            self.shared.connections.load(Ordering::Relaxed),
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let id = shared.connections.fetch_add(1, Ordering::Relaxed);
        if shared.down.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let upstream = SocketAddr::from(([127, 0, 0, 1], shared.upstream));
            let Ok(server) = TcpStream::connect(upstream).await else {
                return; // dropping the client closes it, as a refusal would
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let mut closed = shared.generation.subscribe();
            closed.mark_unchanged();
            shared
                .live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id);
            let targeted = async {
                loop {
                    if closed.changed().await.is_err() {
                        return;
                    }
                    let (_, target) = *closed.borrow_and_update();
                    if target.is_none_or(|t| t == id) {
                        return;
                    }
                }
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let marked = AtomicBool::new(false);
            tokio::select! {
                () = pump(cr, sw, &shared, false, &marked) => {}
                () = pump(sr, cw, &shared, true, &marked) => {}
                () = targeted => {}
            }
            shared
                .live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            // Dropping both halves of both sockets closes them.
        });
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: &Shared,
    replies: bool,
    // This connection's next reply is to be swallowed.
    marked: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if replies
            && (marked.swap(false, Ordering::SeqCst)
                || shared.swallow_reply.swap(false, Ordering::SeqCst))
        {
            return;
        }
        if !replies {
            let mut pattern = shared
                .swallow_reply_to
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let hit = pattern
                .as_deref()
                .is_some_and(|p| buf[..n].windows(p.len()).any(|w| w == p));
            if hit {
                *pattern = None;
                marked.store(true, Ordering::SeqCst);
            }
        }
        let delay = if replies {
            Duration::ZERO
        } else {
            shared.delay()
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn dropper(shared: Arc<Shared>) {
    loop {
        let range = *shared.drop_every.lock().unwrap_or_else(|e| e.into_inner());
        match range {
            None => tokio::time::sleep(Duration::from_millis(20)).await,
            Some((lo, hi)) => {
                let wait = shared.random(lo.as_micros() as u64, hi.as_micros() as u64);
                tokio::time::sleep(Duration::from_micros(wait)).await;
                if shared
                    .drop_every
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some()
                {
                    shared.drop_one();
                }
            }
        }
    }
}
