//! The Redis baseline: round trips of a trivial server-side script, the
//! most a client can get out of the wire.
//!
//! An uncontended lock-then-release cycle needs at least two round trips (one
//! to take the lock, one to release it), so a baseline cycle is two
//! `EVALSHA` of `return 1`, at the same concurrency, over one multiplexed
//! connection shared by all tasks, as the store's own connection is. On a
//! cluster, each round trip names the conversation's key (which the script
//! does not touch), so it goes to the node that owns it, as the store's do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use ticketlock::{DeploymentMode, RedisConfig, Ticket, TicketLock};

use super::locker::Locker;
use super::progress::Progress;
use super::report::{Side, Stats};

/// A multiplexed connection and the trivial script.
#[derive(Clone)]
pub(crate) struct Wire {
    con: Con,
    script: Arc<redis::Script>,
}

/// One server's connection, or a cluster's.
#[derive(Clone)]
pub(crate) enum Con {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Con {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Con::Single(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Con::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Con::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::Single(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }
}

/// How many unrelated keys one pipeline writes or deletes.
const BATCH: u64 = 1000;

impl Wire {
    /// Connects to the server or cluster of `config`.
    pub(crate) async fn open(config: &RedisConfig) -> anyhow::Result<Wire> {
        if config.deployment_mode != DeploymentMode::Cluster {
            return Wire::connect(&client(config)?).await;
        }
        anyhow::ensure!(
            !config.use_ssl,
            "bench: the Redis baseline does not speak TLS; bench a cluster on plain TCP"
        );
        let nodes = config.endpoints.iter().map(|e| format!("redis://{e}"));
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(CALL_TIMEOUT)
            .response_timeout(CALL_TIMEOUT);
        if let Some(user) = &config.username {
            builder = builder.username(user);
        }
        if let Some(password) = &config.password {
            builder = builder.password(password.expose());
        }
        let con = builder
            .build()?
            .get_async_connection()
            .await
            .context("bench baseline: connecting to the cluster")?;
        Ok(Wire {
            con: Con::Cluster(con),
            script: Arc::new(redis::Script::new("return 1")),
        })
    }

