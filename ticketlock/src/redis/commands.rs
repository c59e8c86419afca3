//! The command connection of a store, whatever the deployment: one
//! multiplexed connection to a server or the primary the sentinels name, or
//! a cluster connection that routes each command by its key (and follows
//! MOVED and ASK itself). Every call is bounded by the socket timeout;
//! a connection that failed in a way reconnecting cannot fix in place is
//! replaced: after a timeout (a half-open connection would stall every
//! later call), in sentinel mode after a connection error or a READONLY
//! answer (the primary moved: ask the sentinels again), and in a cluster
//! after a connection error (the slot map may be stale after a failover).
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

    /// Whether `e` means the connection must be replaced rather than
    /// reconnected in place: in sentinel mode the primary may have moved;
    /// in a cluster, the slot map may be stale (a fresh connection asks the
    /// seed nodes again).
    fn must_replace(&self, e: &redis::RedisError) -> bool {
        let lost = !matches!(e.kind(), redis::ErrorKind::Server(_));
        match self.target {
            Target::Standalone(_) => false,
            Target::Cluster(_) => lost,
            Target::Sentinel(_) => lost || is_readonly(e),
        }
    }

    /// Runs `call` on the connection within the timeout, replacing the
    /// connection as the failure requires. A command that surely did not
    /// run (answered READONLY by a demoted server, or whose connection was
    /// refused) is sent once more on the new connection: after a failover,
    /// the first call then reaches the new primary instead of failing.
    pub(crate) async fn run<T, F, Fut>(&self, call: F) -> Result<T, Failure>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let mut retried = false;
        loop {
            let (generation, conn) = self.connection().await?;
            match tokio::time::timeout(self.timeout, call(conn)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
                    if self.must_replace(&e) {
                        self.replace(generation);
                        if !retried && (is_readonly(&e) || not_sent(&e)) {
                            retried = true;
                            continue;
                        }
                    }
                    return Err(Failure::Redis(e));
                }
                Err(_) => {
                    self.replace(generation);
                    return Err(Failure::Timeout);
                }
            }
        }
    }
}

/// Whether the command surely was not sent: the server was never reached.
/// (A broken pipe is not proof: the client reports it also for a request
/// in flight when the server closed the connection, maybe after running
/// it.)
fn not_sent(e: &redis::RedisError) -> bool {
    e.is_connection_refusal()
}

fn is_readonly(e: &redis::RedisError) -> bool {
    e.code() == Some("READONLY")
}
