//! The command connection of a store, whatever the deployment: one
//! multiplexed connection to a server or the primary the sentinels name, or
//! a cluster connection that routes each command by its key (and follows
//! MOVED and ASK itself). Every attempt is bounded by the socket timeout.
//! A connection that failed is replaced, never used again: after a timeout
//! (a half-open connection would stall every later call), after a
//! connection error (in sentinel mode the primary may have moved, in a
//! cluster the slot map may be stale), and in sentinel mode after a
//! READONLY answer. The failed call is then sent again on a fresh
//! connection, within one more socket timeout (see [`Commands::run`]).
//!
//! With `min_replicas_ack`, a script that changes a record is sent in one
//! pipeline with `WAIT n timeout` (not allowed inside scripts): same
//! connection, right after, so the count covers this change and everything
//! the primary did before it.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::connection::Target;

/// A connection that can carry commands.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Why a call failed without an answer from the server.
pub(crate) enum Failure {
    /// The server answered with an error, or the connection failed.
    Redis(redis::RedisError),
    /// No answer within the socket timeout.
    Timeout,
    /// No connection could be made (sentinel mode: no primary found).
    Connect(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Redis(e) => write!(f, "{e}"),
            Failure::Timeout => f.write_str("no answer within the socket timeout"),
            Failure::Connect(why) => f.write_str(why),
        }
    }
}

pub(crate) struct Commands {
    target: Target,
    manager: ConnectionManagerConfig,
    timeout: Duration,
    /// The connection and its generation (bumped on replacement); `None`
    /// when it must be made anew (sentinel mode, after a failure).
    current: Mutex<(u64, Option<Conn>)>,
    /// One discovery at a time.
    discovering: tokio::sync::Mutex<()>,
}

