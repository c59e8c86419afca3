//! A Redis Cluster of a test's own: `redis-server --cluster-enabled yes`
//! on free loopback ports, joined with `redis-cli --cluster create`.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::run::run_with_timeout;
use crate::server::{RedisOptions, RedisServer, free_port};

/// How long the cluster may take to agree on its slots after creation,
/// and a failover to complete.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
const PROBE: Duration = Duration::from_secs(1);
/// Node timeout: how long a primary may be silent before its replica takes
/// over. Short, so that failover tests are quick.
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// A Redis Cluster on `127.0.0.1`: `primaries` primaries (each owning an
/// equal share of the 16384 slots) with `replicas_per_primary` replicas
/// each. Nodes are [`RedisServer`]s, so each can be killed and restarted;
/// a restarted node keeps its cluster identity (its `nodes.conf`) and
/// rejoins. Dropping the cluster kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every node
    /// reports `cluster_state:ok` and every replica is in sync.
    ///
    /// `None` when redis-server is not installed (outside CI; see
    /// [`RedisServer::start`]).
    ///
    /// # Panics
    /// When a node does not start or the cluster does not form within 30 s
    /// (the message holds what redis-cli said and the nodes' logs).
    pub fn start(primaries: usize, replicas_per_primary: usize) -> Option<RedisCluster> {
        assert!(primaries >= 1, "a cluster needs at least one primary");
        if !RedisServer::available() {
            return None;
        }
        let count = primaries * (1 + replicas_per_primary);
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            let options = RedisOptions {
                extra_args: [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &NODE_TIMEOUT_MS.to_string(),
                    // A replica may always take over, however long it was
                    // cut off: tests kill nodes on purpose.
                    "--cluster-replica-validity-factor",
                    "0",
                    // The bus port is chosen too: port + 10000 may be taken
                    // or out of range.
                    "--cluster-port",
                    &free_port().to_string(),
                ]
                .map(String::from)
                .to_vec(),
                ..Default::default()
            };
            nodes.push(RedisServer::start_with(options)?);
        }
        let cluster = RedisCluster { nodes };
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        cmd.args(cluster.endpoints());
        cmd.args([
            "--cluster-replicas",
            &replicas_per_primary.to_string(),
            "--cluster-yes",
        ]);
        match run_with_timeout(&mut cmd, SETTLE_TIMEOUT) {
            Ok(Some(done)) if done.status.success() => {}
            Ok(Some(done)) => cluster.fail(&format!(
                "redis-cli --cluster create failed ({}):\n{}\n{}",
                done.status, done.stdout, done.stderr
            )),
            Ok(None) => cluster.fail("redis-cli --cluster create did not finish within 30 s"),
            Err(e) => cluster.fail(&format!(
                "cannot run redis-cli (Debian: apt-get install -y redis-tools): {e}"
            )),
        }
        cluster.wait_until_ok();
        cluster.wait_for_replicas(primaries * replicas_per_primary);
        Some(cluster)
    }

    /// `127.0.0.1:PORT` of every node, as `endpoints` takes them.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("{}:{}", n.host(), n.port()))
            .collect()
    }

    /// Every node, primaries and replicas, in start order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Node `i`, e.g. to kill or pause it.
    pub fn node_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// The index of the node that serves `key` now (the primary of its
    /// slot), as the first live node sees the slot map.
    pub fn primary_of(&self, key: &str) -> usize {
        let slot: u16 = self
            .ask_any(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .unwrap_or_else(|e| self.fail(&format!("CLUSTER KEYSLOT {key:?}: {e}")));
        self.primary_of_slot(slot)
    }

    /// The index of the primary that owns `slot`.
    pub fn primary_of_slot(&self, slot: u16) -> usize {
        let nodes = self.ask_any(&["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                match (a.parse::<u16>(), b.parse::<u16>()) {
                    (Ok(a), Ok(b)) => (a..=b).contains(&slot),
                    _ => false,
                }
            });
            if owns {
                let port = address_port(fields[1]);
                if let Some(i) = self.nodes.iter().position(|n| Some(n.port()) == port) {
                    return i;
                }
            }
        }
        self.fail(&format!("no live primary owns slot {slot}:\n{nodes}"))
    }

    /// The indices of the live replicas of node `primary`.
    pub fn replicas_of(&self, primary: usize) -> Vec<usize> {
        let port = format!("master_port:{}", self.nodes[primary].port());
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].pid().is_some()
                    && self.nodes[i]
                        .ask(&["INFO", "replication"], PROBE)
                        .is_ok_and(|info| info.lines().any(|l| l.trim() == port))
            })
            .collect()
    }

    /// Waits until node `i` (restarted) is a replica in sync again.
    pub fn wait_for_replica(&self, i: usize) {
        self.wait_until(SETTLE_TIMEOUT, "the node to be a replica in sync", || {
            self.nodes[i]
                .ask(&["INFO", "replication"], PROBE)
                .is_ok_and(|info| {
                    info.contains("role:slave") && info.contains("master_link_status:up")
                })
        });
    }

    /// The node ids, as CLUSTER NODES names them, of node `i`.
    pub fn node_id(&self, i: usize) -> String {
        self.nodes[i].cli(&["CLUSTER", "MYID"])
    }

    /// Moves `slot` and its keys to node `to` (a primary), the way
    /// `redis-cli --cluster reshard` does: IMPORTING on the target,
    /// MIGRATING on the source, MIGRATE of every key, then SETSLOT NODE on
    /// both. Clients in between get ASK redirections, then MOVED.
    pub fn move_slot(&self, slot: u16, to: usize) {
        let from = self.primary_of_slot(slot);
        if from == to {
            return;
        }
        let slot_s = slot.to_string();
        let (src, dst) = (&self.nodes[from], &self.nodes[to]);
        let (src_id, dst_id) = (self.node_id(from), self.node_id(to));
        dst.cli(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src_id]);
        src.cli(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst_id]);
        loop {
            let keys = src.cli(&["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = dst.port().to_string();
            let mut args = vec![
                "MIGRATE",
                dst.host(),
                &port,
                "",
                "0",
                "5000",
                "REPLACE",
                "KEYS",
            ];
            args.extend(keys);
            src.cli(&args);
        }
        dst.cli(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id]);
        src.cli(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id]);
        self.wait_until(
            SETTLE_TIMEOUT,
            "every node to see the slot's new owner",
            || {
                self.live()
                    .all(|n| owner_port(n, slot).is_some_and(|p| p == dst.port()))
            },
        );
    }

    /// Waits until every live node reports `cluster_state:ok` and all
    /// slots assigned.
    pub fn wait_until_ok(&self) {
        self.wait_until(SETTLE_TIMEOUT, "cluster_state:ok on every node", || {
            self.live().all(|n| {
                n.ask(&["CLUSTER", "INFO"], PROBE).is_ok_and(|info| {
                    info.contains("cluster_state:ok")
                        && info.contains("cluster_slots_assigned:16384")
                })
            })
        });
    }

    /// Waits until a replica has taken over from the primary `dead` (which
    /// the test killed), and the cluster is ok again.
    pub fn wait_for_failover(&self, dead: usize) {
        let port = self.nodes[dead].port();
        self.wait_until(SETTLE_TIMEOUT, "a replica to take over", || {
            self.live().all(|n| {
                n.ask(&["CLUSTER", "NODES"], PROBE).is_ok_and(|nodes| {
                    nodes.lines().any(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        f.len() > 2
                            && address_port(f[1]) == Some(port)
                            && (f[2].contains("fail") || f[2].contains("slave"))
                    })
                })
            })
        });
        self.wait_until_ok();
    }

    fn wait_for_replicas(&self, replicas: usize) {
        self.wait_until(SETTLE_TIMEOUT, "every replica in sync", || {
            let synced = self
                .live()
                .filter(|n| {
                    n.ask(&["INFO", "replication"], PROBE).is_ok_and(|i| {
                        i.contains("role:slave") && i.contains("master_link_status:up")
                    })
                })
                .count();
            synced == replicas
        });
    }

    fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.pid().is_some())
    }

    fn ask_any(&self, args: &[&str]) -> String {
        for n in self.live() {
            if let Ok(answer) = n.ask(args, PROBE) {
                return answer;
            }
        }
        self.fail(&format!("no live node answered {}", args.join(" ")))
    }

    fn wait_until(&self, timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            if Instant::now() > deadline {
                self.fail(&format!("waited {timeout:?} for {what}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn fail(&self, why: &str) -> ! {
        let mut logs = String::new();
        for n in &self.nodes {
            let log = n.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            logs.push_str(&format!("\n--- node {} ---\n", n.port()));
            for line in tail.into_iter().rev() {
                logs.push_str(line);
                logs.push('\n');
            }
        }
        panic!("{why}{logs}")
    }
}

/// The port of `ip:port@busport` as CLUSTER NODES writes it.
fn address_port(address: &str) -> Option<u16> {
    let address = address.split('@').next()?;
    address.rsplit_once(':')?.1.parse().ok()
}

/// The port of the node that `n` thinks owns `slot`.
fn owner_port(n: &RedisServer, slot: u16) -> Option<u16> {
    let nodes = n.ask(&["CLUSTER", "NODES"], PROBE).ok()?;
    nodes.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 || !f[2].contains("master") {
            return None;
        }
        f[8..]
            .iter()
            .any(|r| {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            })
            .then(|| address_port(f[1]))
            .flatten()
    })
}