    /// Connects to the server of `client`.
    pub(crate) async fn connect(client: &redis::Client) -> anyhow::Result<Wire> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT));
        let con = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .context("bench baseline: connecting to Redis")?;
        Ok(Wire {
            con: Con::Single(con),
            script: Arc::new(redis::Script::new("return 1")),
        })
    }

    /// One round trip: `EVALSHA` of `return 1` (loaded on `NOSCRIPT`),
    /// naming `key` (routed by it on a cluster).
    pub(crate) async fn round_trip(&self, key: &str) -> anyhow::Result<()> {
        let one: i64 = self
            .script
            .key(key)
            .invoke_async(&mut self.con.clone())
            .await
            .context("bench baseline: EVALSHA")?;
        anyhow::ensure!(one == 1, "bench baseline: the script returned {one}, not 1");
        Ok(())
    }

    /// The connection, for other clients of the same server (the `SET NX`
    /// baseline).
    pub(crate) fn con(&self) -> Con {
        self.con.clone()
    }

    /// Whether this is one server (not a cluster).
    pub(crate) fn is_standalone(&self) -> bool {
        matches!(self.con, Con::Single(_))
    }

    /// The CPU time the server has used since it started, user and system
    /// (`used_cpu_user` + `used_cpu_sys` of `INFO cpu`).
    pub(crate) async fn cpu(&self) -> anyhow::Result<Duration> {
        anyhow::ensure!(
            matches!(self.con, Con::Single(_)),
            "bench: Redis CPU figures need a standalone server, not a cluster"
        );
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut self.con.clone())
            .await
            .context("bench: INFO cpu")?;
        server_cpu(&info)
    }

    /// The median of `n` sequential `PING` round trips (at least one).
    pub(crate) async fn ping_p50(&self, n: usize) -> anyhow::Result<f64> {
        let mut samples = Vec::with_capacity(n.max(1));
        for _ in 0..n.max(1) {
            let t = Instant::now();
            redis::cmd("PING")
                .exec_async(&mut self.con.clone())
                .await
                .context("bench: PING")?;
            samples.push(t.elapsed().as_nanos() as u64);
        }
        Ok(Stats::of(&mut samples).map_or(0.0, |s| s.p50))
    }

    /// The server's `used_memory`, in bytes.
    pub(crate) async fn used_memory(&self) -> anyhow::Result<i64> {
        anyhow::ensure!(
            matches!(self.con, Con::Single(_)),
            "bench: memory figures need a standalone server, not a cluster"
        );
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.con.clone())
            .await
            .context("bench: INFO memory")?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .context("bench: no used_memory in INFO memory")
    }

    /// Stores a Rasa record of one ticket under `key`, as Rasa would.
    pub(crate) async fn set_record(&self, key: &str) -> anyhow::Result<()> {
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
            + 60.0;
        let record = TicketLock::with_tickets(key, [Ticket::new(0, expires)]).dumps();
        redis::cmd("SET")
            .arg(key)
            .arg(record)
            .arg("EX")
            .arg(60)
            .exec_async(&mut self.con.clone())
            .await
            .context("bench baseline: SET")
    }

    /// Deletes `key`.
    pub(crate) async fn del(&self, key: &str) -> anyhow::Result<()> {
        redis::cmd("DEL")
            .arg(key)
            .exec_async(&mut self.con.clone())
            .await
            .context("bench baseline: DEL")
    }

    /// Writes `n` keys unrelated to any conversation (for measuring the
    /// cost of a big keyspace), in pipelines.
    pub(crate) async fn fill_unrelated(&self, n: u64, tag: u32) -> anyhow::Result<()> {
        self.unrelated(n, tag, |p, key| {
            p.set(
                key,
                "{\"unrelated\": true, \"padding\": \"................\"}",
            )
            .ignore();
        })
        .await
        .context("bench: writing unrelated keys")
    }

    /// Deletes what [`Wire::fill_unrelated`] wrote.
    pub(crate) async fn clear_unrelated(&self, n: u64, tag: u32) -> anyhow::Result<()> {
        self.unrelated(n, tag, |p, key| {
            p.del(key).ignore();
        })
        .await
        .context("bench: deleting unrelated keys")
    }

    async fn unrelated(
        &self,
        n: u64,
        tag: u32,
        op: impl Fn(&mut redis::Pipeline, String),
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            matches!(self.con, Con::Single(_)),
            "bench: unrelated keys (--unrelated-keys) need a standalone server, not a cluster"
        );
        let mut con = self.con.clone();
        for start in (0..n).step_by(BATCH as usize) {
            let mut p = redis::pipe();
            for i in start..(start + BATCH).min(n) {
                op(&mut p, format!("ticketlock-bench:unrelated:{tag:08x}:{i}"));
            }
            p.exec_async(&mut con).await?;
        }
        Ok(())
    }

    /// The hand-off baseline: `rounds` times the four round trips of the
    /// holder's and the waiter's cycles, one after another; the sample is
    /// one round trip (the least a wake-up across the wire can cost).
    pub(crate) async fn handoff(
        &self,
        rounds: u64,
        label: &str,
        progress: &Progress,
    ) -> anyhow::Result<Side> {
        let done = Arc::new(AtomicU64::new(0));
        let phase = progress.phase(label, done.clone(), rounds);
        let mut samples = Vec::with_capacity(rounds as usize);
        let started = tokio::time::Instant::now();
        for _ in 0..rounds {
            self.round_trip("handoff").await?;
            self.round_trip("handoff").await?;
            let t = Instant::now();
            self.round_trip("handoff").await?;
            samples.push(t.elapsed().as_nanos() as u64);
            self.round_trip("handoff").await?;
            done.fetch_add(1, Ordering::Relaxed);
        }
        let elapsed = started.elapsed();
        drop(phase);
        Ok(Side {
            cycles: 2 * rounds,
            elapsed,
            handoff: Stats::of(&mut samples),
            ..Side::default()
        })
    }
}