impl Commands {
    pub(crate) fn new(target: Target, manager: ConnectionManagerConfig, timeout: Duration) -> Self {
        Commands {
            target,
            manager,
            timeout,
            current: Mutex::new((0, None)),
            discovering: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    fn current(&self) -> (u64, Option<Conn>) {
        let guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (guard.0, guard.1.clone())
    }

    /// The connection, made first if needed.
    pub(crate) async fn connection(&self) -> Result<(u64, Conn), Failure> {
        if let (generation, Some(conn)) = self.current() {
            return Ok((generation, conn));
        }
        let _one = self.discovering.lock().await;
        if let (generation, Some(conn)) = self.current() {
            return Ok((generation, conn));
        }
        let conn = self.open().await?;
        let mut guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
        guard.1 = Some(conn.clone());
        Ok((guard.0, conn))
    }

    async fn open(&self) -> Result<Conn, Failure> {
        match &self.target {
            Target::Standalone(client) => {
                ConnectionManager::new_lazy_with_config((**client).clone(), self.manager.clone())
                    .map(Conn::Single)
                    .map_err(Failure::Redis)
            }
            Target::Cluster(cluster) => {
                let client = cluster.client(None).map_err(Failure::Redis)?;
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(self.timeout);
                Ok(Conn::Cluster(
                    client.get_pending_async_connection_with_config(config),
                ))
            }
            Target::Sentinel(sentinel) => {
                let client = sentinel.primary().await.map_err(Failure::Connect)?;
                tracing::debug!(primary = ?client.get_connection_info().addr(), "redis: primary found through the sentinels");
                ConnectionManager::new_lazy_with_config(client, self.manager.clone())
                    .map(Conn::Single)
                    .map_err(Failure::Redis)
            }
        }
    }

    /// Drops the connection of `generation` so that the next call makes a
    /// new one; once per generation, however many calls failed.
    pub(crate) fn replace(&self, generation: u64) {
        let mut guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if guard.0 == generation {
            *guard = (generation + 1, None);
            crate::metrics::reconnect("command");
            tracing::debug!("redis: command connection dropped; the next call makes a new one");
        }
    }

    /// Whether the connection itself failed (dropped, refused, reset, a
    /// cluster node not reachable): a fresh connection may succeed, and
    /// every operation of the store may be sent again (see [`Commands::run`]).
    fn lost(e: &redis::RedisError) -> bool {
        e.is_io_error()
            || e.is_connection_dropped()
            || e.kind() == redis::ErrorKind::ClusterConnectionNotFound
    }

    /// Runs `call` on the connection within the timeout.
    ///
    /// After a connection error or a timeout the connection is replaced
    /// (a half-open or dropped connection is never used again), and the
    /// call is sent again on a fresh one: at once, then, while the server
    /// refuses connections (restarting), with a short backoff, all within
    /// one more socket timeout. Every operation of the store may be sent
    /// twice: issue and release carry a request id (`redis/request.lua`)
    /// that makes a retry answer what the first attempt did, and the
    /// others are idempotent (try_acquire and renew extend to a lifetime
    /// from now again; reads read). A READONLY answer (sentinel mode, a
    /// demoted primary: the command did not run) also sends it once more,
    /// to the primary the sentinels name now.
    pub(crate) async fn run<T, F, Fut>(&self, call: F) -> Result<T, Failure>
    where
        T: Send,
        F: Fn(Conn) -> Fut + Sync,
        Fut: std::future::Future<Output = redis::RedisResult<T>> + Send,
    {
        let mut readonly_retried = false;
        // Set by the first connection failure: the end of the retry window.
        let mut window: Option<tokio::time::Instant> = None;
        let mut backoff = Duration::from_millis(10);
        loop {
            let budget = match window {
                None => self.timeout,
                Some(end) => end.saturating_duration_since(tokio::time::Instant::now()),
            };
            // Boxed: the nested future types of every operation would
            // otherwise grow past the compiler's query depth in the crates
            // that use the store.
            let attempt: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> =
                Box::pin(async {
                    let (generation, conn) = self.connection().await?;
                    Ok::<_, Failure>((generation, call(conn).await))
                });
            let failure = match tokio::time::timeout(budget, attempt).await {
                Ok(Ok((_, Ok(v)))) => return Ok(v),
                Ok(Ok((generation, Err(e)))) => {
                    if Self::lost(&e) {
                        self.replace(generation);
                    } else if busy(&e) {
                        // The command did not run (LOADING after a restart,
                        // a cluster shard without a primary): try again,
                        // on the same connection.
                    } else if is_readonly(&e) && matches!(self.target, Target::Sentinel(_)) {
                        self.replace(generation);
                        if !readonly_retried {
                            readonly_retried = true;
                            continue;
                        }
                        return Err(Failure::Redis(e));
                    } else {
                        return Err(Failure::Redis(e));
                    }
                    Failure::Redis(e)
                }
                // No primary found (sentinel mode): worth another look.
                Ok(Err(f)) => f,
                Err(_) => {
                    let (generation, _) = self.current();
                    self.replace(generation);
                    Failure::Timeout
                }
            };
            let now = tokio::time::Instant::now();
            match window {
                None => {
                    tracing::debug!(
                        "redis: call failed on its connection; retrying on a fresh one"
                    );
                    window = Some(now + self.timeout);
                }
                Some(end) => {
                    let pause = backoff.min(end.saturating_duration_since(now));
                    if pause.is_zero() || matches!(failure, Failure::Timeout) {
                        return Err(failure);
                    }
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
            }
        }
    }
}

/// An answer that says the server did not run the command but may soon.
fn busy(e: &redis::RedisError) -> bool {
    use redis::ServerErrorKind as S;
    matches!(
        e.kind(),
        redis::ErrorKind::Server(S::BusyLoading | S::TryAgain | S::ClusterDown | S::MasterDown)
    )
}

fn is_readonly(e: &redis::RedisError) -> bool {
    e.code() == Some("READONLY")
}
