//! A sentinel-managed group of a test's own: one primary, two replicas and
//! three sentinels (`redis-server --sentinel`) on free loopback ports.

use std::thread;
use std::time::{Duration, Instant};

use crate::server::{RedisOptions, RedisServer};

/// The name the sentinels monitor the primary under.
pub const SERVICE: &str = "mymaster";
/// How long a primary may be silent before the sentinels call it down.
/// Twice the sentinels' 1 s ping period: at 1 s, on two busy cores, two
/// sentinels that had just switched to the new primary called it down
/// 1.005 s after the switch and up again 58 ms later, in step, and failed
/// over again from a healthy primary, which then stayed a primary without
/// replicas until the failover timeout (safe mode refused every write).
pub const DOWN_AFTER_MS: u64 = 2000;
const FAILOVER_TIMEOUT_MS: u64 = 5000;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
const PROBE: Duration = Duration::from_secs(1);

/// One primary, two replicas and three sentinels (quorum 2, a primary is
/// down after 2 s of silence). Servers and sentinels are [`RedisServer`]s,
/// so each can be killed and restarted. Dropping the group kills them all.
#[derive(Debug)]
pub struct SentinelGroup {
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

impl SentinelGroup {
    /// Starts the servers, makes two of them replicas of the first, starts
    /// the sentinels and waits until every sentinel knows both replicas
    /// and the other sentinels.
    ///
    /// `None` when redis-server is not installed (outside CI).
    ///
    /// # Panics
    /// When a process does not start or the group does not settle within
    /// 30 s (the message holds the logs).
    pub fn start() -> Option<SentinelGroup> {
        if !RedisServer::available() {
            return None;
        }
        let primary = RedisServer::start()?;
        let mut servers = vec![primary];
        for _ in 0..2 {
            let replica = RedisServer::start_with(RedisOptions {
                extra_args: vec![
                    "--replicaof".into(),
                    servers[0].host().into(),
                    servers[0].port().to_string(),
                ],
                ..Default::default()
            })?;
            servers.push(replica);
        }
        let monitor = format!(
            "sentinel monitor {SERVICE} {} {} 2",
            servers[0].host(),
            servers[0].port()
        );
        let conf = vec![
            monitor,
            format!("sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}"),
            format!("sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}"),
            format!("sentinel parallel-syncs {SERVICE} 2"),
        ];
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(RedisServer::start_sentinel(conf.clone())?);
        }
        let group = SentinelGroup { servers, sentinels };
        group.wait_until("the replicas in sync", || {
            group.servers[1..].iter().all(|r| {
                r.ask(&["INFO", "replication"], PROBE)
                    .is_ok_and(|i| i.contains("master_link_status:up"))
            })
        });
        group.wait_until(
            "every sentinel to know both replicas and the others",
            || {
                group.sentinels.iter().all(|s| {
                    s.ask(&["INFO", "sentinel"], PROBE)
                        .is_ok_and(|i| i.contains("slaves=2") && i.contains("sentinels=3"))
                })
            },
        );
        Some(group)
    }

    /// `127.0.0.1:PORT` of each sentinel, as `endpoints` takes them.
    pub fn endpoints(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("{}:{}", s.host(), s.port()))
            .collect()
    }

    /// The service name the sentinels watch (`sentinel_service`).
    pub fn service(&self) -> &str {
        SERVICE
    }

    /// The data servers: the first started as the primary.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// Data server `i`, e.g. to kill it.
    pub fn server_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.servers[i]
    }

    /// The sentinels.
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// The index of the server the sentinels name as primary now (asking
    /// the first sentinel that answers).
    pub fn primary(&self) -> usize {
        let port = self.primary_port();
        self.servers
            .iter()
            .position(|s| s.port() == port)
            .unwrap_or_else(|| self.fail(&format!("the sentinels name port {port}, not ours")))
    }

    fn primary_port(&self) -> u16 {
        for s in &self.sentinels {
            if s.pid().is_none() {
                continue;
            }
            if let Ok(addr) = s.try_cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE])
                && let Some(port) = addr.lines().nth(1).and_then(|p| p.trim().parse().ok())
            {
                return port;
            }
        }
        self.fail("no sentinel named the primary")
    }

    /// Waits until the sentinels name another primary than `old`, and that
    /// server calls itself primary.
    pub fn wait_for_failover(&self, old: usize) -> usize {
        let mut now = old;
        self.wait_until("the sentinels to promote a replica", || {
            now = self.primary();
            now != old
                && self.servers[now]
                    .try_cli(&["ROLE"])
                    .is_ok_and(|r| r.starts_with("master"))
        });
        now
    }

    /// Waits until server `i` (restarted) is a replica in sync again.
    pub fn wait_for_replica(&self, i: usize) {
        self.wait_until("the server to be a replica in sync", || {
            self.servers[i]
                .ask(&["INFO", "replication"], PROBE)
                .is_ok_and(|info| {
                    info.contains("role:slave") && info.contains("master_link_status:up")
                })
        });
    }

    fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while !done() {
            if Instant::now() > deadline {
                self.fail(&format!("waited {SETTLE_TIMEOUT:?} for {what}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last 30 lines of every server's and sentinel's log, each under
    /// a heading naming it: what a failed test prints to tell why.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        for (kind, list) in [("server", &self.servers), ("sentinel", &self.sentinels)] {
            for n in list {
                let log = n.log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                logs.push_str(&format!("\n--- {kind} {} ---\n", n.port()));
                for line in tail.into_iter().rev() {
                    logs.push_str(line);
                    logs.push('\n');
                }
            }
        }
        logs
    }

    fn fail(&self, why: &str) -> ! {
        panic!("{why}{}", self.logs())
    }
}