impl Locker for Wire {
    type Guard = ();

    async fn lock(&self, id: &str) -> anyhow::Result<()> {
        self.round_trip(id).await
    }

    async fn release(&self, id: &str, (): ()) -> anyhow::Result<()> {
        self.round_trip(id).await
    }
}

/// A client for the server of `config` (a standalone server; the baseline
/// does not speak TLS or Sentinel; clusters go through [`Wire::open`]).
pub(crate) fn client(config: &RedisConfig) -> anyhow::Result<redis::Client> {
    use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
    anyhow::ensure!(
        !config.use_ssl,
        "bench: the Redis baseline does not speak TLS; bench a server on a plain redis:// URL"
    );
    anyhow::ensure!(
        config.deployment_mode == ticketlock::DeploymentMode::Standard,
        "bench: only a standalone Redis server or a cluster can be benched (deployment_mode is {:?})",
        config.deployment_mode
    );
    let mut settings = RedisConnectionInfo::default().set_db(config.db);
    if let Some(user) = &config.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password.expose());
    }
    let info = ConnectionAddr::Tcp(config.host.clone(), config.port)
        .into_connection_info()?
        .set_redis_settings(settings);
    let client = redis::Client::open(info)?;
    Ok(client)
}

/// `used_cpu_user` + `used_cpu_sys` of an `INFO cpu` reply.
fn server_cpu(info: &str) -> anyhow::Result<Duration> {
    let field = |name: &str| -> anyhow::Result<f64> {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .with_context(|| format!("bench: no {name} in INFO cpu"))
    };
    let seconds = field("used_cpu_user")? + field("used_cpu_sys")?;
    Duration::try_from_secs_f64(seconds)
        .with_context(|| format!("bench: INFO cpu reports {seconds} s of CPU"))
}

/// Bounds every baseline call, so a dead server fails the bench instead of
/// hanging it.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A private server for a test, and the configuration naming it (none,
/// with the skip shown, where there is no server outside CI).
#[cfg(test)]
pub(crate) fn test_server() -> Option<(ticketlock_test_support::RedisServer, RedisConfig)> {
    let server = ticketlock_test_support::RedisServer::start()?;
    let mut config = RedisConfig::default();
    config.host = "127.0.0.1".into();
    config.port = server.port();
    config.db = 0;
    Some((server, config))
}

#[cfg(test)]
mod tests {
    use ticketlock_test_support::RedisServer;

    use super::super::cycles::{Cycles, run};
    use super::*;

    fn server() -> Option<(RedisServer, RedisConfig)> {
        test_server()
    }

    /// Successful `EVALSHA` calls so far (a `NOSCRIPT` reply counts as
    /// failed).
    fn evalsha_calls(server: &RedisServer) -> u64 {
        let stats = server.cli(&["INFO", "commandstats"]);
        let Some(line) = stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        else {
            return 0;
        };
        let field = |name: &str| -> u64 {
            line.split(',')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map_or(0, |v| v.parse().unwrap())
        };
        field("calls") - field("failed_calls")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_baseline_cycle_is_two_evalsha_round_trips() {
        let Some((server, config)) = server() else {
            return;
        };
        let wire = Wire::connect(&client(&config).unwrap()).await.unwrap();
        // The script survives a flushed script cache (reloaded on NOSCRIPT).
        assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
        let before = evalsha_calls(&server);
        let plan = Cycles {
            messages: 300,
            concurrency: 8,
            conversations: None,
            record_waits: false,
            record_handoffs: false,
            work: std::time::Duration::ZERO,
        };
        let side = run(&wire, plan, 1, "b", &Progress::hidden()).await.unwrap();
        assert_eq!(side.cycles, 300);
        // 600 round trips; those refused with NOSCRIPT (the first of each
        // task) were retried with the script loaded.
        assert_eq!(evalsha_calls(&server) - before, 600);
        let side = wire.handoff(10, "h", &Progress::hidden()).await.unwrap();
        assert_eq!(side.cycles, 20);
        assert!(side.handoff.unwrap().p50 > 0.0);
        assert_eq!(evalsha_calls(&server) - before, 640);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_and_unrelated_keys_are_written_and_removed() {
        let Some((server, config)) = server() else {
            return;
        };
        let wire = Wire::connect(&client(&config).unwrap()).await.unwrap();
        wire.fill_unrelated(2500, 7).await.unwrap();
        assert_eq!(server.cli(&["DBSIZE"]), "2500");
        wire.clear_unrelated(2500, 7).await.unwrap();
        assert_eq!(server.cli(&["DBSIZE"]), "0");
        // Enough records that the server's own allocations meanwhile
        // (client buffers: a few KB, either way) do not move the figure
        // per record much; with 100 the test failed now and then.
        let side = super::super::memory::records(&wire, 2000, 3, &Progress::hidden())
            .await
            .unwrap();
        let per = side.bytes_per_conversation.unwrap();
        assert!(per > 50.0 && per < 1000.0, "{per} bytes per record");
        assert_eq!(server.cli(&["DBSIZE"]), "0");
        wire.set_record("c1").await.unwrap();
        let record = server.cli(&["GET", "c1"]);
        assert!(record.starts_with("{\"conversation_id\": \"c1\", \"tickets\": [\"{\\\"number\\\": 0, \\\"expires\\\": "), "{record}");
    }

    /// On a cluster each round trip goes to the node owning the
    /// conversation's key: the calls spread over the primaries and add up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cluster_baseline_routes_each_round_trip_by_its_conversation() {
        let Some(cluster) = ticketlock_test_support::RedisCluster::start(3, 0) else {
            return;
        };
        let mut config = RedisConfig::default();
        config.deployment_mode = ticketlock::DeploymentMode::Cluster;
        config.endpoints = cluster.endpoints();
        config.db = 0;
        let wire = Wire::open(&config).await.unwrap();
        let plan = Cycles {
            messages: 300,
            concurrency: 8,
            conversations: None,
            record_waits: false,
            record_handoffs: false,
            work: std::time::Duration::ZERO,
        };
        let side = run(&wire, plan, 1, "b", &Progress::hidden()).await.unwrap();
        assert_eq!(side.cycles, 300);
        let per_node: Vec<u64> = cluster.nodes().iter().map(evalsha_calls).collect();
        assert_eq!(per_node.iter().sum::<u64>(), 600, "{per_node:?}");
        assert!(per_node.iter().all(|&n| n > 0), "{per_node:?}");
        let err = wire.used_memory().await.unwrap_err().to_string();
        assert!(err.contains("standalone server"), "{err}");
    }

    #[test]
    fn server_cpu_adds_user_and_system_time() {
        let info = "# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:0.500000\r\n\
                    used_cpu_sys_children:9.000000\r\nused_cpu_user_children:9.000000\r\n";
        assert_eq!(server_cpu(info).unwrap(), Duration::from_millis(1750));
        let err = server_cpu("used_cpu_sys:1\r\n").unwrap_err().to_string();
        assert!(err.contains("no used_cpu_user"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_cpu_grows_with_work_and_ping_has_a_round_trip() {
        let Some((_server, config)) = server() else {
            return;
        };
        let wire = Wire::connect(&client(&config).unwrap()).await.unwrap();
        let before = wire.cpu().await.unwrap();
        for _ in 0..200 {
            wire.round_trip("k").await.unwrap();
        }
        assert!(wire.cpu().await.unwrap() >= before);
        assert!(wire.ping_p50(5).await.unwrap() > 0.0);
    }

    #[test]
    fn tls_and_sentinels_are_refused_with_a_reason() {
        let mut config = RedisConfig::default();
        config.use_ssl = true;
        let err = client(&config).unwrap_err().to_string();
        assert!(err.contains("does not speak TLS"), "{err}");
        let mut config = RedisConfig::default();
        config.deployment_mode = ticketlock::DeploymentMode::Sentinel;
        let err = client(&config).unwrap_err().to_string();
        assert!(
            err.contains("only a standalone Redis server or a cluster"),
            "{err}"
        );
    }
}
